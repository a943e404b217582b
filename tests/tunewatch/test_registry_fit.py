"""What a registration states must fit the model: its task the primary output's width
(what every objective of the task reads), its feature names not the drift frame's own
columns, its parent an earlier version of the model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from retune import to_onnx
from shadow import Signature, TensorSpec
from tunewatch._config_evaluation import LABEL_COLUMN, PREDICTION_COLUMN
from tunewatch._errors import InvalidValueError, NotFoundError, RegistrationError
from tunewatch._registry import Registry
from tunewatch._version_metadata import VersionMetadata
from tunewatch.api._errors import status_for
from tunewatch.store import Store

NAMES = ("a", "b", "c", "d")


def _exported(kind: str) -> bytes:
    """A model of four features whose primary output has the columns ``kind`` says."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    if kind == "three classes":
        return to_onnx(LogisticRegression(max_iter=200).fit(x, rng.integers(0, 3, 300)), 4)
    if kind == "two classes":
        return to_onnx(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), 4)
    if kind == "positive-class column":  # P(classes_[1]) alone, as a one-column version's
        float32 = np.dtype(np.float32)
        like = Signature(
            input=TensorSpec("input", float32, (None, 4)),
            outputs=(TensorSpec("probabilities", float32, (None, 1)),),
            primary_output="probabilities",
        )
        binary = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
        return to_onnx(binary, 4, like=like)
    assert kind == "one column"
    return to_onnx(LinearRegression().fit(x, x[:, 0]), 4)


@pytest.fixture
def store(empty_store: Store) -> Store:
    return empty_store  # the registry's (tests/tunewatch/conftest.py), holding no model


@pytest.mark.parametrize(
    ("task", "kind", "rule", "width"),
    [
        pytest.param("binary", "three classes", "1 or 2", 3, id="binary-with-three-classes"),
        pytest.param("regression", "two classes", "exactly 1", 2, id="regression-with-two"),
        pytest.param("multiclass", "one column", "at least 2", 1, id="multiclass-with-one"),
    ],
)
def test_a_primary_output_the_task_cannot_read_refuses_the_registration(
    store: Store, registry: Registry, task: str, kind: str, rule: str, width: int
) -> None:
    """A 3-class classifier registered as binary (a 2-column classifier as regression, a
    regressor as multiclass) was stored, even as champion, and every objective of its
    task then failed on its outputs: every evaluation, comparison and retune."""
    onnx = _exported(kind)
    metadata = VersionMetadata(task=task, feature_names=NAMES)  # type: ignore[arg-type]
    for attempt in (
        lambda: registry.check("m", onnx, metadata),
        lambda: registry.register("m", onnx, metadata, actor="t", stage="champion"),
    ):
        with pytest.raises(RegistrationError) as info:
            attempt()
        assert info.value.code == "task_output_mismatch"
        assert status_for(info.value) == 400
        message = info.value.message
        assert f"a {task} model's primary output must have {rule}" in message
        assert f"got {width}" in message
    with pytest.raises(NotFoundError):
        store.get_model("m")


@pytest.mark.parametrize(
    ("task", "kind"),
    [
        pytest.param("binary", "two classes", id="binary-probabilities"),
        pytest.param("binary", "positive-class column", id="binary-positive-class-column"),
        pytest.param("multiclass", "three classes", id="multiclass-probabilities"),
        pytest.param("multiclass", "two classes", id="multiclass-of-two-classes"),
        pytest.param("regression", "one column", id="regression-prediction"),
    ],
)
def test_a_primary_output_the_task_reads_is_registered(
    store: Store, registry: Registry, task: str, kind: str
) -> None:
    row = registry.register(
        "m",
        _exported(kind),
        VersionMetadata(task=task, feature_names=NAMES),  # type: ignore[arg-type]
        actor="t",
    )
    assert (row.version, store.get_model("m").task) == (1, task)


def test_a_registration_naming_a_parent_the_model_lacks_is_refused(
    store: Store, registry: Registry
) -> None:
    """A version could name as its parent a version its model did not have, or a later
    one: lineage read in loops and reports showed a false parent."""
    onnx = _exported("two classes")
    first = registry.register(
        "m", onnx, VersionMetadata(task="binary", feature_names=NAMES), actor="t"
    )
    for parent in (2, 7):
        metadata = VersionMetadata(task="binary", feature_names=NAMES, parent_version=parent)
        with pytest.raises(InvalidValueError) as info:
            registry.register("m", onnx, metadata, actor="t")
        assert status_for(info.value) == 400
        assert f"earlier version of model 'm' (1 to 1), got {parent}" in info.value.message
    assert store.list_versions("m") == [first]
    child = VersionMetadata(task="binary", feature_names=NAMES, parent_version=1)
    assert registry.register("m", onnx, child, actor="t").parent_version == 1


@pytest.mark.parametrize("reserved", [PREDICTION_COLUMN, LABEL_COLUMN])
def test_a_feature_named_like_a_drift_frame_column_is_refused(reserved: str) -> None:
    """A feature named `__prediction__` registered, and its drift was then computed from
    the champion's predictions (`__label__`: from the labels) instead of its values."""
    with pytest.raises(RegistrationError) as info:
        VersionMetadata(task="binary", feature_names=("a", reserved))
    assert info.value.code == "invalid_features"
    assert status_for(info.value) == 400
    assert info.value.message == (
        "`feature_names` must not use the names the drift frame reserves for the "
        f"prediction and the label (__prediction__, __label__), got {reserved!r}"
    )


def test_a_feature_merely_resembling_a_drift_frame_column_is_accepted() -> None:
    names = ("prediction", "__prediction", "label__", "__Label__")
    assert VersionMetadata(task="binary", feature_names=names).feature_names == names
