"""The rollback a rollback watch commits during a run someone asked for (``POST
/compare``, ``tunewatch --actor NAME compare``) names them in its hash-chained audit
entry, as a promotion from such a run does; the actor stays the daemon. A rollback
committed by such a run that failed before recording it is still recognised, by the
next run (whoever asked for it), as the watch's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.conftest import MODEL
from tests.tunewatch.test_comparison_lifecycle import FailOnce
from tests.tunewatch.test_comparison_loop import (
    _promote_a_worse_version,
    copy_daemon,
    oracle,
    runner,
    template,  # noqa: F401  (module fixture)
)
from tests.tunewatch.test_comparison_watch import _feed
from tunewatch._daemon import Daemon
from tunewatch._errors import StoreUnavailableError
from tunewatch._example import ExampleModel
from tunewatch.comparison import ComparisonResult, ComparisonRunner

NAMED = "; the run was requested by 'alice'"


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def _decided_worse(d: Daemon, trained: list[ExampleModel]) -> ComparisonRunner:
    """v2 promoted over v1, the watch started, and 1000 requests v2 answered far worse
    than v1: the next run rolls back."""
    t = _promote_a_worse_version(d, trained)
    loop = runner(d)
    assert [r.kind for r in loop.run(MODEL)] == ["rollback_watch"]
    _feed(d, t, 400, 1400, oracle(t.x)[:, ::-1].copy(), t.y)
    return loop


def _run(loop: ComparisonRunner, requested_by: str | None = None) -> ComparisonResult:
    [watch] = [r for r in loop.run(MODEL, requested_by=requested_by) if r.kind == "rollback_watch"]
    return watch


def _rollback_audit(d: Daemon) -> tuple[str, dict[str, Any]]:
    [entry] = [e for e in d.store.audit_log(limit=100) if e.action == "rollback"]
    return entry.actor, entry.details


def test_a_requested_runs_rollback_names_the_requester_in_its_audit_entry(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """Only the rollback_triggered event named alice: the audit entry read "tunewatch
    rollback ... rollback watch 1: v2's realised loss is worse ..." and nothing more."""
    loop = _decided_worse(daemon, trained)
    watch = _run(loop, requested_by="alice")
    assert watch.action == "rolled_back", watch
    actor, details = _rollback_audit(daemon)
    assert actor == "tunewatch"
    assert details["reason"].startswith(f"rollback watch {watch.test_id}: v2's realised loss")
    assert details["reason"].endswith(NAMED), details
    [event] = daemon.store.list_events(model=MODEL, type="rollback_triggered")
    assert event.payload["requested_by"] == "alice"


def test_a_scheduled_runs_rollback_names_no_requester(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    loop = _decided_worse(daemon, trained)
    assert _run(loop).action == "rolled_back"
    _, details = _rollback_audit(daemon)
    assert "requested by" not in details["reason"] and "requested_by" not in details


@pytest.mark.parametrize("next_requester", [None, "bob"], ids=["scheduled", "bob"])
def test_a_requested_rollback_committed_but_not_recorded_is_settled_by_the_next_run(
    daemon: Daemon,
    trained: list[ExampleModel],
    monkeypatch: pytest.MonkeyPatch,
    next_requester: str | None,
) -> None:
    """alice's run committed the rollback (its reason naming her), then failed to record
    rollback_triggered: the next run, scheduled or bob's, matches the rollback's reason
    against its own and must still see the watch's own rollback, not "the champion
    changed"."""
    loop = _decided_worse(daemon, trained)
    failing = FailOnce(daemon.store.add_event, lambda **kw: kw["type"] == "rollback_triggered")
    monkeypatch.setattr(daemon.store, "add_event", failing)
    with pytest.raises(StoreUnavailableError):
        loop.run(MODEL, requested_by="alice")
    assert failing.failed == 1
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1  # the rollback committed
    assert daemon.store.list_events(model=MODEL, type="rollback_triggered") == []
    watch = _run(loop, requested_by=next_requester)
    assert watch.action == "rolled_back", watch
    [test] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
    assert (test.status, test.outcome) == ("decided", {"action": "rolled_back", "restored": 1})
    [event] = daemon.store.list_events(model=MODEL, type="rollback_triggered")
    assert (event.payload["test_id"], event.payload["rolled_back"]) == (watch.test_id, 2)
    _, details = _rollback_audit(daemon)  # the one rollback, alice's
    assert details["reason"].endswith(NAMED), details


def test_an_operators_rollback_reading_like_the_watchs_is_not_taken_for_it(
    daemon: Daemon, trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reason is matched on the watch's own text and an optional requester suffix,
    nothing looser: an operator's rollback whose reason merely starts like it closes
    the watch."""
    loop = _decided_worse(daemon, trained)
    failing = FailOnce(daemon.store.rollback, lambda *a, **kw: True)
    monkeypatch.setattr(daemon.store, "rollback", failing)
    with pytest.raises(StoreUnavailableError):
        loop.run(MODEL, requested_by="alice")
    [test] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
    against = "on the same requests" if test.state.get("paired") else "before the promotion"
    own = f"rollback watch {test.id}: v2's realised loss is worse than v1's {against}"
    daemon.store.rollback(MODEL, actor="operator", reason=own + " (confirmed by hand)")
    watch = _run(loop, requested_by="alice")
    assert watch.action == "closed", watch
