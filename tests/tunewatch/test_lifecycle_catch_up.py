"""A new leader (after a failover or a restart) keeps the phase of the evaluations and
comparisons the store recorded, and runs the overdue ones soon, spread, rather than
counting every interval again from when it took over."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.tunewatch.conftest import MODEL
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._scheduler import CATCH_UP_S, PerModelJob, Scheduler
from tunewatch.store import Store


class WallClock:
    """The leader's wall clock, set by the test."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def leader(trained: list[ExampleModel], tmp_path: Path) -> Iterator[tuple[Daemon, WallClock]]:
    """A daemon evaluating and comparing its model every 60 s, not leading yet."""
    clock = WallClock()
    model = {
        "name": MODEL,
        "task": "binary",
        "evaluation": {"interval_s": 60},
        "comparison": {"interval_s": 60},
    }
    raw = {"data_dir": str(tmp_path), "tuning": {"workers": 0}, "models": [model]}
    daemon = Daemon(build_config(raw, env={}), env={}, now=clock)
    for example, stage in zip(trained, ("champion", "shadow"), strict=True):
        daemon.registry.register(
            MODEL,
            example.onnx,
            example.metadata,
            actor="test",
            stage=stage,
            reference=example.reference,
        )  # type: ignore[arg-type]
    try:
        yield daemon, clock
    finally:
        daemon.scheduler.store.release_lease("scheduler", daemon.scheduler.holder)
        daemon.close()


def _next_run_in(daemon: Daemon, job_id: str, clock: WallClock) -> float:
    """Seconds from the leader's now to the job's first run, once it took the lease."""
    job = daemon.scheduler._aps.get_job(job_id)
    assert job is not None, f"{job_id} not scheduled"
    return float((job.next_run_time - clock.at).total_seconds())


@pytest.mark.parametrize(("ago", "next_in"), [(50.0, 10.0), (10.0, 50.0)])
def test_a_new_leader_evaluates_an_interval_after_the_last_evaluation(
    leader: tuple[Daemon, WallClock], ago: float, next_in: float
) -> None:
    """The job was added counting from the takeover (and the k-th of n models at
    (k + 1) / n of the interval): leaders changing more often than the interval meant no
    evaluation, no drift or decay event at all."""
    daemon, clock = leader
    [*_, last] = daemon.evaluator.evaluate(MODEL)
    clock.at = last.created_at + timedelta(seconds=ago)
    daemon.scheduler._lead()
    assert daemon.scheduler.leader
    assert _next_run_in(daemon, f"evaluate:{MODEL}", clock) == pytest.approx(next_in, abs=1.0)


@pytest.mark.parametrize(("ago", "next_in"), [(50.0, 10.0), (10.0, 50.0)])
def test_a_new_leader_compares_an_interval_after_the_last_comparison(
    leader: tuple[Daemon, WallClock], ago: float, next_in: float
) -> None:
    """The rollback watch and every challenger's test waited a whole interval again after
    each takeover."""
    daemon, clock = leader
    daemon.comparisons.run(MODEL)  # opens the shadow challenger's test: the record
    [test] = daemon.comparisons.comparisons.list_tests(MODEL)
    clock.at = test.updated_at + timedelta(seconds=ago)
    daemon.scheduler._lead()
    assert _next_run_in(daemon, f"compare:{MODEL}", clock) == pytest.approx(next_in, abs=1.0)


def test_an_overdue_evaluation_runs_right_after_the_takeover(
    leader: tuple[Daemon, WallClock],
) -> None:
    daemon, clock = leader
    [*_, last] = daemon.evaluator.evaluate(MODEL)
    clock.at = last.created_at + timedelta(hours=5)  # no process led meanwhile
    daemon.scheduler._lead()
    assert _next_run_in(daemon, f"evaluate:{MODEL}", clock) == 0.0


def test_a_model_never_evaluated_is_spread_over_the_interval_from_the_takeover(
    leader: tuple[Daemon, WallClock],
) -> None:
    daemon, clock = leader
    daemon.scheduler._lead()
    assert _next_run_in(daemon, f"evaluate:{MODEL}", clock) == 60.0  # one model: 1 / 1


def test_overdue_runs_of_one_kind_start_spread_over_the_catch_up_span(tmp_path: Path) -> None:
    """Twelve models' overdue evaluations all at the instant of the takeover filled the
    shared pool at once; a job with threads of its own (queueing a retune) runs at once."""
    config = build_config({"data_dir": str(tmp_path)}, env={})
    store = Store.open(config.store_url)
    names = [f"m{i:02d}" for i in range(12)]
    for name in names:
        store.ensure_model(name=name, task="binary", feature_names=["x"])
    now = datetime(2025, 1, 1, tzinfo=UTC)
    long_ago = now - timedelta(hours=5)
    scheduler = Scheduler(
        store=store,
        config=config,
        jobs=[
            PerModelJob("evaluate", lambda cfg: 3600.0, print, last_run=lambda m: long_ago),
            PerModelJob(
                "retune_schedule", lambda cfg: 3600.0, print, last_run=lambda m: long_ago, threads=1
            ),
        ],
        now=lambda: now,
    )
    try:
        scheduler._lead()
        firsts = sorted(scheduler._aps.get_job(f"evaluate:{n}").next_run_time for n in names)
        step = timedelta(seconds=CATCH_UP_S / 12)
        assert firsts == [now + k * step for k in range(12)]
        for name in names:
            assert scheduler._aps.get_job(f"retune_schedule:{name}").next_run_time == now
    finally:
        store.release_lease("scheduler", scheduler.holder)
        store.close()
