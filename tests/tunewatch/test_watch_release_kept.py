"""The end of a paired rollback watch returns the previous champion it kept in shadow to
retired, unless an operator moved it (to shadow) after the promotion: then it stays
where the operator put it, as it does when the operator moved it before the watch
started."""

from __future__ import annotations

from pathlib import Path

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    copy_daemon,
    daemon,  # noqa: F401  (fixture)
    runner,
    template,  # noqa: F401  (module fixture)
)
from tunewatch import _governance as governance
from tunewatch._daemon import Daemon
from tunewatch.comparison._results import ACTOR
from tunewatch.comparison._watch_release import release_kept


def _moves_of_v1(d: Daemon) -> list[tuple[str, str]]:
    entries = d.store.audit_log(target=f"{MODEL}/v1", action="set_stage")
    return [(e.actor, str(e.details.get("stage"))) for e in reversed(entries)]


def test_a_kept_version_the_operator_moved_to_shadow_during_the_watch_stays_there(
    daemon: Daemon,  # noqa: F811
) -> None:
    out = governance.promote(daemon.store, daemon.config, MODEL, 2, actor="alice", reason="go")
    assert out.previous is not None and out.previous.stage == "shadow"
    loop = runner(daemon)
    loop.run(MODEL)  # the watch starts, keeping v1 in shadow
    [watch] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
    assert watch.state["kept_in_shadow"] is True
    daemon.store.set_stage(MODEL, 1, "shadow", actor="bob", reason="keep v1 scoring")
    # the watch passes
    release_kept(daemon.store, loop.comparisons.get_test(watch.id), lineup_changed=lambda m: None)
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    assert _moves_of_v1(daemon) == [("bob", "shadow")]


def test_a_kept_version_the_operator_moved_to_shadow_is_not_returned_when_no_watch_starts(
    daemon: Daemon,  # noqa: F811
) -> None:
    """The watch was made unpaired after the promotion: a version the promotion kept goes
    back to retired, but not one an operator has moved to shadow since."""
    governance.promote(daemon.store, daemon.config, MODEL, 2, actor="alice", reason="go")
    daemon.store.set_stage(MODEL, 1, "shadow", actor="bob", reason="keep v1 scoring")
    runner(daemon, rollback={"paired": False, "min_n": 300}).run(MODEL)
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    assert _moves_of_v1(daemon) == [("bob", "shadow")]


def test_a_version_the_watch_itself_moved_to_shadow_is_retired_when_it_passes(
    template: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Retired by a promotion made without a paired watch, v1 is moved to shadow by the
    watch (its own move, not an operator's) and retired again at its end."""
    d = copy_daemon(
        template,
        tmp_path / "unpaired",
        models=[{"name": MODEL, "task": "binary", "comparison": {"rollback": {"paired": False}}}],
    )
    try:
        governance.promote(d.store, d.config, MODEL, 2, actor="alice", reason="go")
        assert d.store.get_version(MODEL, 1).stage == "retired"
        loop = runner(d)
        loop.run(MODEL)
        [watch] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
        assert d.store.get_version(MODEL, 1).stage == "shadow"
        release_kept(d.store, loop.comparisons.get_test(watch.id), lineup_changed=lambda m: None)
        assert d.store.get_version(MODEL, 1).stage == "retired"
        assert _moves_of_v1(d) == [(ACTOR, "shadow"), (ACTOR, "retired")]
    finally:
        d.close()
