"""With ``comparison.enabled: false`` the leader still schedules each model's comparison
run, which then only releases: a version a promotion kept in shadow for a paired rollback
watch is retired, and a watch left open is closed, by the scheduler itself. Without it,
the kept version shadow-scored every request until someone ran ``tunewatch compare``."""

from __future__ import annotations

from pathlib import Path

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    _promote_a_worse_version,
    copy_daemon,
    runner,
    template,  # noqa: F401  (module fixture)
)
from tests.tunewatch.test_comparison_watch import _watch
from tunewatch import _governance as governance
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel

#: The daemons' models: comparison switched off (and an interval no test waits for).
OFF = [{"name": MODEL, "task": "binary", "comparison": {"enabled": False, "interval_s": 3600}}]


def _leading(data_dir: Path) -> Daemon:
    """A started daemon on ``data_dir`` with comparison off, leading the scheduler."""
    config = build_config(
        {"data_dir": str(data_dir), "tuning": {"workers": 0}, "models": OFF}, env={}
    )
    daemon = Daemon(config, env={})
    daemon.start()
    assert daemon.scheduler.leader
    return daemon


def _scheduled_compare(daemon: Daemon) -> None:
    """One run of the leader's own scheduled comparison job of the model."""
    job = daemon.scheduler._aps.get_job(f"compare:{MODEL}")
    assert job is not None, daemon.scheduler.scheduled()
    job.func()


def test_a_version_kept_by_a_promotion_under_another_config_is_retired_by_the_scheduler(
    template: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """``tunewatch promote`` from a CLI with no config (a paired watch by default) keeps
    v1 in shadow; the daemons, whose config switches comparison off, retire it."""
    copy_daemon(template, tmp_path / "data").close()
    daemon = _leading(tmp_path / "data")
    try:
        defaults = build_config({"data_dir": str(tmp_path / "data")}, env={})
        outcome = governance.promote(daemon.store, defaults, MODEL, 2, actor="test", reason="v2")
        assert outcome.status == "promoted"
        assert daemon.store.get_version(MODEL, 1).stage == "shadow"
        [promoted] = daemon.store.list_events(model=MODEL, type="promoted", limit=1)
        assert promoted.payload["kept_in_shadow"] is True
        _scheduled_compare(daemon)
        assert daemon.store.get_version(MODEL, 1).stage == "retired"
        assert daemon.store.get_version(MODEL, 2).stage == "champion"
    finally:
        daemon.close()


def test_a_watch_open_when_comparison_is_switched_off_is_closed_by_the_scheduler(
    template: Path,  # noqa: F811
    tmp_path: Path,
    trained: list[ExampleModel],
) -> None:
    """A paired watch opened, then the daemon restarted with comparison off."""
    before = copy_daemon(template, tmp_path / "data")
    try:
        _promote_a_worse_version(before, trained)
        _watch(runner(before))
        [watch] = before.comparisons.comparisons.list_tests(MODEL, kind="rollback_watch")
        assert watch.status == "open" and before.store.get_version(MODEL, 1).stage == "shadow"
    finally:
        before.close()
    daemon = _leading(tmp_path / "data")
    try:
        _scheduled_compare(daemon)
        [watch] = daemon.comparisons.comparisons.list_tests(MODEL, kind="rollback_watch")
        assert watch.status == "closed"
        assert daemon.store.get_version(MODEL, 1).stage == "retired"
    finally:
        daemon.close()


def test_a_scheduled_run_with_comparison_off_and_nothing_kept_records_nothing(
    template: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """v1 champion, v2 in shadow, no promotion: the run changes no stage, raises no event
    and counts no comparison."""
    copy_daemon(template, tmp_path / "data").close()
    daemon = _leading(tmp_path / "data")
    try:
        events = daemon.store.list_events(model=MODEL)
        _scheduled_compare(daemon)
        assert daemon.store.list_events(model=MODEL) == events
        assert [v.stage for v in daemon.store.list_versions(MODEL)] == ["champion", "shadow"]
        assert daemon.comparisons.comparisons.list_tests(MODEL) == []
        assert 'outcome="comparison"' not in daemon.metrics.exposition().decode()
    finally:
        daemon.close()
