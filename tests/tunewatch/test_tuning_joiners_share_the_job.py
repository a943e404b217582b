"""Workers joining one job's study (``tunewatch worker --job ID`` on any machine) share the
job, whatever their own config says: its budget (``spec.budget``, recorded by the worker
that began it), its study in one Optuna storage, and the study's heartbeat interval.

A joiner tuned to its own config's ``max_trials`` (12 trained for a job of 6, its final
progress "11 of 12"); one whose ``tuning.storage_url`` was another (left at its default)
said it joined, then tuned a second study of the same name in its own storage (twice the
budget trained, each overwriting the other's progress) and exited 0; and workers whose
``tuning.heartbeat_s`` differed failed each other's live trials as stale."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import optuna
import pytest
import yaml

from retune import study_progress
from retune._optuna import close_storage, make_storage
from tests.tunewatch.test_tuning import MODEL, _config, _daemon
from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._tuning import TuningJobRunner
from tunewatch._tuning_results import study_name

pytestmark = pytest.mark.postgres

HOLDER = "host:1"


def _runner(d: Daemon, raw: dict[str, object], worker: str, **kwargs: object) -> TuningJobRunner:
    return TuningJobRunner(
        store=d.store,
        registry=d.registry,
        artefacts=d.artefacts,
        config=build_config(raw, env={}),
        worker=worker,
        **kwargs,  # type: ignore[arg-type]
    )


def _raw(tmp_path: Path, storage: str, **tuning: object) -> dict[str, object]:
    raw = _config(tmp_path, **tuning)
    raw["tuning"] = {"workers": 0, "max_concurrent_jobs": 10, "storage_url": storage}
    return raw


def _copy(raw: dict[str, object]) -> dict[str, object]:
    copied: dict[str, object] = yaml.safe_load(yaml.safe_dump(raw))
    return copied


def _begun_by_holder(d: Daemon, raw: dict[str, object]) -> int:
    """A job whose study worker :data:`HOLDER` began (its budget and study recorded, stopped
    before its first trial) and is tuning still: holding the job again, as a worker in
    its study holds it."""
    outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    stop = threading.Event()
    stop.set()
    assert _runner(d, raw, HOLDER, stop=stop).run(outcome.job_id).status == "queued"
    d.store.claim_job(outcome.job_id, HOLDER)
    return outcome.job_id


def _trained(storage: str, study: str) -> int:
    progress = study_progress(storage, study)
    assert progress is not None
    return progress.n_trials


def test_a_joiner_tunes_to_the_job_s_max_trials_not_its_own_config_s(
    trained: list[ExampleModel], tmp_path: Path, pg_url: str
) -> None:
    raw = _raw(tmp_path, pg_url, max_trials=3)
    d = _daemon(raw, trained)
    try:
        job_id = _begun_by_holder(d, raw)
        assert d.store.get_job(job_id).spec["budget"]["max_trials"] == 3
        joiner_raw = _copy(raw)
        joiner_raw["models"][0]["tuning"]["max_trials"] = 6  # type: ignore[index]
        job = _runner(d, joiner_raw, "host:2").run(job_id)
        study = study_name(job)
        assert _trained(pg_url, study) == 3
        assert job.spec["budget"]["max_trials"] == 3
        assert job.progress["max_trials"] == 3
    finally:
        d.close()


def test_a_worker_resuming_a_job_keeps_the_budget_it_began_with(
    trained: list[ExampleModel], tmp_path: Path, pg_url: str
) -> None:
    """The job's budget is the one recorded when its study began: a worker resuming it
    (queued again) with a config of another ``max_trials`` neither grows nor shrinks it."""
    raw = _raw(tmp_path, pg_url, max_trials=3)
    d = _daemon(raw, trained)
    try:
        job_id = _begun_by_holder(d, raw)
        assert d.store.requeue_job(job_id, HOLDER)
        resumed_raw = _copy(raw)
        resumed_raw["models"][0]["tuning"]["max_trials"] = 5  # type: ignore[index]
        job = _runner(d, resumed_raw, "host:2").run(job_id)
        assert job.status == "succeeded", job.error
        assert _trained(pg_url, study_name(job)) == 3
        assert (job.spec["budget"]["max_trials"], job.progress["max_trials"]) == (3, 3)
    finally:
        d.close()


def test_a_joiner_on_another_storage_is_refused_and_creates_no_study(
    trained: list[ExampleModel],
    tmp_path: Path,
    pg_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The joiner's `tuning.storage_url` left at its default (`<data_dir>/optuna.db`, on a
    machine of its own): refused, naming both storages (passwords hidden), exit non-zero,
    the job left to the worker tuning it."""
    storage = pg_url.replace("postgres@", "postgres:s3cret@")  # trust: the password is unused
    raw = _raw(tmp_path, storage, max_trials=3)
    d = _daemon(raw, trained)
    try:
        job_id = _begun_by_holder(d, raw)
        other = _copy(raw)
        other["tuning"] = {"workers": 0, "max_concurrent_jobs": 10}  # storage_url: default
        other["data_dir"] = str(tmp_path / "other_host")
        other["store"] = {"url": d.config.store_url}  # the one store, shared
        config = tmp_path / "other.yaml"
        config.write_text(yaml.safe_dump(other))
        capsys.readouterr()
        assert main(["--config", str(config), "worker", "--job", str(job_id)]) != 0
        err = capsys.readouterr().err
        assert "s3cret" not in err
        assert "postgres:***@127.0.0.1" in err  # the holder's storage
        local = tmp_path / "other_host" / "optuna.db"
        assert str(local) in err  # the joiner's own
        assert HOLDER in err and "storage_url" in err
        assert len(err.strip().splitlines()) == 1, err
        job = d.store.get_job(job_id)
        assert (job.status, job.worker, job.error) == ("running", HOLDER, None)
        assert d.store.list_events(model=MODEL, type="retune_failed") == []
        assert not local.exists()  # no study, not even a storage, made on its side
    finally:
        d.close()


