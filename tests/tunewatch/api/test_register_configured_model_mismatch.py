"""A version that does not fit a model already stored is refused by the checks against
the stored model (``task_mismatch``, ``feature_names_mismatch``) whether or not the
config lists the model: the config's check of a model's task and columns ran first for a
listed one, and answered 400 ``invalid_config`` with a message that described the stored
model by the request's task or features and told the operator to correct a correct
config."""

from __future__ import annotations

import base64

import httpx

from tests.tunewatch.conftest import MODEL, Running
from tunewatch._example import ExampleModel

# `running`'s config lists MODEL (binary, a range on x0); its versions take x0..x7.
OTHER_FEATURES = [f"f{i}" for i in range(8)]


def _register(
    running: Running, model: ExampleModel, *, task: str, feature_names: list[str]
) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v1/models/{MODEL}/versions",
        json={
            "onnx_base64": base64.b64encode(model.onnx).decode(),
            "task": task,
            "feature_names": feature_names,
        },
        headers=running.auth("operator"),
        timeout=120,
    )


def test_a_version_of_another_task_of_a_configured_model_is_task_mismatch(
    running: Running, trained: list[ExampleModel]
) -> None:
    assert running.daemon.config.model(MODEL) is not None  # the config lists it
    features = list(trained[0].metadata.feature_names)
    response = _register(running, trained[0], task="regression", feature_names=features)
    assert response.status_code == 409, response.text
    assert response.json() == {
        "code": "task_mismatch",
        "error": f"model {MODEL!r} is a binary model; a version cannot change its task to "
        "regression",
    }


def test_a_version_of_other_features_of_a_configured_model_is_feature_names_mismatch(
    running: Running, trained: list[ExampleModel]
) -> None:
    stored = list(trained[0].metadata.feature_names)
    response = _register(running, trained[0], task="binary", feature_names=OTHER_FEATURES)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "code": "feature_names_mismatch",
        "error": f"model {MODEL!r} has features {stored}; a version must take the same "
        f"features, got {OTHER_FEATURES}",
    }
    assert len(running.daemon.store.list_versions(MODEL)) == 2  # nothing stored
