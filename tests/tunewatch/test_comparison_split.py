"""Live splits: sticky routing with the configured share, and the sample-ratio check that
raises srm_detected and blocks promotions while it fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    copy_daemon,
    oracle,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
    write,
)
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._split import SplitConfig, route

SPLIT = SplitConfig(challenger=2, percent=50.0, salt="exp-1")


def test_route_is_sticky_and_matches_the_share() -> None:
    split = SplitConfig(challenger=2, percent=20.0, salt="exp-20")
    keys = [f"user-{i}" for i in range(10_000)]
    first = [route((1, 2), split, k) for k in keys]
    assert [route((1, 2), split, k) for k in keys] == first
    share = first.count(2) / len(keys)
    assert share == pytest.approx(0.20, abs=0.012)  # 3 binomial standard deviations
    other = SplitConfig(challenger=2, percent=20.0, salt="exp-21")
    assert [route((1, 2), other, k) for k in keys] != first  # a new salt reshuffles
    assert route((1, 2), split, None) == 1  # no unit: the champion answers
    assert route((1, 3), split, "user-1") == 1  # split challenger not in the lineup
    assert route((1, 2), None, "user-1") == 1


def test_split_config_refuses_a_long_salt() -> None:
    with pytest.raises(ValueError, match="at most 64 bytes"):
        SplitConfig(challenger=2, percent=10, salt="x" * 65)


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def _split_traffic(d: Daemon, trained: list[ExampleModel], champion_share: float) -> None:
    """10,000 split requests: the champion answers ``champion_share`` of them (shadowed by
    a clearly better v2, labelled); v2 answers the rest alone."""
    n = 10_000
    n_champion = round(n * champion_share)
    t = traffic(trained, n, seed=7)
    write(
        d.store,
        ids=range(n_champion),
        x=t.x[:n_champion],
        y=t.y[:n_champion],
        answers={1: t.logistic[:n_champion], 2: oracle(t.x[:n_champion])},
    )
    rest = slice(n_champion, n)
    write(
        d.store,
        ids=range(n_champion, n),
        x=t.x[rest],
        y=np.zeros(n - n_champion),
        answers={2: oracle(t.x[rest])},
        roles={2: "challenger"},
    )


def test_srm_on_a_52_48_split_fires_once_and_blocks_promotion(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    _split_traffic(daemon, trained, 0.52)
    loop = runner(daemon, split=SPLIT.model_dump())
    result = next(r for r in loop.run(MODEL) if r.kind == "paired")
    [event] = daemon.store.list_events(model=MODEL, type="srm_detected")
    assert event.payload["n_champion"] == 5200 and event.payload["n_challenger"] == 4800
    assert event.payload["p_value"] < 0.001
    # v2 is clearly better on the champion's requests, but the split is broken.
    assert result.decision == "challenger_better" and result.action == "blocked_srm"
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1
    assert [r.action for r in loop.run(MODEL) if r.kind == "paired"] == ["blocked_srm"]
    assert len(daemon.store.list_events(model=MODEL, type="srm_detected")) == 1
    assert len(daemon.store.list_events(model=MODEL, type="promotion_blocked")) == 1


def test_balanced_split_passes_the_check_and_promotes(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    _split_traffic(daemon, trained, 0.50)
    result = next(
        r for r in runner(daemon, split=SPLIT.model_dump()).run(MODEL) if r.kind == "paired"
    )
    assert daemon.store.list_events(model=MODEL, type="srm_detected") == []
    assert result.action == "promoted"
