"""A study whose runs keep failing on their storage while the storage still reads (a
SQLite ``optuna.db`` the worker may read but not write) is given up after the outage
limit, counted from the first failure of the runs that made no progress: each run failed
at once, the progress read after it succeeded, and the limit's clock restarted at every
resume, so the worker retried about once a second for ever."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest

from retune import StudyStorageUnavailableError, TuningResult
from tunewatch import _tuning_outage
from tunewatch._tuning_outage import resumed_after_outages

STUDY = "credit-job1"


def test_runs_that_fail_at_once_while_the_storage_reads_are_given_up_after_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name=STUDY, storage=url)
    monkeypatch.setattr(_tuning_outage, "STORAGE_RETRY_S", 0.01)
    monkeypatch.setattr(_tuning_outage, "STORAGE_RETRY_MAX_S", 0.01)
    runs = []

    def run(*, study_name: str) -> TuningResult:  # as a read-only storage fails each write
        runs.append(study_name)
        if len(runs) > 200:
            pytest.fail("the runs were resumed for ever")
        raise StudyStorageUnavailableError(
            "beginning the study failed: attempt to write a readonly database",
            study_name=study_name,
        )

    with pytest.raises(StudyStorageUnavailableError, match="readonly"):
        resumed_after_outages(
            run,
            what="job 1",
            storage_url=url,
            limit_s=0.3,
            interrupted=lambda: False,
            stop=threading.Event(),
            study_name=STUDY,
        )
    assert len(runs) >= 2  # resumed once the storage read, then given up
