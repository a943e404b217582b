"""A registration's checks of a classifier's outputs (its class columns, row sums and
``label`` codes) read the rows the sandboxed candidate probe scored: the registering
process opens no onnxruntime session of the candidate. Loaded in the registering process
twice more, a 284 MiB forest took 57 s and 3.7 GB of the CLI (four times on a bundle
import), outside ``scoring.candidate_memory_limit_mb`` and ``candidate_timeout_s``."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime
import pytest
from sklearn.linear_model import LogisticRegression

from retune import to_onnx
from shadow import OnnxModel
from tunewatch._errors import RegistrationError
from tunewatch._reference import Reference
from tunewatch._registry import Registry
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import Store

NAMES = ("a", "b", "c", "d")


@pytest.fixture
def store(empty_store: Store) -> Store:
    return empty_store  # the registry's (tests/tunewatch/conftest.py), holding no model


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every candidate session this process creates from now on: each call of
    ``OnnxModel.from_bytes`` and each ``onnxruntime.InferenceSession`` built, counted and
    then made as ever (a probe's, in its own process, is not seen here)."""
    made: list[str] = []
    from_bytes = OnnxModel.from_bytes.__func__  # type: ignore[attr-defined]

    def counted_from_bytes(cls: type[OnnxModel], data: bytes, **kwargs: Any) -> OnnxModel:
        made.append("OnnxModel.from_bytes")
        return from_bytes(cls, data, **kwargs)  # type: ignore[no-any-return]

    class CountedSession(onnxruntime.InferenceSession):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append("InferenceSession")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(OnnxModel, "from_bytes", classmethod(counted_from_bytes))
    monkeypatch.setattr(onnxruntime, "InferenceSession", CountedSession)
    return made


def _classifier(classes: int, *, shift: int = 0) -> tuple[bytes, Reference]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, len(NAMES))).astype(np.float32)
    edges = np.linspace(-0.6, 0.6, classes - 1) if classes > 2 else [0.0]
    y = np.digitize(x[:, 0] + 0.5 * x[:, 1], edges).astype(np.float64)
    est = LogisticRegression(max_iter=500).fit(x, y + shift)
    return to_onnx(est, len(NAMES)), Reference(features=x, labels=y)


@pytest.mark.parametrize("with_reference", [False, True], ids=["probe-rows", "reference-rows"])
@pytest.mark.parametrize(
    ("task", "classes"), [("binary", 2), ("multiclass", 3)], ids=["binary", "multiclass"]
)
def test_registering_a_classifier_opens_no_session_in_the_registering_process(
    registry: Registry, sessions: list[str], task: str, classes: int, with_reference: bool
) -> None:
    onnx_bytes, reference = _classifier(classes)
    metadata = VersionMetadata(task=task, feature_names=NAMES)  # type: ignore[arg-type]
    row = registry.register(
        "m",
        onnx_bytes,
        metadata,
        actor="t",
        stage="champion",
        reference=reference if with_reference else None,
    )
    assert row.version == 1
    assert sessions == []


def test_a_label_refusal_on_reference_rows_opens_no_session(
    registry: Registry, sessions: list[str]
) -> None:
    """The ``label`` check still refuses a model answering codes 1..3, on the reference
    rows the probe scored (its rows of 0, 1 and -1 alone refuse it too)."""
    onnx_bytes, reference = _classifier(3, shift=1)
    metadata = VersionMetadata(task="multiclass", feature_names=NAMES)
    with pytest.raises(RegistrationError) as info:
        registry.register("m", onnx_bytes, metadata, actor="t", reference=reference)
    assert info.value.code == "task_output_mismatch"
    assert "output 'label' must answer the class index" in info.value.message
    assert sessions == []


def test_check_then_register_probes_once_and_opens_no_session(
    registry: Registry, sessions: list[str], inspected: list[bytes]
) -> None:
    """A bundle import checks every version (:meth:`Registry.check`), then registers each
    with what the check found: one probe, and no session in the importing process."""
    onnx_bytes, reference = _classifier(3)
    metadata = VersionMetadata(task="multiclass", feature_names=NAMES)
    info = registry.check("m", onnx_bytes, metadata, reference=reference)
    row = registry.register(
        "m", onnx_bytes, metadata, actor="t", reference=reference, inspected=info
    )
    assert row.version == 1
    assert len(inspected) == 1
    assert sessions == []


def test_an_inspection_without_the_reference_is_not_taken_for_one_with_it(
    registry: Registry, inspected: list[bytes], sessions: list[str]
) -> None:
    """What the probe scored is for the rows it was given: an inspection made without
    the reference does not stand for a registration with it (the ``label`` check would
    not see the reference's rows), and the bytes are probed again, with them."""
    onnx_bytes, reference = _classifier(3)
    metadata = VersionMetadata(task="multiclass", feature_names=NAMES)
    info = registry.check("m", onnx_bytes, metadata)
    registry.register("m", onnx_bytes, metadata, actor="t", reference=reference, inspected=info)
    assert len(inspected) == 2
    assert sessions == []
