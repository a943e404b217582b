"""A rollback naming no champion does not roll back a champion a rollback restored: sent
again after its answer was lost, or late after the rollback watch's, it would roll back
the good version the first one restored (``rolled_back`` is final) and restore the one
before it. Naming that champion (``champion: N``) rolls it back, deliberately."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, serving
from tunewatch import _governance as governance
from tunewatch._example import ExampleModel
from tunewatch.comparison._results import ACTOR

WATCH_REASON = "rollback watch: v3's realised loss is worse than v2's"


@pytest.fixture
def run(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    """credit: v1 then v2 then v3 promoted; v3 serves."""
    with serving(tmp_path, trained) as running:
        d = running.daemon
        d.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="test")  # v3
        d.store.promote(MODEL, 2, actor="alice", reason="v2 won")
        d.store.promote(MODEL, 3, actor="alice", reason="v3 won")
        yield running


def _stages(run: Running) -> dict[int, str]:
    r = httpx.get(f"{run.url}/v1/models/{MODEL}/versions", headers=run.auth("viewer"), timeout=30)
    return {v["version"]: v["stage"] for v in r.json()["versions"]}


def _rollback(run: Running, body: dict[str, object]) -> httpx.Response:
    return httpx.post(
        f"{run.url}/v1/models/{MODEL}/rollback", json=body, headers=run.auth("operator"), timeout=60
    )


def test_a_retried_rollback_does_not_roll_back_the_version_it_restored(run: Running) -> None:
    body = {"reason": "v3 misbehaves"}
    first = _rollback(run, body)
    assert first.status_code == 200, first.text
    assert (first.json()["champion"]["version"], first.json()["rolled_back"]["version"]) == (2, 3)

    retry = _rollback(run, body)
    assert retry.status_code == 409, retry.text
    assert set(retry.json()) == {"error", "code"}
    assert retry.json()["code"] == "champion_changed"
    error = retry.json()["error"]
    for said in ("version 2", "'test-operator'", "'v3 misbehaves'", "`champion: 2`"):
        assert said in error, (said, error)
    assert _stages(run) == {1: "retired", 2: "champion", 3: "rolled_back"}
    denied = run.daemon.store.audit_log(1, action="denied_rollback")
    assert [(e.actor, e.target, e.details["code"]) for e in denied] == [
        ("test-operator", MODEL, "champion_changed")
    ]
    assert [e.actor for e in run.daemon.store.audit_log(10, action="rollback")] == ["test-operator"]


def test_a_late_rollback_does_not_roll_back_the_version_the_watch_restored(run: Running) -> None:
    d = run.daemon
    governance.rollback(
        d.store, d.artefacts, MODEL, actor=ACTOR, reason=WATCH_REASON, expected_champion=3
    )
    late = _rollback(run, {"reason": "v3 misbehaves"})
    assert late.status_code == 409, late.text
    assert late.json()["code"] == "champion_changed"
    assert repr(ACTOR) in late.json()["error"]
    assert WATCH_REASON in late.json()["error"]
    assert _stages(run) == {1: "retired", 2: "champion", 3: "rolled_back"}


def test_a_rollback_naming_the_restored_champion_rolls_it_back(run: Running) -> None:
    assert _rollback(run, {"reason": "v3 misbehaves"}).status_code == 200
    meant = _rollback(run, {"reason": "v2 misbehaves too", "champion": 2})
    assert meant.status_code == 200, meant.text
    assert (meant.json()["champion"]["version"], meant.json()["rolled_back"]["version"]) == (1, 2)
    assert _stages(run) == {1: "champion", 2: "rolled_back", 3: "rolled_back"}


def test_a_champion_promoted_after_a_rollback_is_rolled_back_without_naming_it(
    run: Running,
) -> None:
    """Only a champion a rollback made is kept from an unnamed rollback: one promoted
    since replaced the restored one, and rolling it back restores that one."""
    assert _rollback(run, {"reason": "v3 misbehaves"}).status_code == 200
    run.daemon.store.promote(MODEL, 1, actor="alice", reason="v1 again")
    again = _rollback(run, {"reason": "v1 misbehaves"})
    assert again.status_code == 200, again.text
    assert (again.json()["champion"]["version"], again.json()["rolled_back"]["version"]) == (2, 1)
