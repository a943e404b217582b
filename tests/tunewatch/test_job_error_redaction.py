"""A job a worker fails itself keeps no data-directory path in its ``error``: the error is
any caller's to read (``GET /v1/jobs/{id}``, a viewer's), and an artefact directory that
could not be written put its path there (``cannot write artefact … under /srv/tw/…``),
which the HTTP API's own answers send only to the daemon's log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.tunewatch.conftest import MODEL
from tests.tunewatch.one_trial_tuning import one_trial_daemon
from tunewatch._example import ExampleModel
from tunewatch._tuning import TuningJobRunner


def test_a_job_failed_on_its_artefact_directory_keeps_no_path_in_its_error(
    trained: list[ExampleModel], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = one_trial_daemon(tmp_path, trained)
    try:
        blocked = tmp_path / "data" / "blocked"
        blocked.write_text("a file where the artefact directory should be")
        d.artefacts.root = blocked  # every write under it fails: not a directory
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        runner = TuningJobRunner(
            store=d.store, registry=d.registry, artefacts=d.artefacts, config=d.config, worker="t"
        )
        with caplog.at_level(logging.ERROR, logger="tunewatch._tuning"):
            job = runner.run(outcome.job_id)
        assert job.status == "failed"
        assert job.error is not None
        assert "artefact" in job.error and "<data_dir>" in job.error
        assert str(tmp_path) not in job.error
        assert str(blocked) in caplog.text  # the daemon's log has it whole
    finally:
        d.close()
