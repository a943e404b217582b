"""A classifier's probability rows of several columns sum to one: a challenger answering
[1, 1] for every row (each value in [0, 1]) had log loss 0 on every request, was decided
better than a good champion and promoted, and /infer then answered [1, 1]. Such rows are
refused when the model is registered, when they are mirrored and as a reference's scores;
a single column (P(class 1)) has no sum to check."""

from __future__ import annotations

import httpx
import numpy as np
import onnx
import pytest

from tests.shadow.probe_models import constant, softmax
from tests.tunewatch.conftest import MODEL, Running
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


def _register(
    registry: Registry, model: onnx.ModelProto, task: str, reference: Reference | None = None
) -> int:
    metadata = VersionMetadata(task=task, feature_names=NAMES)  # type: ignore[arg-type]
    row = registry.register(
        "m", model.SerializeToString(), metadata, actor="t", stage="champion", reference=reference
    )
    return row.version


def _refusal(
    registry: Registry, model: onnx.ModelProto, task: str, reference: Reference | None = None
) -> RegistrationError:
    with pytest.raises(RegistrationError) as info:
        _register(registry, model, task, reference)
    assert status_for(info.value) == 400
    return info.value


@pytest.mark.parametrize(
    ("task", "row", "total"),
    [("binary", [1.0, 1.0], "2"), ("multiclass", [0.2, 0.2, 0.2], "0.6")],
    ids=["binary-ones", "multiclass-short"],
)
def test_a_classifier_whose_rows_do_not_sum_to_one_is_refused(
    store: Store, registry: Registry, task: str, row: list[float], total: str
) -> None:
    error = _refusal(registry, constant(row), task)
    assert error.code == "task_output_mismatch"
    assert f"a {task} model's probability rows must sum to 1" in error.message
    assert f"a row summing to {total}" in error.message
    assert "(output 'probabilities')" in error.message
    with pytest.raises(NotFoundError):
        store.get_model("m")


@pytest.mark.parametrize(
    ("task", "model"),
    [
        ("binary", lambda: constant([0.9])),  # P(class 1): no sum to check
        ("binary", lambda: constant([0.3000001, 0.7])),  # float32 rounding
        ("binary", softmax),
        ("multiclass", lambda: constant([0.2, 0.3, 0.5])),
    ],
    ids=["one-column", "float32-rounding", "softmax", "multiclass"],
)
def test_a_classifier_of_normalised_rows_is_registered(
    registry: Registry, task: str, model: object
) -> None:
    assert callable(model)
    assert _register(registry, model(), task) == 1


def test_reference_scores_whose_rows_do_not_sum_to_one_are_refused(
    store: Store, registry: Registry
) -> None:
    x = np.zeros((3, len(NAMES)))
    scores = np.array([[0.4, 0.6], [np.nan, np.nan], [1.0, 1.0]])
    error = _refusal(registry, softmax(), "binary", Reference(features=x, scores=scores))
    assert error.code == "invalid_reference"
    assert "reference scores of a binary model must be rows summing to 1" in error.message
    assert "row 2 sums to 2" in error.message
    with pytest.raises(NotFoundError):
        store.get_model("m")


def test_reference_scores_of_normalised_rows_are_accepted(registry: Registry) -> None:
    x = np.zeros((3, len(NAMES)))
    scores = np.array([[0.4, 0.6], [np.nan, np.nan], [0.0, 1.0]])
    assert _register(registry, softmax(), "binary", Reference(features=x, scores=scores)) == 1


def test_mirrored_rows_that_do_not_sum_to_one_are_refused(running: Running) -> None:
    width = len(running.daemon.store.get_model(MODEL).feature_names)
    inputs = [[0.1] * width]
    with httpx.Client(base_url=running.url, headers=running.auth("scorer")) as client:
        body = {
            "records": [
                {"id": "rows-ok", "inputs": inputs, "outputs": [[0.25, 0.75]]},
                {"id": "rows-ones", "inputs": inputs, "outputs": [[1.0, 1.0]]},
            ]
        }
        refused = client.post(f"/v1/models/{MODEL}/records", json=body)
        assert refused.status_code == 400
        assert refused.json()["code"] == "invalid_output"
        message = refused.json()["error"]
        assert "records[1].outputs of a binary model" in message
        assert "rows summing to 1" in message and "row 0 sums to 2" in message
        # nothing of the batch was stored: the good record is taken when sent alone
        accepted = client.post(f"/v1/models/{MODEL}/records", json={"records": body["records"][:1]})
        assert accepted.status_code < 300, accepted.text
