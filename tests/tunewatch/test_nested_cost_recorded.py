"""A `cv: nested` job's outer studies are part of what it cost: the job result, its
progress, its version's details and its report recorded the main study's trials and
seconds only, about a third of what the job ran with two outer folds."""

from __future__ import annotations

from pathlib import Path

import pytest

from retune import StudyProgress, study_progress
from tests.tunewatch.test_tuning import MODEL, _config, _daemon, _runner
from tunewatch._example import ExampleModel
from tunewatch._report import build_report
from tunewatch._tuning_results import job_result


def _progress(storage: str, study: str) -> StudyProgress:
    progress = study_progress(storage, study)
    assert progress is not None, f"no study {study} in the Optuna storage"
    return progress


def test_nested_job_records_its_outer_studies_trials_and_seconds(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    raw = _config(tmp_path, cv="nested", cv_outer_folds=2, max_trials=3, include_reference=False)
    d = _daemon(raw, trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "succeeded", job.error
        assert job.result is not None and job.progress is not None
        storage = d.config.tuning_storage_url
        study = job.result["study"]
        names = [f"{study}-outer0", f"{study}-outer1"]
        outer = [_progress(storage, name) for name in names]
        main = _progress(storage, study)
        version = d.store.get_version(MODEL, job.result["version"])

        for recorded in (job.result["nested"], version.details["nested"]):
            assert recorded["studies"] == names
            assert recorded["n_trials"] == sum(p.n_trials for p in outer)
            # measured twice, by each study's run at its end and by the storage at its last
            # trial: they part by what ran after that trial, ~5 % on a loaded CI host
            assert recorded["cpu_s"] == pytest.approx(sum(p.cpu_s for p in outer), rel=0.5)
            assert recorded["wall_s"] == pytest.approx(sum(p.wall_s for p in outer), rel=0.5)
        # the main study's fields keep describing the main study alone
        assert job.result["n_trials"] == version.details["n_trials"] == main.n_trials
        assert job.result["study_cpu_s"] == pytest.approx(main.cpu_s, rel=0.5)
        # progress counted each outer study as it finished
        assert job.progress["outer_done"] == job.progress["outer_total"] == 2
        assert job.progress["nested"]["studies"] == names
        assert job.progress["nested"]["n_trials"] == job.result["nested"]["n_trials"]

        # a job whose worker registered its version and stopped is finished from it
        back = job_result(version)
        assert back["nested"] == job.result["nested"]
        assert back["objective_params"] == job.result["objective_params"]

        md = build_report(d.store, d.config, MODEL, version.version).markdown()
        n_outer = job.result["nested"]["n_trials"]
        assert f"- **trials**: {main.n_trials} (+ {n_outer} in 2 outer studies of nested CV" in md
    finally:
        d.close()


def test_a_job_without_nested_cv_records_no_outer_studies(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    d = _daemon(_config(tmp_path, max_trials=2, include_reference=False), trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "succeeded", job.error
        assert job.result is not None
        version = d.store.get_version(MODEL, job.result["version"])
        assert job.result["nested"] is None and version.details["nested"] is None
        md = build_report(d.store, d.config, MODEL, version.version).markdown()
        assert f"- **trials**: {job.result['n_trials']}\n" in md
    finally:
        d.close()
