"""How a run that stops waits for the trials other workers are still training.

With ``heartbeat_interval`` set, :func:`~retune.run_study` chooses the study's winner
among all its trials: a run that stops first waits, with :func:`await_running_trials`,
until each trial another worker is training has ended or gone stale. On a budget with
``wall_time_s`` the wait ends that long after the run stopped, or :func:`stale_grace_s`
after it if that is longer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from retune._optuna import STALE_AFTER_HEARTBEATS, StudyHandle

# The study's logger, not this module's: a run's wait was always logged (and filtered)
# under it.
logger = logging.getLogger("retune._study")


def await_running_trials(
    handle: StudyHandle,
    *,
    heartbeat_interval: int,
    interrupted: Callable[[], bool] | None,
    deadline: float | None,
) -> bool:
    """Wait, failing stale trials as it polls, until no trial another worker is training
    runs; returns whether it waited for any that then ended (the study changed since the
    caller read it) or was interrupted meanwhile. Called by a run that stops, with no
    trial of its own running (between trials).

    The run that stopped first chose the winner from the trials ended by then, while a
    trial of another worker, begun before the budget was spent, was still running: a job
    registered a best of 0.5345 while that trial, ending under a second later, reached
    0.5328. A RUNNING trial is waited for until it ends, or until its heartbeats stop and
    it is failed as stale (``STALE_AFTER_HEARTBEATS`` intervals, the worker killed: a
    run resumed at once waits that long for its predecessor's trial). One with no
    heartbeat at all (begun by hand, or its worker killed before its first, whatever it
    names) is failed as stale once it has had none that long since the run first saw it
    (:meth:`~retune._optuna.StudyHandle.fail_stale_trials`). The wait ends early when
    ``interrupted()`` is true, and at ``deadline`` (monotonic seconds): a trial that
    heartbeats but never ends is then left out of the result, with a warning.
    :func:`~retune.run_study` sets it for a budget with ``wall_time_s``, that long after
    the run stopped (the budget again; at least the grace a killed worker's trial takes
    to go stale, so that a run resumed at once does not stop on its place of
    ``max_trials``); without, the run waits as long as a trial of its own would have run.
    (A heartbeat-less trial naming its run was waited for however long; one naming none
    was left out of the wait but kept its place of ``max_trials``, and a run with no
    ``wall_time_s`` waited for it again at each stop, for good.)
    """
    poll_s = _poll_s(heartbeat_interval)
    waited = False
    while True:
        now = time.monotonic()
        live = [t.number for t in handle.trials() if t.state == "RUNNING"]
        if not live:
            return waited
        if interrupted is not None and interrupted():
            return True
        if deadline is not None and now >= deadline:
            logger.warning(
                "study %s: trials %s still running elsewhere when this run's wait for them "
                "ended (wall_time_s after it stopped, or the heartbeats' grace if longer); "
                "its result leaves them out",
                handle.name,
                live,
            )
            return False
        if not waited:
            logger.info(
                "study %s: stopping with trials %s running elsewhere; waiting for each to end "
                "or go stale (heartbeat_interval %d s), %s",
                handle.name,
                live,
                heartbeat_interval,
                "however long" if deadline is None else f"at most {deadline - now:.1f} s",
            )
        waited = True
        time.sleep(poll_s)
        handle.fail_stale_trials()


def _poll_s(heartbeat_interval: int) -> float:
    """How often :func:`await_running_trials` reads the trials."""
    return min(1.0, heartbeat_interval / 4)


def stale_grace_s(heartbeat_interval: int) -> float:
    """How long a RUNNING trial whose worker died takes, at most, to be failed as stale by
    a run polling every :func:`_poll_s`: one interval past Optuna's grace (a SQLite clock
    counts whole seconds; one with no heartbeat, that grace after the run first saw it)."""
    return (STALE_AFTER_HEARTBEATS + 1) * heartbeat_interval + _poll_s(heartbeat_interval)
