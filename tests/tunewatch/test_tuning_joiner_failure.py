"""A worker joining a job another worker is tuning, and failing: the job stays that
worker's (its quota slot, its outcome, its requeue if it dies)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from tests.tunewatch.test_tuning import MODEL, _config, _daemon
from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import TuningError
from tunewatch._example import ExampleModel
from tunewatch._tuning import TuningJobRunner


def _runner(d: Daemon, worker: str, *, stop: threading.Event | None = None) -> TuningJobRunner:
    return TuningJobRunner(
        store=d.store,
        registry=d.registry,
        artefacts=d.artefacts,
        config=d.config,
        worker=worker,
        stop=stop,
    )


def _begun_by(d: Daemon, job_id: int, worker: str) -> None:
    """``worker`` begins the job's study (its CV pinned with it) and is tuning it still:
    stopped before its first trial, then holding the job again, as a worker in its study
    holds it."""
    stop = threading.Event()
    stop.set()
    assert _runner(d, worker, stop=stop).run(job_id).status == "queued"
    d.store.claim_job(job_id, worker)


def test_a_worker_refused_by_the_study_it_joins_leaves_the_job_to_the_worker_tuning_it(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Worker B joined job 1, which worker A tuned (max_concurrent_jobs 1), with another
    CV (3 folds, the study's 2) and was refused, as it should: but its refusal failed the
    job while A tuned. `retune_failed` was announced, the quota admitted a second job,
    and A, killed, left the job failed instead of queued again."""
    raw = _config(tmp_path)
    raw["tuning"] = {"workers": 0, "max_concurrent_jobs": 1}
    d = _daemon(raw, trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        job_id = outcome.job_id
        _begun_by(d, job_id, "host:1")
        owner = d.store.get_job(job_id)
        other = yaml.safe_load(yaml.safe_dump(raw))
        other["models"][0]["tuning"]["cv_folds"] = 3
        joiner = TuningJobRunner(
            store=d.store,
            registry=d.registry,
            artefacts=d.artefacts,
            config=build_config(other, env={}),
            worker="host:2",
        )
        with pytest.raises(TuningError) as info:
            joiner.run(job_id)
        assert "host:2" in info.value.message and "host:1" in info.value.message
        assert "StudyError" in info.value.message
        job = d.store.get_job(job_id)
        assert (job.status, job.worker, job.error) == ("running", "host:1", None)
        assert d.store.list_events(model=MODEL, type="retune_failed") == []
        second = d.dispatcher.handle(MODEL, "manual", {"reason": "second"})
        assert (second.status, second.job_id) == ("duplicate", job_id)  # still active
        d.store.ensure_model(name="other", task="binary", feature_names=["x"])
        third = d.dispatcher.handle("other", "manual", {"reason": "third"})
        assert third.cause == "quota"  # the quota's one slot is still the job's
        # A dies: its job is queued again for the next worker to resume, as any
        again = d.store.requeue_crashed_job(owner, error="host:1 killed", max_crashes=3)
        assert again is not None and (again.status, again.crashes) == ("queued", 1)
    finally:
        d.close()


def test_the_cli_worker_refused_by_the_study_it_joins_exits_non_zero(
    trained: list[ExampleModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refused worker says so and exits non-zero; the job goes on under its worker."""
    raw = _config(tmp_path)
    d = _daemon(raw, trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        _begun_by(d, outcome.job_id, "host:1")
        other = d.config.model_dump(mode="json")
        other["models"][0]["tuning"]["cv_folds"] = 3
        config = tmp_path / "other.yaml"
        config.write_text(yaml.safe_dump(other))
        capsys.readouterr()
        assert main(["--config", str(config), "worker", "--job", str(outcome.job_id)]) != 0
        err = capsys.readouterr().err
        assert "host:1" in err and "cv" in err.lower()
        job = d.store.get_job(outcome.job_id)
        assert (job.status, job.worker) == ("running", "host:1")
        assert d.store.list_events(model=MODEL, type="retune_failed") == []
    finally:
        d.close()


def test_a_worker_resuming_a_queued_job_holds_it_and_its_refusal_fails_it(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """No worker holds a queued job: the one resuming it holds it, and its failure is
    the job's (announced), as before."""
    raw = _config(tmp_path)
    d = _daemon(raw, trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        job_id = outcome.job_id
        _begun_by(d, job_id, "host:1")
        assert d.store.requeue_job(job_id, "host:1")  # stopped: queued again
        other = yaml.safe_load(yaml.safe_dump(raw))
        other["models"][0]["tuning"]["cv_folds"] = 3
        runner = TuningJobRunner(
            store=d.store,
            registry=d.registry,
            artefacts=d.artefacts,
            config=build_config(other, env={}),
            worker="host:2",
        )
        failed = runner.run(job_id)
        assert failed.status == "failed" and "StudyError" in (failed.error or "")
        [event] = d.store.list_events(model=MODEL, type="retune_failed")
        assert event.payload["job"] == job_id
    finally:
        d.close()
