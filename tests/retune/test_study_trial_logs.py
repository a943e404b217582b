"""A trial tunewatch fails itself (vetoed for its fold spread, skipped beyond
``max_trials``, a CV error) is its own control flow, not a crash: Optuna logged each with
a full traceback of the ``FailTrial`` it caught, which the CLI showed on stderr through
its progress bar. Each is one line, naming the trial and its reason once."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from retune_data import binary, small_space

from monitor.objectives import make_objective
from retune import Budget, StudyError, run_study
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


def test_a_vetoed_trial_is_logged_on_one_line_without_a_traceback(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    x, y = binary(seed=4, n=90)
    with (
        _capturing_optuna(caplog),
        caplog.at_level(logging.DEBUG),
        pytest.raises(StudyError, match="no trial completed"),
    ):
        run_study(
            storage=str(tmp_path / "journal.log"),
            study_name="s",
            space=small_space(),
            x=x,
            y=y,
            objective=make_objective("log_loss"),
            cv=StratifiedKFoldCV(n_splits=2, max_fold_spread=1e-9),
            budget=Budget(max_trials=1),
            plan=None,
            seed=0,
        )
    records = [r for r in caplog.records if r.name.startswith(("optuna", "retune"))]
    assert records, "the vetoed trial was not logged at all"
    assert [r for r in records if r.exc_info or r.exc_text] == []
    assert "Traceback" not in caplog.text
    assert "Traceback" not in capfd.readouterr().err
    about_trial = [r.getMessage() for r in records if "Trial 0 " in r.getMessage()]
    assert len(about_trial) == 1, about_trial
    assert "> max_fold_spread 1e-09" in about_trial[0]
    assert caplog.text.count("> max_fold_spread 1e-09") == 1, caplog.text


def test_a_trial_failing_with_another_error_keeps_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only a ``FailTrial`` loses its traceback, and only its own second line is dropped."""
    from retune._optuna import FailTrial
    from retune._optuna._logs import OPTIMIZE_LOGGER, install_fail_trial_filter

    install_fail_trial_filter()
    install_fail_trial_filter()  # once: a second call adds no second filter
    logger = logging.getLogger(OPTIMIZE_LOGGER)
    assert sum(type(f).__name__ == "FailTrialLogFilter" for f in logger.filters) == 1
    with _capturing_optuna(caplog), caplog.at_level(logging.WARNING):
        for number, exc in ((7, ValueError("boom")), (8, FailTrial("skipped"))):
            try:
                raise exc
            except Exception as raised:
                logger.warning(
                    "Trial %d failed with parameters: {} because of the following error: %r.",
                    number,
                    raised,
                    exc_info=True,
                )
            logger.warning("Trial %d failed with value None.", number)
        logger.warning("Trial 8 failed with value None.")  # not right after: kept
    seen = [(r.getMessage()[:30], r.exc_info is not None) for r in caplog.records]
    assert seen == [
        ("Trial 7 failed with parameters", True),
        ("Trial 7 failed with value None", False),
        ("Trial 8 failed with parameters", False),
        ("Trial 8 failed with value None", False),
    ]
