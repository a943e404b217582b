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
