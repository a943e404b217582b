"""A live split's test whose challenger left shadow (retired, rolled back, promoted by
hand) or that the configured split no longer names stayed ``open`` and current for ever:
the A/B page, ``GET /v1/models/{m}/comparisons`` and ``tunewatch comparisons`` showed an
experiment running for a version that splits nothing. It is closed, as a paired test whose
challenger left shadow is, and opens again where it stopped when the split splits with it
again. One a rollback watch only keeps shadowing is left open: it resumes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    copy_daemon,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
    write,
)
from tests.tunewatch.test_comparison_split import SPLIT, _mismatched_split
from tunewatch import _governance as governance
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.comparison import ComparisonRunner
from tunewatch.store._comparisons import ComparisonTestRow

SETTINGS = {"min_n": 30, "planned_n": 400, "rollback": {"enabled": False}}


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def _split_tests(loop: ComparisonRunner) -> list[ComparisonTestRow]:
    return loop.comparisons.list_tests(MODEL, kind="split")


def _serve_arms(d: Daemon, first: int, n: int = 200) -> None:
    """``n`` units a request each in either arm of ``SPLIT``: the champion (v1) and v2,
    alike (losses that decide nothing soon)."""
    rng = np.random.default_rng(first)
    for version in (1, 2):
        ids = range(first + (version - 1) * n, first + version * n)
        p = rng.uniform(0.3, 0.7, n)
        write(
            d.store,
            ids=ids,
            x=np.zeros((n, 8), dtype=np.float32),
            y=(rng.uniform(size=n) < p).astype(np.float64),
            answers={version: np.column_stack([1 - p, p])},
            roles={version: "champion" if version == 1 else "challenger"},
            units=[f"u{i}" for i in ids],
        )


def _open_split_test(d: Daemon) -> tuple[ComparisonRunner, ComparisonTestRow]:
    loop = runner(d, split=SPLIT.model_dump(), **SETTINGS)
    _serve_arms(d, 0)
    [result] = [r for r in loop.run(MODEL) if r.kind == "split"]
    assert result.status == "open" and result.look is not None and result.look.n > 0
    return loop, loop.comparisons.get_test(result.test_id)


@pytest.mark.parametrize("stage", ["retired", "rolled_back"])
def test_a_split_test_whose_challenger_left_shadow_is_closed(daemon: Daemon, stage: str) -> None:
    loop, test = _open_split_test(daemon)
    daemon.store.set_stage(MODEL, 2, stage, actor="op", reason="done with v2")
    why = f"the split's challenger v2 left shadow ({stage})"
    [closed] = [r for r in loop.run(MODEL) if r.kind == "split"]
    assert (closed.test_id, closed.status, closed.action, closed.detail) == (
        test.id,
        "closed",
        "closed",
        (why,),
    )
    [stored] = _split_tests(loop)
    assert stored.status == "closed" and stored.outcome is not None
    assert stored.outcome["reason"] == why
    assert [r for r in loop.run(MODEL) if r.kind == "split"] == []  # closed once
    summary = [s.test for s in loop.summary(MODEL) if s.test.kind == "split"]
    assert [(t.id, t.status) for t in summary] == [(test.id, "closed")]


def test_a_split_test_whose_challenger_returns_to_shadow_goes_on_where_it_stopped(
    daemon: Daemon,
) -> None:
    loop, test = _open_split_test(daemon)
    looks = len(loop.history(MODEL, 2))
    daemon.store.set_stage(MODEL, 2, "retired", actor="op", reason="paused")
    loop.run(MODEL)
    daemon.store.set_stage(MODEL, 2, "shadow", actor="op", reason="back")
    _serve_arms(daemon, 1000)
    [resumed] = [r for r in loop.run(MODEL) if r.kind == "split"]
    assert (resumed.test_id, resumed.status) == (test.id, "open")
    assert resumed.fed == 400 and len(loop.history(MODEL, 2)) == looks + 1
    assert [t.id for t in _split_tests(loop)] == [test.id]


@pytest.mark.parametrize(
    ("split", "why"),
    [
        (None, "the live split was removed from the configuration"),
        (
            SPLIT.model_copy(update={"challenger": 3}).model_dump(),
            "the live split names another challenger (v3)",
        ),
    ],
    ids=["split-removed", "split-names-v3"],
)
def test_a_split_test_the_configuration_no_longer_names_is_closed_and_reopens_when_it_does(
    daemon: Daemon, trained: list[ExampleModel], split: dict[str, object] | None, why: str
) -> None:
    _, test = _open_split_test(daemon)
    daemon.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")  # v3
    rebuilt = runner(daemon, **SETTINGS) if split is None else runner(daemon, split=split)
    [closed] = [r for r in rebuilt.run(MODEL) if r.kind == "split" and r.test_id == test.id]
    assert (closed.status, closed.action, closed.detail) == ("closed", "closed", (why,))
    stored = rebuilt.comparisons.get_test(test.id)
    assert stored.status == "closed" and stored.outcome is not None
    assert stored.outcome["reason"] == why
    again = runner(daemon, split=SPLIT.model_dump(), **SETTINGS)  # the split is back
    results = [r for r in again.run(MODEL) if r.kind == "split"]
    if split is None:  # the same split: its test goes on where it stopped
        assert [(r.test_id, r.status) for r in results] == [(test.id, "open")]
        return
    # Another challenger and back is a new split (its sample-ratio check counts afresh):
    # the test opens again only to be closed for it, and a new one follows. v3's test,
    # from while the split named it, is closed in turn.
    reasons = {
        t.challenger_version: (t.status, (t.outcome or {}).get("reason"))
        for t in again.comparisons.list_tests(MODEL, kind="split")
        if t.id != test.id and t.status == "closed"
    }
    assert reasons == {3: ("closed", "the live split names another challenger (v2)")}
    reason = str((again.comparisons.get_test(test.id).outcome or {}).get("reason"))
    assert reason.startswith("the live split's challenger, salt or share changed")
    [new] = [r for r in results if r.challenger_version == 2]
    assert new.status == "open" and again.comparisons.get_test(new.test_id).promotion_id == test.id


@pytest.mark.parametrize("removed", [False, True], ids=["challenger-retired", "split-removed"])
def test_a_split_decision_blocked_by_a_mismatch_is_closed_not_acted_on(
    daemon: Daemon, trained: list[ExampleModel], removed: bool
) -> None:
    """Decided, its promotion held by the sample-ratio check: with the split gone (or its
    challenger) it is closed, never promoted."""
    _mismatched_split(daemon, traffic(trained, 12_000, seed=7))
    loop = runner(daemon, split=SPLIT.model_dump())
    [blocked] = [r for r in loop.run(MODEL) if r.kind == "split"]
    assert blocked.status == "decided" and blocked.action == "blocked_srm"
    if removed:
        loop = runner(daemon)
        why = "the live split was removed from the configuration"
    else:
        daemon.store.set_stage(MODEL, 2, "retired", actor="op", reason="done with v2")
        why = "the split's challenger v2 left shadow (retired)"
    [closed] = [r for r in loop.run(MODEL) if r.kind == "split"]
    assert (closed.test_id, closed.status, closed.detail) == (blocked.test_id, "closed", (why,))
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1
    assert daemon.store.get_version(MODEL, 2).stage == ("shadow" if removed else "retired")


def test_a_split_test_a_rollback_watch_keeps_in_shadow_stays_open(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """v2, the split's challenger, was promoted and replaced by v3 before the loop ran
    again: v3's watch keeps v2 in shadow, comparing with it. Its split test is only
    paused (it splits nothing meanwhile), not closed."""
    _, test = _open_split_test(daemon)
    daemon.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")  # v3
    governance.promote(daemon.store, daemon.config, MODEL, 2, actor="op", reason="v2 now")
    governance.promote(daemon.store, daemon.config, MODEL, 3, actor="op", reason="v3 now")
    loop = runner(daemon, split=SPLIT.model_dump())
    [watch] = [r for r in loop.run(MODEL) if r.kind == "rollback_watch"]
    assert (watch.champion_version, watch.challenger_version) == (2, 3)
    assert daemon.store.get_version(MODEL, 2).stage == "shadow"
    assert loop.comparisons.get_test(test.id).status == "open"
