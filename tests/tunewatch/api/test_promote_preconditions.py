"""A promotion names the champion it replaces, is safe to retry, and closes the promoted
version's stale approval requests — on SQLite and PostgreSQL.

Two operators promoting different versions at once were both answered 200 "promoted",
the second silently replacing the first: nothing let a caller say which champion it meant
to replace. A retried promotion (its 200 lost) was 409 ``conflict``, as a real conflict
is; a rolled-back version's was the same generic ``conflict``. A version promoted
directly kept its pending approval request, which, approved later, was stored as
rejected with 409 ``champion_changed``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, holding, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Running]:
    """credit: v1 champion, v2 and v3 shadows, all promoted at once; loans (regulated): v1
    champion (approved), v2 shadow."""
    d, tokens = make_daemon(
        tmp_path,
        trained,
        store_url=store_url,
        extra={"models": [{"name": "loans", "task": "binary", "regulated": True}]},
    )
    d.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="test")  # v3
    for model in trained:
        d.registry.register("loans", model.onnx, model.metadata, actor="test")
    first = d.store.request_approval(
        "loans", 1, requested_by="test", reason="the first champion", rules=["regulated model"]
    )
    d.store.decide_approval(first.id, approver="ci", approve=True, reason="checked")
    with BackgroundServer(d.app) as server:
        yield Running(daemon=d, server=server, tokens=tokens)
    d.close()


def _promote(running: Running, version: int, model: str = MODEL, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v1/models/{model}/versions/{version}/promote",
        json={"reason": "it won", **body},
        headers=running.auth("operator"),
        timeout=60,
    )


def _stages(running: Running, model: str = MODEL) -> dict[int, str]:
    return {v.version: v.stage for v in running.daemon.store.list_versions(model)}


def test_two_promotions_naming_the_same_champion_promote_one_and_refuse_the_other(
    daemon: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both requests read v1 as the champion and are held at the store's write, so neither
    wrote before the other read: the store's check under the model's lock decides."""
    answers: dict[int, httpx.Response] = {}

    def promote(version: int) -> None:
        answers[version] = _promote(daemon, version, champion=1)

    with holding(monkeypatch, daemon.daemon.store, "promote", 2) as held:
        threads = [threading.Thread(target=promote, args=(v,)) for v in (2, 3)]
        for thread in threads:
            thread.start()
        for _ in threads:
            assert held.entered.acquire(timeout=60), "a promotion never reached the store"
        held.release.set()
        for thread in threads:
            thread.join()
    statuses = sorted((r.status_code, r.json().get("code")) for r in answers.values())
    assert statuses == [(200, None), (409, "champion_changed")], [r.text for r in answers.values()]
    [won] = [v for v, r in answers.items() if r.status_code == 200]
    [lost] = [v for v, r in answers.items() if r.status_code == 409]
    assert answers[won].json()["previous"]["version"] == 1
    assert f"from v1 to v{won}" in answers[lost].json()["error"]
    assert "nothing changed" in answers[lost].json()["error"]
    # v1 kept in shadow by the promotion for the (default, paired) rollback watch
    assert _stages(daemon) == {1: "shadow", won: "champion", lost: "shadow"}
    promotions = daemon.daemon.store.audit_log(limit=10, action="promote")
    assert [e.target for e in promotions if e.target.startswith(MODEL)] == [f"{MODEL}/v{won}"]


def test_a_promotion_naming_another_champion_changes_nothing(daemon: Running) -> None:
    audit = daemon.daemon.store.audit_log(limit=1000)
    for seen in (2, 0):  # 0: the caller saw no champion
        r = _promote(daemon, 3, champion=seen)
        assert r.status_code == 409 and r.json()["code"] == "champion_changed", r.text
    assert _stages(daemon) == {1: "champion", 2: "shadow", 3: "shadow"}
    # nothing written but the refused attempts' own entries
    after = daemon.daemon.store.audit_log(limit=1000)
    assert after[2:] == audit
    assert [(e.action, e.target, e.details["code"]) for e in after[:2]] == [
        ("denied_promote", f"{MODEL}/v3", "champion_changed")
    ] * 2


def test_a_promotion_of_a_regulated_model_naming_another_champion_requests_nothing(
    daemon: Running,
) -> None:
    r = _promote(daemon, 2, model="loans", champion=2)
    assert r.status_code == 409 and r.json()["code"] == "champion_changed", r.text
    assert daemon.daemon.store.list_approvals(model="loans", status="pending") == []
    ok = _promote(daemon, 2, model="loans", champion=1)
    assert ok.status_code == 202 and ok.json()["approval"]["champion_version"] == 1, ok.text


