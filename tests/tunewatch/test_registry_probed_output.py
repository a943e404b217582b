"""Registration holds a primary output to its task by what the sandboxed probe saw of it:
its columns when the graph leaves them dynamic, and its values (a classifier's must be
probabilities); it refuses outputs it cannot serve without leaking where it probed them."""

from __future__ import annotations

import onnx
import pytest

from tests.shadow.probe_models import (
    class_major,
    constant,
    dynamic_width,
    logits,
    rank_three,
    softmax,
    string_label,
)
from tunewatch._errors import NotFoundError, RegistrationError
from tunewatch._registry import Registry
from tunewatch._version_metadata import VersionMetadata
from tunewatch.api._errors import status_for
from tunewatch.store import Store

NAMES = ("a", "b", "c", "d")


@pytest.fixture
def store(empty_store: Store) -> Store:
    return empty_store  # the registry's (tests/tunewatch/conftest.py), holding no model


def _refusal(registry: Registry, model: onnx.ModelProto, task: str) -> RegistrationError:
    metadata = VersionMetadata(task=task, feature_names=NAMES)  # type: ignore[arg-type]
    with pytest.raises(RegistrationError) as info:
        registry.register("m", model.SerializeToString(), metadata, actor="t", stage="champion")
    assert status_for(info.value) == 400
    return info.value


@pytest.mark.parametrize(
    ("task", "rule"),
    [("binary", "1 or 2 columns"), ("regression", "exactly 1 column")],
    ids=["binary", "regression"],
)
def test_a_dynamic_width_is_held_to_the_task_by_the_width_the_probe_saw(
    store: Store, registry: Registry, task: str, rule: str
) -> None:
    """A 3-class softmax whose width the graph computes at run time registered as a binary
    (or regression) champion: only a declared width was checked."""
    error = _refusal(registry, dynamic_width(3), task)
    assert error.code == "task_output_mismatch"
    assert f"a {task} model's primary output must have {rule}" in error.message
    assert "got 3 (output 'probabilities')" in error.message
    with pytest.raises(NotFoundError):
        store.get_model("m")


def test_a_dynamic_width_the_task_reads_is_registered(registry: Registry) -> None:
    metadata = VersionMetadata(task="multiclass", feature_names=NAMES)
    row = registry.register("m", dynamic_width(3).SerializeToString(), metadata, actor="t")
    assert row.version == 1


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_a_classifier_whose_primary_output_is_logits_is_refused(
    store: Store, registry: Registry, task: str
) -> None:
    """Its logits were served and recorded as probabilities (-11 to 13), and a comparison
    read them, while the mirror route refused the very same answer."""
    error = _refusal(registry, logits(), task)
    assert error.code == "task_output_mismatch"
    assert f"a {task} model's primary output must hold probabilities in [0, 1]" in error.message
    assert "got values from -" in error.message and "(output 'probabilities')" in error.message
    with pytest.raises(NotFoundError):
        store.get_model("m")


def test_a_probability_a_float32_sum_leaves_just_past_its_bounds_is_registered(
    registry: Registry,
) -> None:
    """A random forest's mean of its trees' leaves, summed in float32, answers 1.0000001
    and -1.2e-07 (seen on the probe's rows for forests of 10 and 30 trees): such a model
    holds probabilities. A value 0.01 past a bound does not."""
    metadata = VersionMetadata(task="binary", feature_names=NAMES)
    rounded = constant([1.0000001, -1.2e-07]).SerializeToString()
    assert registry.register("m", rounded, metadata, actor="t").version == 1
    error = _refusal(registry, constant([1.01, -0.01]), "binary")
    assert error.code == "task_output_mismatch"
    assert "got values from -0.01 to 1.01" in error.message


def test_a_regression_model_s_values_are_not_held_to_probabilities(registry: Registry) -> None:
    metadata = VersionMetadata(task="regression", feature_names=NAMES)
    row = registry.register("m", logits(columns=1).SerializeToString(), metadata, actor="t")
    assert row.version == 1


def test_a_classifier_of_probabilities_is_registered(registry: Registry) -> None:
    metadata = VersionMetadata(task="binary", feature_names=NAMES)
    assert registry.register("m", softmax().SerializeToString(), metadata, actor="t").version == 1


@pytest.mark.parametrize(
    "model", [rank_three, lambda: class_major(2)], ids=["rank-three", "class-major-binary"]
)
def test_a_primary_output_it_cannot_record_is_refused(
    store: Store, registry: Registry, model: object
) -> None:
    assert callable(model)
    error = _refusal(registry, model(), "binary")
    assert error.code == "unsupported_signature"
    with pytest.raises(NotFoundError):
        store.get_model("m")


def test_a_string_class_label_is_refused_without_the_zipmap_hint_or_the_probe_s_path(
    registry: Registry,
) -> None:
    """The message advised `zipmap: False`, which had been done, and showed the temporary
    file the registry probed (`/tmp/tunewatch-candidate-*/candidate.onnx`)."""
    error = _refusal(registry, string_label(), "binary")
    assert error.code == "unsupported_signature"
    assert "'label' has type tensor(string)" in error.message
    assert "encode classes as integers" in error.message
    assert "zipmap" not in error.message
    assert "tunewatch-candidate-" not in error.message and "candidate.onnx" not in error.message
