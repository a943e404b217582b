"""A refused governance attempt is audited (``denied_<action>``) though nothing was done:
a requester approving their own promotion, an operator approving at all, a second
decision, a promotion or rollback the store refuses, on SQLite and PostgreSQL. Scoring
routes' refusals are not: only the governance routes' are the auditors' business."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, break_audit_appends, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel
from tunewatch.store import AuditEntry


@pytest.fixture
def gov(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Running]:
    """credit: v1 champion, v2 shadow; loans (regulated): v1 champion, v2 shadow."""
    daemon, tokens = make_daemon(
        tmp_path,
        trained,
        store_url=store_url,
        extra={"models": [{"name": "loans", "task": "binary", "regulated": True}]},
    )
    for model in trained:  # a regulated model's champion is promoted, never registered
        daemon.registry.register("loans", model.onnx, model.metadata, actor="test")
    first = daemon.store.request_approval(
        "loans", 1, requested_by="test", reason="the first champion", rules=["regulated model"]
    )
    daemon.store.decide_approval(first.id, approver="ci", approve=True, reason="checked")
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


def _post(gov: Running, path: str, role: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{gov.url}{path}", json=body, headers=gov.auth(role), timeout=30)


def _newest(gov: Running) -> int:
    return gov.daemon.store.audit_log(limit=1)[0].id


def _since(gov: Running, last: int) -> list[AuditEntry]:
    return [e for e in reversed(gov.daemon.store.audit_log(limit=20)) if e.id > last]


def _request(gov: Running, role: str = "admin") -> int:
    r = _post(gov, "/v1/models/loans/versions/2/promote", role, reason="ready")
    assert r.status_code == 202, r.text
    return int(r.json()["approval"]["id"])


def test_a_self_approval_refused_as_same_person_is_audited(gov: Running) -> None:
    approval = _request(gov)
    last = _newest(gov)
    r = _post(gov, f"/v1/approvals/{approval}/approve", "admin", reason="trust me")
    assert r.status_code == 409 and r.json()["code"] == "same_person"
    [entry] = _since(gov, last)
    assert (entry.actor, entry.action, entry.target) == ("test-admin", "denied_approve", "loans/v2")
    assert entry.details == {
        "approval": approval,
        "status": 409,
        "code": "same_person",
        "message": r.json()["error"],
        "reason": "trust me",
    }
    assert gov.daemon.store.get_approval(approval).status == "pending"
    assert gov.daemon.store.verify_audit() is None


def test_an_operator_s_403_on_approve_is_audited(gov: Running) -> None:
    approval = _request(gov)
    last = _newest(gov)
    r = _post(gov, f"/v1/approvals/{approval}/approve", "operator", reason="me")
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    [entry] = _since(gov, last)
    assert (entry.actor, entry.action, entry.target) == (
        "test-operator",
        "denied_approve",
        "loans/v2",
    )
    assert entry.details == {
        "approval": approval,
        "status": 403,
        "code": "forbidden",
        "message": r.json()["error"],
    }
    assert gov.daemon.store.verify_audit() is None


def test_a_second_decision_and_a_requester_s_rejection_are_audited(gov: Running) -> None:
    approval = _request(gov)
    ok = _post(gov, f"/v1/approvals/{approval}/approve", "approver", reason="checked")
    assert ok.status_code == 200, ok.text
    last = _newest(gov)
    again = _post(gov, f"/v1/approvals/{approval}/reject", "approver", reason="too late")
    assert again.status_code == 409 and again.json()["code"] == "already_decided"
    [entry] = _since(gov, last)
    assert (entry.action, entry.target, entry.details["code"]) == (
        "denied_reject",
        "loans/v2",
        "already_decided",
    )
    assert gov.daemon.store.verify_audit() is None


def test_refused_promotions_and_rollbacks_are_audited(gov: Running) -> None:
    last = _newest(gov)
    stale = _post(gov, f"/v1/models/{MODEL}/versions/2/promote", "operator", reason="x", champion=2)
    assert stale.status_code == 409 and stale.json()["code"] == "champion_changed"
    none = _post(gov, f"/v1/models/{MODEL}/rollback", "operator", reason="worse")
    assert none.status_code == 409 and none.json()["code"] == "no_previous_champion"
    viewer = _post(gov, f"/v1/models/{MODEL}/versions/2/promote", "viewer", reason="x")
    assert viewer.status_code == 403
    entries = _since(gov, last)
    assert [(e.actor, e.action, e.target, e.details["code"]) for e in entries] == [
        ("test-operator", "denied_promote", f"{MODEL}/v2", "champion_changed"),
        ("test-operator", "denied_rollback", MODEL, "no_previous_champion"),
        ("test-viewer", "denied_promote", f"{MODEL}/v2", "forbidden"),
    ]
    assert gov.daemon.store.champion(MODEL).version == 1  # type: ignore[union-attr]
    assert gov.daemon.store.verify_audit() is None


def test_refusals_outside_governance_are_not_audited(gov: Running) -> None:
    """A 401 names no one, a 404 refers to nothing, and a 403 on a scoring or reading
    route would flood the log with every misconfigured client's request."""
    approval = _request(gov)
    last = _newest(gov)
    anonymous = httpx.post(f"{gov.url}/v1/approvals/{approval}/approve", json={"reason": "x"})
    assert anonymous.status_code == 401
    missing = _post(gov, "/v1/approvals/999999/approve", "approver", reason="x")
    assert missing.status_code == 404
    body = {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [0.0] * 8}]}
    scoring = httpx.post(
        f"{gov.url}/v2/models/{MODEL}/infer", json=body, headers=gov.auth("viewer"), timeout=30
    )
    assert scoring.status_code == 403
    reading = httpx.get(f"{gov.url}/v1/models", headers=gov.auth("scorer"), timeout=30)
    assert reading.status_code == 403
    assert _since(gov, last) == []


def test_a_refusal_that_cannot_be_audited_is_still_answered_as_refused(
    gov: Running, caplog: pytest.LogCaptureFixture
) -> None:
    approval = _request(gov)
    break_audit_appends(gov.daemon.store)
    with caplog.at_level(logging.ERROR, logger="tunewatch._governance"):
        same = _post(gov, f"/v1/approvals/{approval}/approve", "admin", reason="trust me")
        forbidden = _post(gov, f"/v1/approvals/{approval}/approve", "operator", reason="me")
    assert same.status_code == 409 and same.json()["code"] == "same_person"
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
    failed = [r.getMessage() for r in caplog.records if "could not audit" in r.getMessage()]
    assert len(failed) == 2
    assert "denied_approve of loans/v2 by 'test-admin' (409 same_person)" in failed[0]
