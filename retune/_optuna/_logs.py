"""Optuna's log of a trial the objective failed on purpose (:class:`FailTrial`), or one
Ctrl-C interrupted (``KeyboardInterrupt``), on one line.

:meth:`StudyHandle.optimize <retune._optuna._handles.StudyHandle.optimize>` lets Optuna
catch :class:`FailTrial`: a trial vetoed for its fold spread, given up beyond
``max_trials``, or failed by a CV error. Optuna logs every caught failure as a WARNING
with the exception's traceback, then a second line ``Trial N failed with value None.``;
on a terminal those broke the CLI's progress bar, once per such trial, and read as a
crash. A ``FailTrial`` is tunewatch's own control flow, and its message is the reason
(an unexpected error in a trial is logged with its traceback by :mod:`retune._study`
before it becomes one). A ``KeyboardInterrupt`` is the operator's Ctrl-C, which Optuna
catches, logs so, and raises again: the CLI ends with ``tunewatch: interrupted``, and a
traceback through scikit-learn before it read as a crash too.
:class:`FailTrialLogFilter` keeps Optuna's first line (the trial, its parameters and that
reason) without the traceback, and drops the second.
"""

from __future__ import annotations

import logging
import re
import threading

from retune._optuna._storage import FailTrial

#: The logger Optuna's ``_optimize`` logs a trial's failure on.
OPTIMIZE_LOGGER = "optuna.study._optimize"

_FAILED = re.compile(r"Trial (\d+) failed with parameters")

#: What a trial ends with that is no crash, logged without its traceback.
_ON_PURPOSE = (FailTrial, KeyboardInterrupt)


class FailTrialLogFilter(logging.Filter):
    """Strips the traceback from Optuna's record of a caught :class:`FailTrial` or
    ``KeyboardInterrupt``, and drops the ``Trial N failed with value None.`` record
    Optuna logs next (in the same thread, as the very next record of its logger)."""

    def __init__(self) -> None:
        super().__init__()
        self._pending = threading.local()  # the second line to drop, per thread

    def filter(self, record: logging.LogRecord) -> bool:
        follow_up = getattr(self._pending, "follow_up", None)
        self._pending.follow_up = None
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, _ON_PURPOSE):
            record.exc_info = None
            record.exc_text = None
            found = _FAILED.match(record.getMessage())
            if found is not None:
                self._pending.follow_up = f"Trial {found.group(1)} failed with value None."
            return True
        return follow_up is None or record.getMessage() != follow_up


def install_fail_trial_filter() -> None:
    """Add :class:`FailTrialLogFilter` to Optuna's ``_optimize`` logger, once."""
    target = logging.getLogger(OPTIMIZE_LOGGER)
    if not any(isinstance(f, FailTrialLogFilter) for f in target.filters):
        target.addFilter(FailTrialLogFilter())
