"""The tuning page's trial cache: finished studies are read once; an unreadable one is
not read again on every view, and is tried again after a while."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
import pytest

from tunewatch.dashboard._data import TrialCache


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_unreadable_study_is_tried_again_only_after_the_retry_period(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    clock = _Clock()
    cache = TrialCache(clock=clock, retry_after_s=300.0)
    caplog.set_level(logging.WARNING, logger="tunewatch.dashboard._data")

    assert cache.trials(storage, "gone") is None
    assert cache.trials(storage, "gone") is None  # a second view: not read again
    clock.now += 299.0
    assert cache.trials(storage, "gone") is None
    warned = [r for r in caplog.records if "cannot read the trials" in r.getMessage()]
    assert len(warned) == 1

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="gone", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
    clock.now += 2.0  # the retry period is over: read again, and now found
    found = cache.trials(storage, "gone")
    assert found is not None and [t["number"] for t in found] == [0, 1, 2]
    assert found[-1]["best"] == min(t.value for t in study.trials if t.value is not None)


@pytest.mark.postgres
def test_a_missing_study_is_logged_without_the_storage_password(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A finished study missing from the tuning storage (it changed since) is logged at
    each view's first read, with the storage's password as ``***``: it was logged in clear
    (docs/configuration.md shows no password in any message)."""
    storage = pg_url.replace("://postgres@", "://postgres:pw-secret@", 1)
    assert "pw-secret" in storage  # trust auth ignores it
    caplog.set_level(logging.INFO, logger="tunewatch.dashboard._data")

    found = TrialCache().trials_of(storage, ["gone", "also-gone"])

    assert found == {"gone": None, "also-gone": None}
    assert "does not exist" in caplog.text  # both the batch read and each study's
    assert "pw-secret" not in caplog.text
    assert "postgres:***@127.0.0.1" in caplog.text
