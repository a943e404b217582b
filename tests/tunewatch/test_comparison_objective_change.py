"""A change of the model's objective starts the comparison afresh. A test's sums are of
one objective's per-request losses: kept across a switch from log loss to accuracy, the
log-loss evidence was added to the accuracy differences and a challenger worse on
accuracy was promoted. A test records the objective it measures; one measuring another
is closed, and a successor reads only the requests received after the last one it
consumed. A test stored before the objective was recorded adopts the configured one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    copy_daemon,
    oracle,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
    write,
)
from tests.tunewatch.test_comparison_split import SPLIT
from tests.tunewatch.test_comparison_split_restart import _serve
from tests.tunewatch.test_comparison_watch import _promote_v2, _watch
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data
from tunewatch.comparison import ComparisonResult
from tunewatch.store._comparisons import ComparisonTestRow
from tunewatch.store._schema import comparison_consumed, comparison_tests

# Every request of these tests is received from here on, a minute per batch later.
START = datetime.now(UTC) - timedelta(minutes=30)


def _models(objective: str) -> list[dict[str, object]]:
    return [{"name": MODEL, "task": "binary", "objective": {"name": objective}}]


def _reopen(d: Daemon, objective: str) -> Daemon:
    """The operator configures another objective and restarts the daemon."""
    data_dir = d.config.data_dir
    d.close()
    config = build_config(
        {"data_dir": str(data_dir), "scheduler": {"enabled": False}, "models": _models(objective)},
        env={},
    )
    return Daemon(config, env={})


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    """The example models under log loss; a test that switches the objective reopens the
    data directory (:func:`_reopen`) and closes what it opened, this one closed again."""
    d = copy_daemon(template, tmp_path / "data", models=_models("log_loss"))
    yield d
    d.close()


def _calibration_against_decisions(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, v1's and v2's probabilities. v1: the Bayes-optimal side of 0.5 but squashed
    towards it (badly calibrated); v2: calibrated but noisy. v2 wins on log loss, v1 on
    accuracy."""
    x, y = example_data(n, seed=5)
    p = oracle(x)[:, 1].astype(np.float64)
    noise = np.random.default_rng(0).normal(0, 0.8, p.size)
    v1 = 0.5 + 0.02 * (p - 0.5)
    v2 = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + noise)))

    def probabilities(q: np.ndarray) -> np.ndarray:
        return np.column_stack([1 - q, q]).astype(np.float32)

    return y, probabilities(v1), probabilities(v2)


def _feed(d: Daemon, data: tuple[np.ndarray, ...], start: int, stop: int, minute: int) -> None:
    y, v1, v2 = data
    s = slice(start, stop)
    write(
        d.store,
        ids=range(start, stop),
        x=np.zeros((stop - start, 8)),
        y=y[s],
        answers={1: v1[s], 2: v2[s]},
        received_at=START + timedelta(minutes=minute),
    )


def _consumed(d: Daemon, test_id: int) -> set[str]:
    with d.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(comparison_consumed.c.request_id).where(
                comparison_consumed.c.test_id == test_id
            )
        ).all()
    return {r[0] for r in rows}


def _ids(start: int, stop: int) -> set[str]:
    return {f"r{i}" for i in range(start, stop)}


def _of_kind(results: list[ComparisonResult], kind: str) -> list[ComparisonResult]:
    return [r for r in results if r.kind == kind]


def test_a_switch_to_accuracy_does_not_promote_on_log_loss_evidence(daemon: Daemon) -> None:
    """490 requests under log loss (below the burn-in: nothing decided), then the operator
    switches to accuracy: one batch more promoted v2 (p = 0.0006) on the sum of log-loss
    and accuracy differences, although on those very requests v1 makes 124 errors and v2
    146. The log-loss test is closed; its successor counts the later requests only and
    finds v2 worse."""
    data = _calibration_against_decisions(2400)
    _feed(daemon, data, 0, 490, minute=0)
    [first] = _of_kind(runner(daemon).run(MODEL), "paired")
    assert (first.look is not None and first.look.n, first.decision) == (490, "continue")
    assert first.look.estimate is not None and first.look.estimate < 0  # v2 better: log loss

    d = _reopen(daemon, "accuracy")
    try:
        loop = runner(d)
        _feed(d, data, 490, 590, minute=1)
        closed, successor = _of_kind(loop.run(MODEL), "paired")
        assert (closed.test_id, closed.action) == (first.test_id, "closed")
        assert closed.detail[0].startswith("objective changed from log_loss to accuracy")
        assert successor.look is not None and successor.look.n == 100
        assert (successor.decision, successor.action) == ("continue", "none")

        for batch, start in enumerate(range(590, 2400, 200), start=2):
            _feed(d, data, start, start + 200, minute=batch)
            [result] = _of_kind(loop.run(MODEL), "paired")
            assert result.test_id == successor.test_id
            if result.decision != "continue":
                break
        assert result.decision == "challenger_worse", result
        champion = d.store.champion(MODEL)
        assert champion is not None and champion.version == 1
        assert d.store.list_events(model=MODEL, type="promoted") == []

        old, new = loop.comparisons.list_tests(MODEL, kind="paired")
        assert old.status == "closed" and old.outcome is not None
        assert old.outcome["reason"].startswith("objective changed from log_loss to accuracy")
        assert old.n == 490 and _consumed(d, old.id) == _ids(0, 490)
        assert new.promotion_id == old.id and new.state["objective"]["name"] == "accuracy"
        assert _consumed(d, new.id) <= _ids(490, 2400) and new.n == len(_consumed(d, new.id))
    finally:
        d.close()


