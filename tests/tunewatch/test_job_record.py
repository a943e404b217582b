"""What a tuning job records (DESIGN §3: trigger, budget, warm-start plan, trials, best
set, cost), in the job row that ``GET /v1/jobs/{id}`` and ``tunewatch jobs`` show.

A succeeded job's progress stayed at ``phase: exporting``; each progress write replaced
the whole object, so the ``rows`` and ``dataset_version`` written as tuning began were
gone within a second; the job named no budget beyond ``max_trials``, no best
hyperparameters and no cost, and CPU seconds were recorded nowhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.test_tuning import _config, _daemon, _runner
from tunewatch._example import ExampleModel
from tunewatch.store import Store

MODEL = "credit"


@pytest.fixture
def store(store_with_model_a: Store) -> Store:
    return store_with_model_a


def test_succeeded_job_records_budget_best_set_cost(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    raw = _config(tmp_path, max_trials=3, cpu_time_s=600, patience=5)
    d = _daemon(raw, trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "weekly"})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "succeeded", job.error
        assert job.result is not None
        tj = d.config.model_or_default(MODEL, "binary").tuning
        assert job.spec["budget"] == {
            "max_trials": 3,
            "wall_time_s": 120.0,
            "cpu_time_s": 600.0,
            "patience": 5,
            "min_relative_improvement": tj.min_relative_improvement,
            "pruner": tj.pruner,
        }
        version = d.store.get_version(MODEL, job.result["version"])
        assert job.result["best_params"] == version.hyperparameters
        # the worker's own process, claim to finish; the study's, over all its runs
        for key in ("wall_s", "cpu_s", "study_wall_s", "study_cpu_s"):
            assert isinstance(job.result[key], float) and job.result[key] > 0, key
        assert job.result["study_wall_s"] <= job.result["wall_s"]
        assert version.details["cpu_s"] == job.result["study_cpu_s"]
        assert job.progress["phase"] == "done"
    finally:
        d.close()


def test_progress_keeps_rows_and_dataset_version_to_the_end(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    d = _daemon(_config(tmp_path, max_trials=3), trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "weekly"})
        job_id = outcome.job_id
        assert job_id is not None
        stored: list[dict[str, Any]] = []  # the job row's progress at each report

        def report(_: dict[str, Any]) -> None:
            stored.append(d.store.get_job(job_id).progress)

        job = _runner(d).run(job_id, on_progress=report)
        assert job.status == "succeeded", job.error
        assert job.result is not None
        assert stored  # the reporter ran at least once (its last report, at the study's end)
        for progress in [*stored, job.progress]:
            assert progress["dataset_version"] == job.result["dataset_version"]
            assert progress["rows"] > 0
        assert job.progress["phase"] == "done"
        assert job.progress["trials"] == job.result["n_trials"]
    finally:
        d.close()


def test_progress_updates_merge_into_the_stored_progress(store: Store) -> None:
    job, _ = store.create_job(model="a", kind="retune", trigger={}, spec={"champion_version": 1})
    store.claim_job(job.id, "w1")
    store.update_job_progress(
        job.id, {"phase": "tuning", "rows": 400, "dataset_version": "dv"}, spec={"budget": {}}
    )
    store.update_job_progress(job.id, {"phase": "tuning", "trials": 2})
    store.update_job_progress(job.id, {"phase": "exporting", "trials": 3})
    job = store.get_job(job.id)
    assert job.progress == {"phase": "exporting", "rows": 400, "dataset_version": "dv", "trials": 3}
    assert (job.spec["champion_version"], job.spec["budget"]) == (1, {})
    assert job.spec["study"]  # the study recorded when it was queued


@pytest.mark.parametrize(("status", "phase"), [("succeeded", "done"), ("failed", "failed")])
def test_a_finished_job_s_progress_says_how_it_ended(store: Store, status: str, phase: str) -> None:
    job, _ = store.create_job(model="a", kind="retune", trigger={}, spec={})
    store.claim_job(job.id, "w1")
    store.update_job_progress(job.id, {"phase": "exporting", "rows": 400})
    done = store.finish_job(job.id, status=status, result={})  # type: ignore[arg-type]
    assert done.progress == {"phase": phase, "rows": 400}


def test_a_job_failed_after_its_workers_died_says_so_in_its_progress(store: Store) -> None:
    job, _ = store.create_job(model="a", kind="retune", trigger={}, spec={})
    running = store.claim_job(job.id, "w1")
    store.update_job_progress(job.id, {"phase": "tuning", "trials": 1})
    failed = store.requeue_crashed_job(running, error="killed", max_crashes=1)
    assert failed is not None and failed.status == "failed"
    assert failed.progress == {"phase": "failed", "trials": 1}
