"""A running re-tuning job's progress on ``/metrics`` (issue #5: "progress — trials done,
best so far, budget left — is visible through the API, metrics and a CLI progress bar").

``/metrics`` held no series about trials, tuning or budget at all, and the wall and CPU
seconds a job spent appeared only in a succeeded job's result. The scheduler's leader
now exports each running job's progress from its row, under ``model`` and ``job`` (the
concurrent-job quota bounds them), and removes a job's series once it ended.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor import ServingMetrics
from tests.conftest import service_missing
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._tuning_metrics import TUNING_TASK, export_tuning
from tunewatch.store import Store

#: A job stopped by its CPU budget at 13 of 50 trials read "13/50" until it ended.
PROGRESS = {
    "phase": "tuning",
    "study": "m-job1",
    "trials": 14,  # one of them rejected for its serving cost: 13 trained
    "cost_rejected": 1,
    "complete": 12,
    "pruned": 1,
    "best_value": 0.512,
    "max_trials": 50,
    "wall_s": 120.5,
    "cpu_s": 38.25,
    "wall_time_s": 900.0,
    "cpu_time_s": 40.0,
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _tuning_samples(text: str) -> Samples:
    """The ``tunewatch_tuning_*`` samples of an exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("tunewatch_tuning_")
        for s in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def _running_job(store: Store, model: str, progress: dict[str, object]) -> int:
    job, _ = store.create_job(model=model, kind="retune", trigger={}, spec={})
    store.claim_job(job.id, "test:1")
    store.update_job_progress(job.id, progress)
    return job.id


@pytest.fixture
def leading() -> ServingMetrics:
    """A process's metrics while it leads the scheduler (no lease tracked: it leads)."""
    metrics = ServingMetrics()
    metrics.exports_evaluation = True
    return metrics


def test_a_running_job_s_trials_best_value_and_budget_are_exported(
    store: Store, leading: ServingMetrics
) -> None:
    job = str(_running_job(store, "m", PROGRESS))

    export_tuning(store, leading)

    assert _tuning_samples(leading.exposition().decode()) == {
        _key("tunewatch_tuning_trials", model="m", job_id=job): 13.0,
        _key("tunewatch_tuning_max_trials", model="m", job_id=job): 50.0,
        _key("tunewatch_tuning_best_value", model="m", job_id=job): 0.512,
        _key("tunewatch_tuning_spent_seconds", model="m", job_id=job, clock="wall"): 120.5,
        _key("tunewatch_tuning_spent_seconds", model="m", job_id=job, clock="cpu"): 38.25,
        _key("tunewatch_tuning_budget_seconds", model="m", job_id=job, clock="wall"): 900.0,
        _key("tunewatch_tuning_budget_seconds", model="m", job_id=job, clock="cpu"): 40.0,
    }


def test_a_job_s_series_are_removed_once_it_ends(store: Store, leading: ServingMetrics) -> None:
    first = _running_job(store, "m", PROGRESS)
    second = _running_job(store, "m", {**PROGRESS, "trials": 3, "cost_rejected": 0})
    export_tuning(store, leading)
    store.finish_job(first, status="failed", error="stopped")

    export_tuning(store, leading)

    samples = _tuning_samples(leading.exposition().decode())
    assert {dict(labels)["job_id"] for _, labels in samples} == {str(second)}
    assert samples[_key("tunewatch_tuning_trials", model="m", job_id=str(second))] == 3.0
    store.cancel_job(second, actor="test", reason="done with it")
    export_tuning(store, leading)
    assert _tuning_samples(leading.exposition().decode()) == {}


def test_a_job_without_a_time_budget_or_a_completed_trial_exports_neither(
    store: Store, leading: ServingMetrics
) -> None:
    """No limit is no 0 (a budget spent at once), and no trial completed is no best value;
    before its first report a job's trials are 0 of its ``max_trials``."""
    unlimited = {"phase": "tuning", "trials": 2, "cost_rejected": 0, "best_value": None}
    job = str(
        _running_job(store, "m", {**unlimited, "max_trials": 20, "wall_s": 3.0, "cpu_s": 2.0})
    )
    starting = str(_running_job(store, "m", {"phase": "tuning", "max_trials": 20}))

    export_tuning(store, leading)

    assert _tuning_samples(leading.exposition().decode()) == {
        _key("tunewatch_tuning_trials", model="m", job_id=job): 2.0,
        _key("tunewatch_tuning_max_trials", model="m", job_id=job): 20.0,
        _key("tunewatch_tuning_spent_seconds", model="m", job_id=job, clock="wall"): 3.0,
        _key("tunewatch_tuning_spent_seconds", model="m", job_id=job, clock="cpu"): 2.0,
        _key("tunewatch_tuning_trials", model="m", job_id=starting): 0.0,
        _key("tunewatch_tuning_max_trials", model="m", job_id=starting): 20.0,
    }


def test_a_process_that_does_not_lead_exports_no_job_s_progress(store: Store) -> None:
    """As the evaluation figures: a follower's would be read beside the leader's."""
    _running_job(store, "m", PROGRESS)
    metrics = ServingMetrics()
    metrics.exports_evaluation = True
    export_tuning(store, metrics)
    metrics.exports_evaluation = False

    export_tuning(store, metrics)

    assert _tuning_samples(metrics.exposition().decode()) == {}


@pytest.fixture
def leader(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    daemon, _ = make_daemon(tmp_path, trained, extra={"tuning": {"workers": 0}})
    try:
        yield daemon
    finally:
        daemon.close()


def test_the_leader_exports_a_running_job_s_progress_on_metrics_until_it_ends(
    leader: Daemon,
) -> None:
    with BackgroundServer(leader.app) as server:
        assert TUNING_TASK in leader.scheduler.scheduled()
        job = str(_running_job(leader.store, MODEL, PROGRESS))
        task = leader.scheduler._aps.get_job(TUNING_TASK)

        task.func()  # the leader's tick
        running = _tuning_samples(httpx.get(f"{server.url}/metrics", timeout=30).text)
        leader.store.cancel_job(int(job), actor="test", reason="done with it")
        task.func()
        ended = _tuning_samples(httpx.get(f"{server.url}/metrics", timeout=30).text)

    assert running[_key("tunewatch_tuning_trials", model=MODEL, job_id=job)] == 13.0
    assert running[
        _key("tunewatch_tuning_spent_seconds", model=MODEL, job_id=job, clock="cpu")
    ] == (38.25)
    assert ended == {}


@pytest.mark.prometheus
def test_the_exposition_with_a_running_job_passes_promtool(
    store: Store, leading: ServingMetrics
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        service_missing("promtool (Debian package prometheus) is not installed")
    _running_job(store, "m", PROGRESS)
    export_tuning(store, leading)
    text = leading.exposition().decode()
    assert "tunewatch_tuning_budget_seconds{" in text
    result = subprocess.run(
        [str(promtool), "check", "metrics"], input=text, text=True, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
