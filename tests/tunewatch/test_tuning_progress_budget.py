"""A running re-tuning job's time budget in its progress: the API's job and the CLI's
progress bar (issue #5: "progress — trials done, best so far, budget left — is visible
through the API, metrics and a CLI progress bar").

Both showed trials out of ``max_trials`` only: a job its ``cpu_time_s`` stopped at 13 of
50 trials read "13/50" until it ended, and the wall and CPU seconds it spent appeared
only in a succeeded job's result (``study_wall_s``, ``study_cpu_s``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from retune._optuna import open_study
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._tuning_progress import ProgressReporter, budget_note
from tunewatch.store import Store

STUDY = "m-job1"
BUDGET = {  # as the worker holding a job writes its spec (dataclasses.asdict(Budget))
    "max_trials": 50,
    "wall_time_s": 900.0,
    "cpu_time_s": 40.0,
    "patience": None,
    "min_relative_improvement": 0.0,
    "pruner": "none",
}


def _study(tmp_path: Path) -> str:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    open_study(
        storage=storage, study_name=STUDY, seed=0, plan=None, pruner="none", heartbeat_interval=None
    ).close()
    return storage


def _running(store: Store, spec: dict[str, object]) -> int:
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec=spec)
    store.claim_job(job.id, "test:1")
    return job.id


def test_a_job_s_progress_names_the_time_budget_it_runs_under(store: Store, tmp_path: Path) -> None:
    storage = _study(tmp_path)
    job_id = _running(store, {"budget": BUDGET})
    seen: list[dict[str, object]] = []

    ProgressReporter(store, job_id, storage, STUDY, 50, seen.append)._report()

    progress = store.get_job(job_id).progress
    assert (progress["wall_time_s"], progress["cpu_time_s"]) == (900.0, 40.0)
    assert (seen[-1]["wall_time_s"], seen[-1]["cpu_time_s"]) == (900.0, 40.0)


def test_a_job_s_progress_shows_the_seconds_its_study_s_runs_recorded(
    store: Store, tmp_path: Path
) -> None:
    """Spent while it runs, not only in a succeeded job's result: a job its CPU budget
    stopped at 13 of 50 trials read "13/50" until it ended."""
    storage = _study(tmp_path)
    handle = open_study(
        storage=storage, study_name=STUDY, seed=0, plan=None, pruner="none", heartbeat_interval=None
    )
    try:  # a run still working, as it recorded itself after its last trial
        record = {"started_at": 1000.0, "seen_at": 1120.5, "wall_s_so_far": 120.5}
        handle.set_user_attr("time_spent:a", {**record, "cpu_s_so_far": 38.25})
    finally:
        handle.close()
    job_id = _running(store, {"budget": BUDGET})
    seen: list[dict[str, object]] = []

    ProgressReporter(store, job_id, storage, STUDY, 50, seen.append)._report()

    progress = store.get_job(job_id).progress
    assert (progress["wall_s"], progress["cpu_s"]) == (120.5, 38.25)
    assert budget_note(seen[-1]) == "  wall 120/900 s  cpu 38/40 s"


def test_a_job_without_a_time_budget_reports_none(store: Store, tmp_path: Path) -> None:
    storage = _study(tmp_path)
    job_id = _running(store, {"budget": {**BUDGET, "wall_time_s": None, "cpu_time_s": None}})

    ProgressReporter(store, job_id, storage, STUDY, 50, None)._report()

    progress = store.get_job(job_id).progress
    assert (progress["wall_time_s"], progress["cpu_time_s"]) == (None, None)


@pytest.mark.parametrize(
    ("progress", "note"),
    [
        pytest.param(
            {"wall_s": 120.4, "cpu_s": 38.2, "wall_time_s": 900.0, "cpu_time_s": 40.0},
            "  wall 120/900 s  cpu 38/40 s",
            id="both-budgets",
        ),
        pytest.param(
            {"wall_s": 120.4, "cpu_s": 38.2, "wall_time_s": None, "cpu_time_s": 40.0},
            "  wall 120 s  cpu 38/40 s",
            id="cpu-budget-only",
        ),
        pytest.param({"wall_s": 0.4, "cpu_s": 0.2}, "  wall 0 s  cpu 0 s", id="no-budget-recorded"),
        pytest.param(
            {"wall_s": 2.1, "wall_time_s": 0.5}, "  wall 2/0.5 s", id="sub-second-budget-not-0"
        ),
        pytest.param({"wall_time_s": 900.0, "cpu_time_s": 40.0}, "", id="nothing-spent-yet"),
    ],
)
def test_the_progress_bar_shows_the_seconds_spent_against_each_time_budget(
    progress: dict[str, object], note: str
) -> None:
    assert budget_note(progress) == note


@pytest.fixture
def served(trained: list[ExampleModel], tmp_path: Path) -> Iterator[tuple[Daemon, str, str]]:
    daemon, tokens = make_daemon(tmp_path, trained, extra={"tuning": {"workers": 0}})
    try:
        with BackgroundServer(daemon.app) as server:
            yield daemon, server.url, tokens["viewer"]
    finally:
        daemon.close()


def test_the_api_shows_a_running_job_s_seconds_spent_and_its_budget(
    served: tuple[Daemon, str, str],
) -> None:
    daemon, url, token = served
    job, _ = daemon.store.create_job(model=MODEL, kind="retune", trigger={}, spec={})
    daemon.store.claim_job(job.id, "test:1")
    daemon.store.update_job_progress(
        job.id,
        {"trials": 13, "max_trials": 50, "wall_s": 120.5, "cpu_s": 38.25}
        | {"wall_time_s": 900.0, "cpu_time_s": 40.0},
    )

    answer = httpx.get(
        f"{url}/v1/jobs/{job.id}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )

    assert answer.status_code == 200, answer.text
    progress = answer.json()["progress"]
    assert (progress["wall_s"], progress["cpu_s"]) == (120.5, 38.25)
    assert (progress["wall_time_s"], progress["cpu_time_s"]) == (900.0, 40.0)
