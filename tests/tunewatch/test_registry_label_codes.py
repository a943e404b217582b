"""Registration holds a classifier's integer ``label`` output to the class index its
probabilities are read by: a multiclass champion trained on classes 1..3 answered
``label`` 1..3 while its probabilities and every label fed back were indexed 0..2, and
the retune that replaced it answered 0..2: its clients read other codes once it was
promoted."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from retune import to_onnx
from tunewatch._errors import NotFoundError, RegistrationError
from tunewatch._reference import Reference
from tunewatch._registry import Registry
from tunewatch._version_metadata import VersionMetadata
from tunewatch.api._errors import status_for
from tunewatch.store import Store

NAMES = ("a", "b", "c", "d")


@pytest.fixture
def store(empty_store: Store) -> Store:
    return empty_store  # the registry's (tests/tunewatch/conftest.py), holding no model


def _data(n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, len(NAMES))).astype(np.float32)
    edges = np.linspace(-0.6, 0.6, classes - 1) if classes > 2 else [0.0]
    y = np.digitize(x[:, 0] + 0.5 * x[:, 1], edges).astype(np.float64)
    return x, y


def _exported(x: np.ndarray, y: np.ndarray) -> bytes:
    est = LogisticRegression(max_iter=500).fit(x, y)
    return to_onnx(est, len(NAMES))


@pytest.mark.parametrize("with_reference", [False, True], ids=["probe-rows", "reference-rows"])
def test_a_classifier_whose_label_output_is_not_the_class_index_is_refused(
    store: Store, registry: Registry, with_reference: bool
) -> None:
    x, y = _data(300, 3)
    onnx_bytes = _exported(x, y + 1)  # classes_ [1, 2, 3]: `label` answers 1..3
    metadata = VersionMetadata(task="multiclass", feature_names=NAMES)
    reference = Reference(features=x, labels=y) if with_reference else None
    with pytest.raises(RegistrationError) as info:
        registry.register(
            "m", onnx_bytes, metadata, actor="t", stage="champion", reference=reference
        )
    error = info.value
    assert status_for(error) == 400
    assert error.code == "task_output_mismatch"
    assert "output 'label' must answer the class index" in error.message
    assert "argmax of 'probabilities'" in error.message
    assert "encode classes as integers (0 to n_classes - 1" in error.message
    with pytest.raises(NotFoundError):
        store.get_model("m")


@pytest.mark.parametrize(
    ("task", "classes"), [("binary", 2), ("multiclass", 3)], ids=["binary", "multiclass"]
)
def test_a_classifier_whose_label_output_is_the_class_index_is_registered(
    registry: Registry, task: str, classes: int
) -> None:
    x, y = _data(300, classes)
    metadata = VersionMetadata(task=task, feature_names=NAMES)  # type: ignore[arg-type]
    row = registry.register(
        "m",
        _exported(x, y),
        metadata,
        actor="t",
        stage="champion",
        reference=Reference(features=x, labels=y),
    )
    assert row.version == 1


# scikit-learn 1.9 deprecates SVC(probability=True); such models are served all the same
@pytest.mark.filterwarnings("ignore::FutureWarning:sklearn")
@pytest.mark.filterwarnings("ignore::FutureWarning:skl2onnx")
def test_an_svc_whose_label_sometimes_differs_from_its_probabilities_is_registered(
    registry: Registry,
) -> None:
    """An SVC's label comes from its decision function, its probabilities from Platt
    scaling: scikit-learn documents that they can disagree, and here they do on a few
    rows. Its labels are class indices; every disagreement refused it."""
    from skl2onnx import to_onnx as skl2onnx_to_onnx
    from sklearn.svm import SVC

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(NAMES))).astype(np.float32)
    y = ((x[:, 0] + 0.8 * x[:, 1] + rng.normal(scale=0.8, size=400)) > 0).astype(np.int64)
    svc = SVC(probability=True, random_state=0).fit(x, y)
    onnx_bytes = skl2onnx_to_onnx(
        svc, x[:1], options={id(svc): {"zipmap": False}}, target_opset=17
    ).SerializeToString()
    row = registry.register(
        "m",
        onnx_bytes,
        VersionMetadata(task="binary", feature_names=NAMES),
        actor="t",
        stage="champion",
        reference=Reference(features=x, labels=y.astype(np.float64)),
    )
    assert row.version == 1
