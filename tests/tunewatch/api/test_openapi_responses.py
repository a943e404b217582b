"""``/openapi.json`` documents what the routes answer besides their bodies' schemas: each
governance route's 409s with the codes its code paths raise, the 415s of every route
that takes a body (an unsupported ``Content-Type`` or ``Content-Encoding``), the media
type of the answers that are not JSON (the scrape, a version's report), and the body of
a promotion that waits for an approver.

The governance routes documented no 409, 415 was documented on the Alertmanager webhook
only, ``/metrics`` and the version report were documented as ``application/json`` (they
send ``text/plain``, ``text/html`` or ``text/markdown``), and the promotion's 202 had no
body."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.tunewatch.conftest import MODEL, Running
from tunewatch._example import ExampleModel

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
PROMOTE = "/v1/models/{model}/versions/{version}/promote"
ROLLBACK = "/v1/models/{model}/rollback"
APPROVE = "/v1/approvals/{approval_id}/approve"
REJECT = "/v1/approvals/{approval_id}/reject"
RETIRE = "/v1/models/{model}/versions/{version}/retire"
REPORT = "/v1/models/{model}/versions/{version}/report"
REGULATED = "openapi-regulated"

#: The 409 codes each governance route's code paths raise (tunewatch._governance, the
#: store's stage changes, approvals and rollback, the routes themselves).
CONFLICTS = {
    PROMOTE: {"champion_changed", "not_promotable", "artefact_unavailable", "signature_mismatch"},
    ROLLBACK: {"champion_changed", "no_previous_champion", "artefact_unavailable"},
    APPROVE: {
        "same_person",
        "already_decided",
        "stage_changed",
        "approval_expired",
        "champion_changed",
        "artefact_unavailable",
        "signature_mismatch",
    },
    REJECT: {"same_person", "already_decided"},
    RETIRE: {"champion_cannot_retire", "rolled_back_is_final"},
}


def _url(path: str, **values: object) -> str:
    named = {"model": MODEL, **values}
    return re.sub(r"\{(\w+)\}", lambda m: str(named.get(m.group(1), 1)), path)


def _codes(description: str) -> set[str]:
    return set(re.findall(r"`(\w+)`", description))


def _documented_conflict(spec: dict[str, Any], path: str, code: str) -> None:
    conflict = spec["paths"][path]["post"]["responses"]["409"]
    assert f"`{code}`" in conflict["description"], (path, code, conflict["description"])
    assert conflict["content"]["application/json"]["schema"] == ERROR_REF


def _refused(r: httpx.Response, code: str) -> None:
    assert (r.status_code, r.json()["code"]) == (409, code), r.text


@pytest.mark.parametrize("path", sorted(CONFLICTS), ids=lambda p: p.rsplit("/", 1)[-1])
def test_a_governance_route_documents_the_conflicts_its_code_raises(
    spec: dict[str, Any], path: str
) -> None:
    conflict = spec["paths"][path]["post"]["responses"]["409"]
    assert _codes(conflict["description"]) == CONFLICTS[path]


@pytest.mark.parametrize(
    ("path", "values", "body", "code"),
    [
        (PROMOTE, {"version": 2}, {"reason": "x", "champion": 2}, "champion_changed"),
        (ROLLBACK, {}, {"reason": "x", "champion": 2}, "champion_changed"),
        (ROLLBACK, {}, {"reason": "x"}, "no_previous_champion"),
        (RETIRE, {"version": 1}, {"reason": "x"}, "champion_cannot_retire"),
    ],
    ids=["promote-another-champion", "rollback-another-champion", "rollback-none", "retire"],
)
def test_a_governance_refusal_is_answered_with_a_documented_code(
    running: Running,
    spec: dict[str, Any],
    path: str,
    values: dict[str, int],
    body: dict[str, Any],
    code: str,
) -> None:
    r = httpx.post(
        running.url + _url(path, **values), json=body, headers=running.auth("admin"), timeout=60
    )
    _refused(r, code)
    _documented_conflict(spec, path, code)


def test_an_approval_request_and_its_refusals_are_answered_as_documented(
    running: Running, spec: dict[str, Any], trained: list[ExampleModel]
) -> None:
    admin, approver = running.auth("admin"), running.auth("approver")
    registration = {
        "onnx_base64": base64.b64encode(trained[0].onnx).decode(),
        "task": "binary",
        "feature_names": list(trained[0].metadata.feature_names),
        "regulated": True,
    }
    registered = httpx.post(
        running.url + _url("/v1/models/{model}/versions", model=REGULATED),
        json=registration,
        headers=admin,
        timeout=60,
    )
    assert registered.status_code == 201, registered.text
    promote = _url(PROMOTE, model=REGULATED, version=1)
    r = httpx.post(running.url + promote, json={"reason": "x"}, headers=admin, timeout=60)
    assert r.status_code == 202, r.text
    waiting = spec["paths"][PROMOTE]["post"]["responses"]["202"]
    schema = waiting["content"]["application/json"]["schema"]
    Draft202012Validator.check_schema(schema)
    Draft202012Validator(schema).validate(r.json())
    approval = r.json()["approval"]["id"]

    def decide(path: str, who: dict[str, str]) -> httpx.Response:
        url = running.url + _url(path, approval_id=approval)
        return httpx.post(url, json={"reason": "x"}, headers=who, timeout=60)

    for path in (APPROVE, REJECT):
        _refused(decide(path, admin), "same_person")
        _documented_conflict(spec, path, "same_person")
    approved = decide(APPROVE, approver)
    assert approved.status_code == 200, approved.text
    for path in (APPROVE, REJECT):
        _refused(decide(path, approver), "already_decided")
        _documented_conflict(spec, path, "already_decided")


def _operations(spec: dict[str, Any], method: str) -> list[str]:
    return sorted(path for path, item in spec["paths"].items() if method in item)


def test_an_operation_documents_the_415s_it_answers(running: Running, spec: dict[str, Any]) -> None:
    operations = [(path, method) for path, item in sorted(spec["paths"].items()) for method in item]
    assert sum(method != "get" for _, method in operations) >= 15
    wrong = []
    with httpx.Client(base_url=running.url, headers=running.auth("admin"), timeout=60) as client:
        for path, method in operations:
            documented = spec["paths"][path][method]["responses"].get("415", {})
            codes = _codes(documented.get("description", ""))
            answered = set()
            for header, value in [
                ("content-encoding", "br"),
                ("content-type", "application/x-www-form-urlencoded"),
            ]:
                r = client.request(method, _url(path), content=b"reason=x", headers={header: value})
                if r.status_code == 415:
                    answered.add(r.json()["code"])
            if answered != codes or (answered and _error_schema(documented) != ERROR_REF):
                wrong.append(f"{method} {path}: answered {sorted(answered)}, documented {codes}")
    assert wrong == []


def _error_schema(response: dict[str, Any]) -> Any:
    return response.get("content", {}).get("application/json", {}).get("schema")


def test_a_non_json_answer_is_documented_with_its_media_type(
    running: Running, spec: dict[str, Any]
) -> None:
    asked = [(path, _url(path)) for path in _operations(spec, "get")]
    asked.append((REPORT, _url(REPORT) + "?format=md"))
    answered = {}
    with httpx.Client(base_url=running.url, headers=running.auth("admin"), timeout=60) as client:
        for path, url in asked:
            r = client.get(url)
            media_type = r.headers.get("content-type", "").split(";")[0].strip()
            if r.status_code == 200 and media_type not in ("", "application/json"):
                documented = set(spec["paths"][path]["get"]["responses"]["200"].get("content", {}))
                answered[url] = (media_type, media_type in documented, documented)
    assert {url: (t, ok) for url, (t, ok, _) in answered.items()} == {
        "/metrics": ("text/plain", True),
        _url(REPORT): ("text/html", True),
        _url(REPORT) + "?format=md": ("text/markdown", True),
    }, answered
    for url in answered:
        path = REPORT if url.startswith(_url(REPORT)) else url
        assert "application/json" not in spec["paths"][path]["get"]["responses"]["200"]["content"]