def _strip_objective(d: Daemon, test: ComparisonTestRow) -> None:
    """The test as code before this change stored it: no objective in its state."""
    state = {k: v for k, v in test.state.items() if k != "objective"}
    with d.store.engine.begin() as conn:
        conn.execute(
            sa.update(comparison_tests).where(comparison_tests.c.id == test.id).values(state=state)
        )


def test_a_test_stored_without_its_objective_adopts_the_configured_one(daemon: Daemon) -> None:
    data = _calibration_against_decisions(600)
    _feed(daemon, data, 0, 300, minute=0)
    loop = runner(daemon)
    loop.run(MODEL)
    [test] = loop.comparisons.list_tests(MODEL, kind="paired")
    measured = test.state["objective"]
    assert measured["name"] == "log_loss" and measured["params"] == {}
    _strip_objective(daemon, test)
    assert "objective" not in loop.comparisons.get_test(test.id).state

    _feed(daemon, data, 300, 400, minute=1)
    [result] = _of_kind(loop.run(MODEL), "paired")
    assert result.test_id == test.id and result.look is not None and result.look.n == 400
    [carried] = loop.comparisons.list_tests(MODEL, kind="paired")
    assert carried.status == "open" and carried.state["objective"] == measured


def test_the_objective_survives_every_look(daemon: Daemon) -> None:
    data = _calibration_against_decisions(300)
    loop = runner(daemon)
    for minute, start in enumerate(range(0, 300, 100)):
        _feed(daemon, data, start, start + 100, minute=minute)
        loop.run(MODEL)
    [test] = loop.comparisons.list_tests(MODEL, kind="paired")
    assert test.looks == 3 and test.state["objective"]["name"] == "log_loss"


def test_a_switch_to_roc_auc_closes_the_paired_test_for_a_delong_successor(
    daemon: Daemon,
) -> None:
    data = _calibration_against_decisions(600)
    _feed(daemon, data, 0, 300, minute=0)
    [paired] = _of_kind(runner(daemon).run(MODEL), "paired")
    d = _reopen(daemon, "roc_auc")
    try:
        loop = runner(d)
        _feed(d, data, 300, 600, minute=1)
        loop.run(MODEL)
        [old] = loop.comparisons.list_tests(MODEL, kind="paired")
        assert old.id == paired.test_id and old.status == "closed" and old.outcome is not None
        assert old.outcome["reason"].startswith("objective changed from log_loss to roc_auc")
        [delong] = loop.comparisons.list_tests(MODEL, kind="delong")
        assert delong.status == "open" and delong.promotion_id == old.id
        assert delong.state["objective"]["name"] == "roc_auc"
        assert _consumed(d, delong.id) <= _ids(300, 600)
    finally:
        d.close()


# -- the rollback watch --------------------------------------------------------------------------


def test_an_objective_change_closes_the_watch_and_retires_the_kept_champion(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    _promote_v2(daemon, trained)
    first = _watch(runner(daemon))
    assert first is not None and first.action == "none"
    assert daemon.store.get_version(MODEL, 1).stage == "shadow"
    d = _reopen(daemon, "accuracy")
    try:
        loop = runner(d)
        watch = _watch(loop)
        assert watch is not None and (watch.test_id, watch.action) == (first.test_id, "closed")
        assert watch.detail[0].startswith("objective changed from log_loss to accuracy")
        assert d.store.get_version(MODEL, 1).stage == "retired"
        champion = d.store.champion(MODEL)
        assert champion is not None and champion.version == 2
        assert _watch(loop) is None  # the watch followed one promotion: it is over
    finally:
        d.close()


def test_a_switch_to_roc_auc_mid_watch_says_it_has_no_per_request_loss(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    _promote_v2(daemon, trained)
    _watch(runner(daemon))
    d = _reopen(daemon, "roc_auc")
    try:
        loop = runner(d)
        loop.run(MODEL)
        [watch] = loop.comparisons.list_tests(MODEL, kind="rollback_watch")
        assert watch.status == "closed" and watch.outcome is not None
        reason = watch.outcome["reason"]
        assert reason.startswith("objective changed from log_loss to roc_auc"), reason
        assert "no per-request loss" in reason and "switched off" not in reason
        assert d.store.get_version(MODEL, 1).stage == "retired"
    finally:
        d.close()


# -- the live split's test -----------------------------------------------------------------------


def test_an_objective_change_restarts_the_live_split_test_on_later_requests(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = traffic(trained, 1200, seed=7)
    split = SPLIT.model_copy(update={"start": START - timedelta(hours=1)}).model_dump()
    undecided = {"min_n": 3000, "planned_n": 20_000}
    _serve(daemon, t, SPLIT, range(0, 600), START)
    [first] = _of_kind(runner(daemon, split=split, **undecided).run(MODEL), "split")
    d = _reopen(daemon, "accuracy")
    try:
        loop = runner(d, split=split, **undecided)
        _serve(d, t, SPLIT, range(600, 1200), START + timedelta(minutes=1))
        [result] = _of_kind(loop.run(MODEL), "split")
        old, new = [x for x in loop.comparisons.list_tests(MODEL) if x.kind == "split"]
        assert old.id == first.test_id and old.status == "closed" and old.outcome is not None
        assert old.looks == 1 and _consumed(d, old.id) <= _ids(0, 600)
        assert old.outcome["reason"].startswith("objective changed from log_loss to accuracy")
        assert result.test_id == new.id and new.promotion_id == old.id
        assert new.state["objective"]["name"] == "accuracy" and new.looks == 1
        assert _consumed(d, new.id) and _consumed(d, new.id) <= _ids(600, 1200)
    finally:
        d.close()
