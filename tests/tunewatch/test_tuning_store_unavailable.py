"""A tuning job that meets an unavailable store is queued again, not failed for good.

Its artefact directory full at registration (or its database down), a job ended
``failed`` with the server's path in its error, announced ``retune_failed``, after its
whole study had run: a passing condition of the store lost the retune, which the model's
cool-down then held back. The worker now leaves the job running and exits with the
error, as a worker that dies does: the launcher reaps it and queues the job again after
a wait (failed only after ``MAX_CRASHES``), and its next worker resumes the study."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.tunewatch.conftest import MODEL
from tests.tunewatch.test_tuning import _config, _daemon, _runner
from tests.tunewatch.tmpfs import filled, mounted_tmpfs
from tunewatch._config import build_config
from tunewatch._errors import StoreUnavailableError
from tunewatch._example import ExampleModel
from tunewatch._launcher import MAX_CRASHES


def test_a_job_meeting_a_full_artefact_directory_is_left_to_be_queued_again(
    trained: list[ExampleModel], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = _config(tmp_path)
    artefacts = build_config(raw, env={}).artefact_dir
    with mounted_tmpfs(artefacts, "size=16m") as root:
        d = _daemon(raw, trained)
        try:
            outcome = d.dispatcher.handle(MODEL, "manual", {})
            assert outcome.job_id is not None
            filler = filled(root) / "filler"
            caplog.set_level(logging.ERROR, logger="tunewatch._tuning")
            with pytest.raises(StoreUnavailableError):
                _runner(d).run(outcome.job_id)
            job = d.store.get_job(outcome.job_id)
            assert (job.status, job.worker) == ("running", "test"), job.error
            assert d.store.list_events(model=MODEL, type="retune_failed") == []
            assert any(
                "unavailable" in r.getMessage() and "queued again" in r.getMessage()
                for r in caplog.records
            ), caplog.text
            trials = job.progress["trials"]
            assert trials >= 4  # its study ran: what failing the job threw away

            # what the launcher does on the worker's exit; then the directory has room
            queued = d.store.requeue_crashed_job(job, error="exited", max_crashes=MAX_CRASHES)
            assert queued is not None and (queued.status, queued.crashes) == ("queued", 1)
            filler.unlink()
            done = _runner(d).run(outcome.job_id)
            assert done.status == "succeeded", done.error
            assert done.result is not None and done.result["version"] == 2
            assert done.progress["trials"] == trials  # resumed: the budget was spent
        finally:
            d.close()
