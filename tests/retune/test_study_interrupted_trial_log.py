"""Ctrl-C in the middle of a trial stops the study, not as a crash: Optuna logged the
``KeyboardInterrupt`` it caught with a traceback through scikit-learn, then ``Trial N
failed with value None.``, all of which the CLI printed on stderr before its own
``tunewatch: interrupted``. The trial is one line, naming it and the interrupt."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import optuna
import pytest
from retune_data import binary, small_space

from monitor.objectives import make_objective
from retune import Budget, run_study
from retune._optuna._logs import OPTIMIZE_LOGGER, install_fail_trial_filter
from retune.cv import StratifiedKFoldCV


@contextlib.contextmanager
def _capturing_optuna(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """``caplog`` sees Optuna's records: its library logger does not propagate (pytest
    may attach its handlers to it already)."""
    optuna_logger = logging.getLogger("optuna")
    added = caplog.handler not in optuna_logger.handlers
    if added:
        optuna_logger.addHandler(caplog.handler)
    try:
        yield
    finally:
        if added:
            optuna_logger.removeHandler(caplog.handler)


def _about_trial(caplog: pytest.LogCaptureFixture, number: int) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == OPTIMIZE_LOGGER and r.getMessage().startswith(f"Trial {number} ")
    ]


def test_an_interrupted_trial_is_logged_on_one_line_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def interrupted(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0.0, 1.0)
        raise KeyboardInterrupt

    install_fail_trial_filter()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    with (
        _capturing_optuna(caplog),
        caplog.at_level(logging.DEBUG),
        pytest.raises(KeyboardInterrupt),
    ):
        study.optimize(interrupted, n_trials=1)
    [record] = _about_trial(caplog, 0)
    assert record.exc_info is None and record.exc_text is None
    message = record.getMessage()
    assert message.startswith("Trial 0 failed with parameters: {'x': ")
    assert message.endswith("because of the following error: KeyboardInterrupt().")
    assert "Traceback" not in caplog.text
    assert "failed with value None" not in caplog.text


@dataclass(frozen=True)
class _CtrlCInFold(StratifiedKFoldCV):
    """Ctrl-C as a trial of study ``s`` on the journal file ``storage`` trains its first
    fold (the study's checks before any trial split the window as usual)."""

    storage: str = ""

    def split(self, x: Any, y: Any, *, groups: Any = None, seed: int) -> Iterator[Any]:
        for fold in super().split(x, y, groups=groups, seed=seed):
            if self._in_a_trial():
                raise KeyboardInterrupt
            yield fold

    def _in_a_trial(self) -> bool:
        from retune._optuna import close_storage, make_storage

        backend = make_storage(self.storage, heartbeat_interval=None)
        try:
            trials = optuna.load_study(study_name="s", storage=backend).get_trials()
        except KeyError:  # the study is not created yet
            return False
        finally:
            close_storage(backend)
        return any(t.state == optuna.trial.TrialState.RUNNING for t in trials)


def test_ctrl_c_in_a_study_s_trial_stops_it_with_one_line_about_the_trial(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    x, y = binary(seed=4, n=90)
    storage = str(tmp_path / "journal.log")
    with (
        _capturing_optuna(caplog),
        caplog.at_level(logging.DEBUG),
        pytest.raises(KeyboardInterrupt),
    ):
        run_study(
            storage=storage,
            study_name="s",
            space=small_space(),
            x=x,
            y=y,
            objective=make_objective("log_loss"),
            cv=_CtrlCInFold(n_splits=2, storage=storage),
            budget=Budget(max_trials=3),
            plan=None,
            seed=0,
        )
    [record] = _about_trial(caplog, 0)  # the trial it interrupted, once
    assert "KeyboardInterrupt()" in record.getMessage()
    records = [r for r in caplog.records if r.name.startswith(("optuna", "retune"))]
    assert [r for r in records if r.exc_info or r.exc_text] == []
    assert "Traceback" not in caplog.text
    assert "Traceback" not in capfd.readouterr().err
