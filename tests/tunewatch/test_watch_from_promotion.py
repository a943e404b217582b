"""A promotion made while a paired rollback watch is configured keeps the champion it
replaces in shadow in its own transaction: the requests answered before the comparison
loop's next run are paired, and the watch's first look counts them all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    _promote_a_worse_version,
    copy_daemon,
    oracle,
    runner,
    template,  # noqa: F401  (module fixture)
)
from tests.tunewatch.test_comparison_watch import _feed, _watch
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel

N = 600


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def test_requests_before_the_first_watch_run_are_counted_by_its_first_look(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = _promote_a_worse_version(daemon, trained, 400 + N)
    # kept in shadow by the promotion itself, before any run of the loop
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    [promoted] = daemon.store.list_events(model=MODEL, type="promoted", limit=1)
    assert promoted.payload["kept_in_shadow"] is True
    _feed(daemon, t, 400, 400 + N, oracle(t.x)[:, ::-1].copy(), t.y)
    assert daemon.store.list_events(model=MODEL, type="stage_changed") == []
    loop = runner(daemon)
    watch = _watch(loop)
    assert watch is not None and watch.look is not None
    assert watch.look.n == N
    [test] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
    assert test.state["kept_in_shadow"] is True and test.state["shadow_pending"] is False


def test_a_promotion_without_a_paired_watch_retires_the_champion_it_replaces(
    template: Path,  # noqa: F811
    tmp_path: Path,
    trained: list[ExampleModel],
) -> None:
    d = copy_daemon(
        template,
        tmp_path / "unwatched",
        models=[{"name": MODEL, "task": "binary", "comparison": {"rollback": {"paired": False}}}],
    )
    try:
        _promote_a_worse_version(d, trained)
        assert d.store.get_version(MODEL, 1).stage == "retired"
        [promoted] = d.store.list_events(model=MODEL, type="promoted", limit=1)
        assert "kept_in_shadow" not in promoted.payload
    finally:
        d.close()


def test_a_version_kept_for_a_watch_that_never_starts_is_retired(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The watch was made unpaired after the promotion: the kept version goes back."""
    _promote_a_worse_version(daemon, trained)
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    _watch(runner(daemon, rollback={"paired": False, "min_n": 300}))
    assert daemon.store.get_version(MODEL, 1).stage == "retired"
