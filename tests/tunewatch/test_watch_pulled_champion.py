"""A replaced champion an operator pulled (retired it after it was replaced: "never serve
it again") is out of the rollback's reach: the rollback watch neither keeps it in shadow
nor restores it, and a rollback by hand is refused. The daemon's own moves (the demotion
at the promotion, the watch lending it to shadow and returning it) pull nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tunewatch.test_comparison_loop import (
    BATCH,
    MODEL,
    Traffic,
    copy_daemon,
    oracle,
    runner,
    template,  # noqa: F401  (module fixture)
)
from tests.tunewatch.test_comparison_watch import _feed, _promote_v2, _watch
from tunewatch import _governance as governance
from tunewatch._daemon import Daemon
from tunewatch._errors import ConflictError
from tunewatch._example import ExampleModel
from tunewatch.comparison import ComparisonRunner

PULL = "compliance: v1 uses a protected attribute, never serve it again"


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def _stages(d: Daemon) -> list[tuple[int, str]]:
    return [(v.version, v.stage) for v in d.store.list_versions(MODEL)]


def _feed_worse(d: Daemon, t: Traffic, loop: ComparisonRunner) -> None:
    """Feed v2's far worse answers until the watch acts; it must not."""
    worse = oracle(t.x)[:, ::-1].copy()
    for start in range(400, 2400, BATCH):
        _feed(d, t, start, start + BATCH, worse, t.y)
        assert _watch(loop) is None


def _closed_reason(loop: ComparisonRunner) -> str:
    [test] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
    assert test.status == "closed" and test.outcome is not None
    assert test.outcome["action"] == "closed"
    return str(test.outcome["reason"])


def test_a_previous_champion_an_operator_retired_is_neither_kept_in_shadow_nor_restored(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = _promote_v2(daemon, trained)
    daemon.store.set_stage(MODEL, 1, "retired", actor="test-operator", reason=PULL)
    loop = runner(daemon)
    first = _watch(loop)
    assert first is not None and first.action == "closed", first
    assert "v1 was retired by 'test-operator' after v2 replaced it" in first.detail[0]
    assert PULL in first.detail[0]
    assert _stages(daemon) == [(1, "retired"), (2, "champion")]
    _feed_worse(daemon, t, loop)
    assert _stages(daemon) == [(1, "retired"), (2, "champion")]
    assert daemon.store.list_events(model=MODEL, type="rollback_triggered") == []
    assert "retired by 'test-operator'" in _closed_reason(loop)
    # the watch moved nothing: the operator's pull is v1's only stage change
    [moved] = daemon.store.list_events(model=MODEL, type="stage_changed")
    assert moved.payload["reason"] == PULL


def test_an_unpaired_watch_does_not_roll_back_to_a_previous_champion_an_operator_retired(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = _promote_v2(daemon, trained)
    daemon.store.set_stage(MODEL, 1, "retired", actor="test-operator", reason=PULL)
    loop = runner(daemon, rollback={"paired": False, "min_n": 300})
    first = _watch(loop)
    assert first is not None and first.action == "closed", first
    assert "retired by 'test-operator'" in first.detail[0]
    _feed_worse(daemon, t, loop)
    assert _stages(daemon) == [(1, "retired"), (2, "champion")]


def test_a_previous_champion_retired_during_the_watch_closes_it_and_stays_retired(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = _promote_v2(daemon, trained)
    loop = runner(daemon)
    _watch(loop)
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    daemon.store.set_stage(MODEL, 1, "retired", actor="test-operator", reason=PULL)
    watch = _watch(loop)
    assert watch is not None and watch.action == "closed"
    assert watch.detail == ("v1 left shadow: there is nothing to compare",)
    _feed_worse(daemon, t, loop)
    with pytest.raises(ConflictError) as refused:
        daemon.store.rollback(MODEL, actor="operator", reason="v2 is worse")
    assert refused.value.code == "no_previous_champion"
    assert _stages(daemon) == [(1, "retired"), (2, "champion")]


def test_a_rollback_by_hand_refuses_a_previous_champion_an_operator_retired(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    _promote_v2(daemon, trained)
    daemon.store.set_stage(MODEL, 1, "retired", actor="test-operator", reason=PULL)
    with pytest.raises(ConflictError) as refused:
        daemon.store.rollback(MODEL, actor="operator", reason="v2 is worse")
    assert refused.value.code == "no_previous_champion"
    message = refused.value.message
    assert "version 1 was retired by 'test-operator' after v2 replaced it" in message
    assert PULL in message
    with pytest.raises(ConflictError) as again:
        governance.rollback(
            daemon.store, daemon.runtime.artefacts, MODEL, actor="operator", reason="v2 is worse"
        )
    assert again.value.code == "no_previous_champion"
    assert _stages(daemon) == [(1, "retired"), (2, "champion")]


def test_a_previous_champion_shadowed_by_an_operator_is_still_restored(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A move to shadow pulls nothing: the version is scored, not served."""
    _promote_v2(daemon, trained)
    daemon.store.set_stage(MODEL, 1, "shadow", actor="test-operator", reason="keep scoring")
    restored, rolled = daemon.store.rollback(MODEL, actor="operator", reason="v2 is worse")
    assert (restored.version, rolled.version) == (1, 2)


def test_a_previous_champion_the_watch_returned_to_retired_is_still_restored(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = _promote_v2(daemon, trained)
    loop = runner(daemon, min_n=100, rollback={"watch_requests": 200})
    _watch(loop)
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    _feed(daemon, t, 400, 700, oracle(t.x), t.y)
    _watch(loop)
    watch = _watch(loop)
    assert watch is not None and watch.action == "watch_passed"
    assert daemon.store.get_version(MODEL, 1).stage == "retired"
    restored, rolled = daemon.store.rollback(MODEL, actor="operator", reason="v2 is worse")
    assert (restored.version, rolled.version) == (1, 2)


def test_promoting_the_pair_again_after_a_pull_makes_the_previous_champion_restorable(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The operator brought v1 back as champion after pulling it: the pull is undone, and
    v2's next promotion replaces v1 as usual."""
    _promote_v2(daemon, trained)
    daemon.store.set_stage(MODEL, 1, "retired", actor="test-operator", reason=PULL)
    daemon.store.promote(MODEL, 1, actor="test-operator", reason="cleared after all")
    daemon.store.promote(MODEL, 2, actor="test-operator", reason="try v2 again")
    restored, rolled = daemon.store.rollback(MODEL, actor="operator", reason="v2 is worse")
    assert (restored.version, rolled.version) == (1, 2)
