"""A version's `warm_start_mode` (the report's "Warm start off" or "Cold start") is the
mode its job's plan was built with, not the config of the worker that finished the job:
a job begun with `none` and finished by a worker configured `combined` was reported as
a cold start with nothing to learn from, and the reverse as warm start off."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.tunewatch.conftest import MODEL
from tests.tunewatch.test_report_warm_start import _plan_text
from tests.tunewatch.test_tuning import _config, _daemon
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._tuning import TuningJobRunner


def _runner(
    d: Daemon, tmp_path: Path, mode: str, stop: threading.Event | None = None
) -> TuningJobRunner:
    """A worker of ``d``'s store and tuning storage configured ``tuning.warm_start: mode``."""
    return TuningJobRunner(
        store=d.store,
        registry=d.registry,
        artefacts=d.artefacts,
        config=build_config(_config(tmp_path, warm_start=mode, max_trials=2), env={}),
        worker=f"{mode}-worker",
        stop=stop,
    )


def _begun_by_one_finished_by_another(d: Daemon, tmp_path: Path, begun: str, finished: str) -> int:
    """A job whose study a worker configured ``begun`` began (its plan stored, stopped before
    its first trial), then a worker configured ``finished`` resumed and finished; the
    version it registered."""
    outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    stop = threading.Event()
    stop.set()
    assert _runner(d, tmp_path, begun, stop).run(outcome.job_id).status == "queued"
    job = _runner(d, tmp_path, finished).run(outcome.job_id)
    assert job.status == "succeeded", job.error
    assert job.result is not None
    return int(job.result["version"])


def _history(d: Daemon, tmp_path: Path) -> None:
    """A succeeded job whose study a later one can learn from."""
    outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "history"})
    assert outcome.job_id is not None
    assert _runner(d, tmp_path, "combined").run(outcome.job_id).status == "succeeded"


def test_a_job_begun_with_warm_start_off_is_reported_off_when_an_on_worker_finishes_it(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    d = _daemon(_config(tmp_path, max_trials=2), trained)
    try:
        _history(d, tmp_path)
        version = _begun_by_one_finished_by_another(d, tmp_path, "none", "combined")
        details = d.store.get_version(MODEL, version).details
        assert details["warm_start_mode"] == "none"
        assert details["warm_start_plan"]["history_studies"] == []
        text = _plan_text(d, version)
        assert "Warm start off (tuning.warm_start: none)." in text, text
        assert "Cold start" not in text, text
    finally:
        d.close()


def test_a_job_begun_with_warm_start_on_keeps_its_mode_when_an_off_worker_finishes_it(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    d = _daemon(_config(tmp_path, max_trials=2), trained)
    try:
        _history(d, tmp_path)
        version = _begun_by_one_finished_by_another(d, tmp_path, "box", "none")
        details = d.store.get_version(MODEL, version).details
        assert details["warm_start_plan"]["history_studies"]  # it learned from job 1
        assert details["warm_start_mode"] == "box"
    finally:
        d.close()


def test_a_cold_start_finished_by_an_off_worker_is_not_reported_as_warm_start_off(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Begun with warm start on and nothing to learn from: the plan learned nothing, and
    the worker finishing the job had it off."""
    d = _daemon(_config(tmp_path, max_trials=2), trained)
    try:
        version = _begun_by_one_finished_by_another(d, tmp_path, "combined", "none")
        text = _plan_text(d, version)
        assert "Warm start off" not in text, text
        assert "Cold start" in text, text
        assert d.store.get_version(MODEL, version).details["warm_start_mode"] != "none"
    finally:
        d.close()
