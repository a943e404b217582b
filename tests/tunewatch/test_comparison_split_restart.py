"""A live split whose salt or share changes is a new split: its sample-ratio check counts
afresh, and so does its unpaired test. The test of the old settings is closed, never acted
on, and a new one reads only the requests received under the new settings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    Traffic,
    copy_daemon,
    oracle,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
    write,
)
from tests.tunewatch.test_comparison_split import SPLIT, _mismatched_split
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._split import SplitConfig, route
from tunewatch.comparison import ComparisonRunner
from tunewatch.store._comparisons import ComparisonTestRow
from tunewatch.store._schema import split_units


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def _split_tests(loop: ComparisonRunner) -> list[ComparisonTestRow]:
    return [t for t in loop.comparisons.list_tests(MODEL) if t.kind == "split"]


def _units(d: Daemon) -> dict[tuple[int, str], set[str]]:
    """The arms each (split test, unit) holds totals in."""
    with d.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(split_units.c.test_id, split_units.c.arm, split_units.c.unit_key)
        ).all()
    arms: dict[tuple[int, str], set[str]] = {}
    for test_id, arm, key in rows:
        arms.setdefault((int(test_id), key), set()).add(arm)
    return arms


@pytest.mark.parametrize(
    "changed", [{"salt": "exp-2"}, {"percent": 40.0}], ids=["new-salt", "share-ramped-down"]
)
def test_a_split_test_blocked_by_a_mismatch_is_closed_not_promoted_when_the_split_changes(
    daemon: Daemon, trained: list[ExampleModel], changed: dict[str, object]
) -> None:
    """The split test decided v2 better on a 5,300/4,700 split and the mismatch blocked it;
    a new salt restarted the sample-ratio count (untested, no mismatch), which lifted the
    block, and the next run promoted v2 on the mismatched evidence without a new request.
    The test of the old settings is closed and a new one starts, empty."""
    _mismatched_split(daemon, traffic(trained, 12_000, seed=7))
    split = next(
        r for r in runner(daemon, split=SPLIT.model_dump()).run(MODEL) if r.kind == "split"
    )
    assert split.action == "blocked_srm"
    changed_split = SPLIT.model_copy(update=changed)
    loop = runner(daemon, split=changed_split.model_dump())
    for _ in range(2):  # nothing new came: nothing is promoted, then or later
        results = [r for r in loop.run(MODEL) if r.kind == "split"]
        assert [r.action for r in results] == ["none"]
        champion = daemon.store.champion(MODEL)
        assert champion is not None and champion.version == 1
    old, new = _split_tests(loop)
    assert old.id == split.test_id and old.status == "closed"
    assert old.outcome is not None and old.outcome["action"] == "closed"
    assert "salt or share changed" in old.outcome["reason"]
    assert new.status == "open" and new.n == 0 and new.looks == 0
    assert results[0].test_id == new.id
    assert not any(test_id == new.id for test_id, _ in _units(daemon))
    assert daemon.store.list_events(model=MODEL, type="promoted") == []


def _serve(d: Daemon, t: Traffic, split: SplitConfig, ids: range, at: datetime) -> None:
    """Labelled requests ``ids``, one per unit ``u{id % 600}``, answered as ``split``
    routes them (v2 shadows the champion's requests, as a split challenger does)."""
    keys = [i % 600 for i in ids]
    arm = {i: route((1, 2), split, f"u{k}") for i, k in zip(ids, keys, strict=True)}
    ours = [i for i in ids if arm[i] == 1]
    theirs = [i for i in ids if arm[i] == 2]
    for rows, answers in (
        (ours, {1: t.logistic[ours], 2: oracle(t.x[ours])}),
        (theirs, {2: oracle(t.x[theirs])}),
    ):
        write(
            d.store,
            ids=rows,
            x=t.x[rows],
            y=t.y[rows],
            answers=answers,
            roles={1: "champion", 2: "challenger"},
            units=[f"u{i % 600}" for i in rows],
            received_at=at,
        )


@pytest.mark.parametrize(
    "changed", [{"salt": "exp-B"}, {"percent": 50.0}], ids=["new-salt", "share-ramped-to-50"]
)
def test_units_that_change_arms_with_the_split_s_settings_feed_a_new_split_test(
    daemon: Daemon, trained: list[ExampleModel], changed: dict[str, object]
) -> None:
    """600 units under a 10 % split, then the same units under a new salt (or a 50 %
    share): the units the change moved to the other arm were added to the other arm of
    the same unpaired test (294 of 600 units in both arms after a new salt), a test that
    takes its arms for independent. Each settings' units feed their own test."""
    t = traffic(trained, 1200, seed=7)
    now = datetime.now(UTC)
    before = SplitConfig(challenger=2, percent=10.0, salt="exp-A", start=now - timedelta(hours=1))
    after = before.model_copy(update=changed)
    open_ = {"min_n": 3000, "planned_n": 20_000}  # no test decides
    _serve(daemon, t, before, range(0, 600), now - timedelta(minutes=30))
    first = next(
        r
        for r in runner(daemon, split=before.model_dump(), **open_).run(MODEL)
        if r.kind == "split"
    )
    assert first.look is not None
    loop = runner(daemon, split=after.model_dump(), **open_)
    assert [r.action for r in loop.run(MODEL) if r.kind == "split"] == ["none"]
    _serve(daemon, t, after, range(600, 1200), now + timedelta(minutes=1))  # units come back
    second = next(r for r in loop.run(MODEL) if r.kind == "split")
    arms = _units(daemon)
    assert [key for key, held in arms.items() if len(held) > 1] == []  # one arm per test
    old, new = _split_tests(loop)
    assert old.id == first.test_id and old.status == "closed" and second.test_id == new.id
    assert new.status == "open" and second.look is not None
    assert sum(test_id == old.id for test_id, _ in arms) == 600
    assert sum(test_id == new.id for test_id, _ in arms) == 600
    moved = {
        key for (test_id, key), held in arms.items() if test_id == new.id and held == {"challenger"}
    }
    assert moved == {f"u{k}" for k in range(600) if route((1, 2), after, f"u{k}") == 2}
