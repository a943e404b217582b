"""/v1 bodies and ids are read strictly: a boolean or a string where a number or a
boolean is declared, and an id in a path or query that is not plain ASCII digits, is 400
``invalid_request`` and changes nothing (as inference and bundle import refuse a boolean
for a number). Lax reading took ``true`` as version 1, ``"yes"`` as a regulated model
(irreversible) and the path id ``1_0`` as version 10."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running
from tunewatch._example import ExampleModel


def champion(running: Running) -> int:
    row = running.daemon.store.champion(MODEL)
    assert row is not None
    return row.version


def refused(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request", r.text


def register_body(model: ExampleModel, **fields: Any) -> dict[str, Any]:
    return {
        "onnx_base64": base64.b64encode(model.onnx).decode(),
        "task": "binary",
        "feature_names": list(model.metadata.feature_names),
        **fields,
    }


@pytest.mark.parametrize("given", [True, "2"], ids=["boolean", "string"])
def test_rollback_with_a_champion_not_a_number_is_refused_and_changes_nothing(
    running: Running, given: object
) -> None:
    if champion(running) != 2:
        promoted = httpx.post(
            f"{running.url}/v1/models/{MODEL}/versions/2/promote",
            json={"reason": "so a rollback has a predecessor to restore"},
            headers=running.auth("operator"),
        )
        assert promoted.status_code == 200, promoted.text
    audit_before = len(running.daemon.store.audit_log(limit=10_000))

    r = httpx.post(
        f"{running.url}/v1/models/{MODEL}/rollback",
        json={"reason": "x", "champion": given},
        headers=running.auth("operator"),
    )

    refused(r)
    assert "champion" in r.json()["error"]
    assert champion(running) == 2
    assert len(running.daemon.store.audit_log(limit=10_000)) == audit_before


@pytest.mark.parametrize(
    ("field", "given"),
    [
        pytest.param("regulated", "yes", id="regulated-word"),
        pytest.param("regulated", 1, id="regulated-number"),
        pytest.param("regulated", "true", id="regulated-string_true"),
        pytest.param("parent_version", True, id="parent_version-boolean"),
        pytest.param("parent_version", "1", id="parent_version-string"),
        pytest.param("parent_version", 1.0, id="parent_version-float"),
    ],
)
def test_registering_with_a_field_of_the_wrong_json_type_is_refused_and_stores_no_model(
    running: Running, trained: list[ExampleModel], field: str, given: object
) -> None:
    name = f"strict-{field}-{type(given).__name__}-{given}".replace("_", "-").lower()
    r = httpx.post(
        f"{running.url}/v1/models/{name}/versions",
        json=register_body(trained[0], **{field: given}),
        headers=running.auth("operator"),
    )

    refused(r)
    assert field in r.json()["error"]
    assert name not in [m.name for m in running.daemon.store.list_models()]


def test_registering_with_json_numbers_and_booleans_is_taken(
    running: Running, trained: list[ExampleModel]
) -> None:
    """Strict reading takes what JSON sends for each declared type."""
    url = f"{running.url}/v1/models/strict-taken/versions"
    first = httpx.post(url, json=register_body(trained[0]), headers=running.auth("operator"))
    assert first.status_code == 201, first.text

    r = httpx.post(
        url,
        json=register_body(
            trained[1],
            regulated=False,
            parent_version=1,
            stage="shadow",
            hyperparameters={"learning_rate": 0.1, "max_depth": 3, "balanced": True},
            details={"note": "strict"},
        ),
        headers=running.auth("operator"),
    )

    assert r.status_code == 201, r.text
    assert r.json()["parent_version"] == 1
    model = httpx.get(
        f"{running.url}/v1/models/strict-taken", headers=running.auth("viewer")
    ).json()
    assert model["regulated"] is False


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/models/{MODEL}/versions/1_0",
        f"/v1/models/{MODEL}/versions/+1",
        f"/v1/models/{MODEL}/versions/%201",
        f"/v1/models/{MODEL}/versions/1%20",
        f"/v1/models/{MODEL}/versions/%D9%A1",  # ARABIC-INDIC DIGIT ONE
        f"/v1/models/{MODEL}/versions/1.0",
        f"/v1/models/{MODEL}/versions/-1",
        "/v1/jobs/1_0",
        f"/v1/models/{MODEL}/evaluations/+1/report",
        f"/v1/models/{MODEL}/evaluations?version=1_0",
        f"/v1/models/{MODEL}/evaluations?version=%201",
        "/v1/events?limit=1_0",
        "/v1/audit?limit=+5",
        f"/v1/models/{MODEL}/drift?limit=1_0",
    ],
    ids=lambda p: p.replace("/", "_"),
)
def test_an_id_not_in_ascii_digits_is_invalid_request(running: Running, path: str) -> None:
    r = httpx.get(f"{running.url}{path}", headers=running.auth("viewer"))

    refused(r)


def test_an_id_with_leading_zeros_is_still_the_number(running: Running) -> None:
    r = httpx.get(f"{running.url}/v1/models/{MODEL}/versions/01", headers=running.auth("viewer"))

    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1


def test_a_non_numeric_id_is_invalid_request_as_before(running: Running) -> None:
    r = httpx.get(f"{running.url}/v1/models/{MODEL}/versions/one", headers=running.auth("viewer"))

    refused(r)


def test_the_promote_route_documents_its_202(running: Running) -> None:
    spec = httpx.get(f"{running.url}/openapi.json").json()
    path = "/v1/models/{model}/versions/{version}/promote"
    responses = spec["paths"][path]["post"]["responses"]

    assert "202" in responses
    assert "approval" in responses["202"]["description"].lower()