def test_a_promotion_or_rollback_naming_a_champion_the_model_never_had_is_404(
    daemon: Running,
) -> None:
    """It was 409 "the champion changed from v99 to v1 since the decision was taken":
    no champion changed, the caller named a version that does not exist."""
    store = daemon.daemon.store
    audit = store.audit_log(limit=1000)
    rollback = httpx.post(
        f"{daemon.url}/v1/models/{MODEL}/rollback",
        json={"reason": "it misbehaves", "champion": 99},
        headers=daemon.auth("operator"),
        timeout=60,
    )
    promote = _promote(daemon, 2, champion=99)
    for r in (rollback, promote):
        assert r.status_code == 404, r.text
        assert r.json() == {
            "error": f"model {MODEL!r} has no version 99",
            "code": "version_not_found",
        }
    assert _stages(daemon) == {1: "champion", 2: "shadow", 3: "shadow"}
    assert store.audit_log(limit=1000) == audit  # a 404 refers to nothing: not audited


def test_a_retried_promotion_answers_the_champion_unchanged_and_writes_nothing(
    daemon: Running,
) -> None:
    first = _promote(daemon, 3, champion=1)
    assert first.status_code == 200 and first.json()["unchanged"] is False, first.text
    store = daemon.daemon.store
    audit, events = store.audit_log(limit=1000), store.list_events(model=MODEL, limit=1000)
    # the retry of a lost 200, naming the champion its first try saw; and one naming none
    for body in ({"champion": 1}, {}):
        again = _promote(daemon, 3, **body)
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "promoted" and again.json()["unchanged"] is True
        assert again.json()["champion"]["version"] == 3 and again.json()["previous"] is None
    assert _stages(daemon) == {1: "shadow", 2: "shadow", 3: "champion"}  # v1 for the watch
    assert store.audit_log(limit=1000) == audit
    assert store.list_events(model=MODEL, limit=1000) == events


def test_promoting_a_regulated_model_s_champion_answers_unchanged(daemon: Running) -> None:
    r = _promote(daemon, 1, model="loans")
    assert r.status_code == 200 and r.json()["unchanged"] is True, r.text
    assert daemon.daemon.store.list_approvals(model="loans", status="pending") == []


def test_a_rolled_back_version_is_not_promotable(daemon: Running) -> None:
    store = daemon.daemon.store
    store.promote(MODEL, 2, actor="alice", reason="v2 won")
    store.rollback(MODEL, actor="alice", reason="v2 is worse")
    for body in ({}, {"champion": 1}):
        r = _promote(daemon, 2, **body)
        assert r.status_code == 409 and r.json()["code"] == "not_promotable", r.text
        assert "rolled back" in r.json()["error"]
    assert _stages(daemon) == {1: "champion", 2: "rolled_back", 3: "shadow"}


def test_a_version_promoted_directly_closes_its_pending_approval_request(
    daemon: Running,
) -> None:
    """The request was opened while a rule (since widened) made v3's promotion wait."""
    store = daemon.daemon.store
    stale = store.request_approval(
        MODEL, 3, requested_by="carol", reason="C out of range", rules=["outside safe range: C"]
    )
    r = _promote(daemon, 3)
    assert r.status_code == 200 and r.json()["champion"]["version"] == 3, r.text
    closed = store.get_approval(stale.id)
    assert closed.status == "rejected" and closed.decided_by == "test-operator"
    assert "superseded: v3 was promoted without this request (it won)" == closed.decision_reason
    [entry] = store.audit_log(limit=10, action="approval_rejected")
    assert entry.details == {"approval": stale.id, "version": 3, "reason": closed.decision_reason}
    late = httpx.post(
        f"{daemon.url}/v1/approvals/{stale.id}/approve",
        json={"reason": "looks good"},
        headers=daemon.auth("approver"),
        timeout=60,
    )
    assert late.status_code == 409 and late.json()["code"] == "already_decided", late.text


def test_the_openapi_promote_body_documents_the_champion(daemon: Running) -> None:
    spec = httpx.get(f"{daemon.url}/openapi.json", timeout=60).json()
    op = spec["paths"]["/v1/models/{model}/versions/{version}/promote"]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(body["properties"]) == {"reason", "champion"}
    assert "champion_changed" in body["properties"]["champion"]["description"]