def test_a_joiner_whose_storage_holds_another_study_of_the_name_is_refused(
    trained: list[ExampleModel], tmp_path: Path, pg_url: str
) -> None:
    """A study of the job's name that the worker holding the job did not begin (another
    storage, where one was created by hand or by an earlier tunewatch): not joined."""
    raw = _raw(tmp_path, pg_url, max_trials=3)
    d = _daemon(raw, trained)
    try:
        job_id = _begun_by_holder(d, raw)
        study = study_name(d.store.get_job(job_id))
        other_storage = f"sqlite:///{tmp_path}/other.db"
        backend = make_storage(other_storage, heartbeat_interval=None)
        try:
            optuna.create_study(storage=backend, study_name=study, direction="minimize")
        finally:
            close_storage(backend)
        joiner = _runner(d, _raw(tmp_path, other_storage, max_trials=3), "host:2")
        with pytest.raises(Exception, match="another study") as info:
            joiner.run(job_id)
        assert "storage_url" in str(info.value)
        assert _trained(other_storage, study) == 0
        job = d.store.get_job(job_id)
        assert (job.status, job.worker) == ("running", HOLDER)
    finally:
        d.close()


def test_a_joiner_adopts_the_heartbeat_interval_its_study_began_with(
    trained: list[ExampleModel],
    tmp_path: Path,
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its own (2 s, a grace of 4 s) failed the trials of the worker that began the study
    with 20 s as stale while that worker trained them (see
    tests/retune/test_study_heartbeat_pinned.py); it heartbeats and judges staleness at
    the study's."""
    raw = _raw(tmp_path, pg_url, max_trials=2)
    raw["tuning"]["heartbeat_s"] = 20  # type: ignore[index]
    d = _daemon(raw, trained)
    try:
        job_id = _begun_by_holder(d, raw)
        joiner_raw = _copy(raw)
        joiner_raw["tuning"]["heartbeat_s"] = 2  # type: ignore[index]
        caplog.set_level(logging.INFO)
        job = _runner(d, joiner_raw, "host:2").run(job_id)
        assert _trained(pg_url, study_name(job)) == 2
        said = [r.getMessage() for r in caplog.records if "heartbeat interval" in r.getMessage()]
        assert any("20 s" in line and "2 s" in line for line in said), said
    finally:
        d.close()


def test_a_joiner_stopped_while_waiting_for_the_study_to_begin_leaves_the_job_alone(
    trained: list[ExampleModel], tmp_path: Path, pg_url: str
) -> None:
    """A joiner arriving before the worker holding the job has begun its study (it is
    reading its window) waits for it, creating nothing; stopped meanwhile, it leaves."""
    raw = _raw(tmp_path, pg_url, max_trials=3)
    d = _daemon(raw, trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        d.store.claim_job(outcome.job_id, HOLDER)  # its study not begun yet
        stop = threading.Event()
        stop.set()
        job = _runner(d, raw, "host:2", stop=stop).run(outcome.job_id)
        assert (job.status, job.worker) == ("running", HOLDER)
        assert study_progress(pg_url, study_name(job)) is None
    finally:
        d.close()
