"""The runs of a study: each :func:`~retune.run_study` call is one, and records itself in
a study attribute ``time_spent:<run>``.

A run writes its record when it starts — ``started_at`` (UTC epoch seconds), ``host``
and ``pid`` —, rewrites it after each trial with the time it spent so far
(``wall_s_so_far``, ``cpu_s_so_far`` and ``seen_at``, the end of that wall time), and
completes it when it stops, with ``ended_at``, ``wall_s`` and ``cpu_s``; every trial it
begins names it in the trial attribute ``run``. The records serve twice:

- a resumed study continues its time budget (:func:`time_spent`): the CPU seconds of all
  runs, and the wall seconds during which at least one run was working — a run that
  recorded no end (killed, or still working elsewhere) up to its last record;
- a trial left RUNNING by a killed worker is told from one a live worker is training
  without Optuna's heartbeats (a journal file, an RDB storage without
  ``heartbeat_interval``), and failed (:func:`fail_orphaned_trials`), so that it stops
  counting towards ``max_trials``.

Without heartbeats a run has stopped when it recorded its end, or when it ran on this
host (the same host name and PID namespace) and its process is gone (one whose PID
another process has taken since is taken as live). A run on another
host that recorded no end is taken as live — its trials count, as they must while it
works — until a run on its own host opens the study; workers on several hosts need an
RDB storage with ``heartbeat_interval``. A RUNNING trial that names no run (begun by
hand, or by a version before trials named their run) is failed when no other run is
live, and left alone while one is: it may be that run's trial in the instant before it
named its run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from typing import Any

from retune._budget import BudgetTracker
from retune._errors import StudyError
from retune._optuna import RUN_ATTR, StudyHandle
from retune._spent import SPENT_PREFIX, spent

logger = logging.getLogger(__name__)


def new_run_key() -> str:
    return f"{SPENT_PREFIX}{secrets.token_hex(8)}"


def register_run(handle: StudyHandle, key: str, *, started_at: float) -> dict[str, Any]:
    """Record that this run works on the study, before it begins a trial; returns the
    record, which :func:`record_run_progress` rewrites and :func:`record_run_end`
    completes."""
    record: dict[str, Any] = {"started_at": started_at, "host": this_host(), "pid": os.getpid()}
    handle.set_user_attr(key, record)
    return record


def record_run_progress(
    handle: StudyHandle, key: str, record: dict[str, Any], tracker: BudgetTracker
) -> None:
    """Rewrite this run's record (``record``, as :func:`register_run` returned it) with the
    time it spent so far, at each budget check (before the first trial and after each): a
    run killed before it records its end (the launcher's SIGKILL after its stop timeout,
    the OOM killer) leaves what it spent up to its last finished trial, which a
    resumption counts. Not an end: the run is still live (see :func:`_why_stopped`)."""
    wall_s, cpu_s = tracker.own_wall_s, tracker.own_cpu_s
    seen = {
        "wall_s_so_far": wall_s,
        "cpu_s_so_far": cpu_s,
        "seen_at": record["started_at"] + wall_s,
    }
    _write(handle, key, {**record, **seen}, wall_s=wall_s, cpu_s=cpu_s, what="so far")


def record_run_end(
    handle: StudyHandle, key: str, record: dict[str, Any], tracker: BudgetTracker
) -> None:
    """Complete this run's record with the time it spent (one attribute per run: workers
    stopping at once do not overwrite each other), so that a resumption continues the
    time budget. The interval ends ``wall_s`` after ``started_at``, measured by the
    monotonic clock."""
    wall_s, cpu_s = tracker.own_wall_s, tracker.own_cpu_s
    ended = {**record, "wall_s": wall_s, "cpu_s": cpu_s, "ended_at": record["started_at"] + wall_s}
    _write(handle, key, ended, wall_s=wall_s, cpu_s=cpu_s, what="at its end")


def _write(
    handle: StudyHandle,
    key: str,
    record: dict[str, Any],
    *,
    wall_s: float,
    cpu_s: float,
    what: str,
) -> None:
    """Write a run's record; one that cannot be written is logged, not raised: the run's
    trials go on (a resumption counts what the run recorded before)."""
    try:
        handle.set_user_attr(key, record)
    except StudyError as exc:
        logger.warning(
            "study %s: this run's %.1f s wall / %.1f s CPU %s not recorded (a resumption "
            "will not count them): %s",
            handle.name,
            wall_s,
            cpu_s,
            what,
            exc,
        )


def ended_runs(handle: StudyHandle) -> frozenset[str]:
    """The keys of the study's runs that recorded their end: read as a run begins, those
    that ended before it (see :func:`time_spent`)."""
    return frozenset(
        key
        for key, run in handle.user_attrs.items()
        if key.startswith(SPENT_PREFIX)
        and isinstance(run, dict)
        and ("ended_at" in run or "wall_s" in run)
    )


def time_spent(
    handle: StudyHandle,
    *,
    before: float,
    own: str | None = None,
    ended_before: frozenset[str] = frozenset(),
) -> dict[str, float]:
    """The wall and CPU seconds the study's runs but ``own`` (this run's key) recorded:
    when they stopped, or, for a run that recorded no end, at its last budget check
    (:func:`record_run_progress`).

    CPU seconds add up. Wall seconds are those of the union of the runs' intervals:
    workers that ran at the same time spent the same seconds. An interval is cut at
    ``before``, this run's start, from where its own clock counts — but for the runs in
    ``ended_before`` (:func:`ended_runs` as this run began), which cannot overlap it:
    each interval is on its own host's clock, and one that ran on a host whose clock was
    ahead of this one's, or before this host's clock stepped back, lay past ``before``
    and was cut to nothing (a resumed job got its whole wall-time budget again). A run
    recorded without its interval (before runs recorded it) adds its wall seconds as they are.
    A run that recorded no end — killed, or still working on another worker — adds what
    it last recorded: a killed run's time up to its last finished trial, and a live
    one's wall seconds up to this run's start and CPU seconds as of its last budget
    check (:func:`~retune.run_study` reads this again at each of its own checks, so
    workers working at once count each other's CPU seconds as they go on); one that
    recorded nothing since it began adds nothing.
    """
    return spent(handle.user_attrs, before=before, own=own, ended_before=ended_before)


def fail_orphaned_trials(handle: StudyHandle, *, own: str) -> None:
    """Fail the RUNNING trials no live run is training (see the module), each with an
    ``orphaned`` attribute saying why. For storages without heartbeats."""
    running = [t for t in handle.trials() if t.state == "RUNNING"]
    if not running:
        return
    # read after the trials: a run records itself before it begins a trial, so every
    # trial seen above has its run's record here
    runs = {k: v for k, v in handle.user_attrs.items() if k.startswith(SPENT_PREFIX)}
    here = this_host()
    stopped = {key: _why_stopped(record, here) for key, record in runs.items() if key != own}
    live = [key for key, why in stopped.items() if why is None]
    reasons: dict[int, str] = {}
    for trial in running:
        run = trial.user_attrs.get(RUN_ATTR)
        if run is None:
            if not live:
                reasons[trial.number] = "left running, naming no run, while no run was live"
        elif run not in runs:
            reasons[trial.number] = f"left running by run {run}, which left no record"
        elif (why := stopped.get(run)) is not None:
            reasons[trial.number] = f"left running by run {run}: {why}"
    if not reasons:
        return
    failed = handle.fail_running_trials(reasons)
    if failed:
        logger.warning(
            "study %s: failed %d trials no live worker is training (%s), so they no longer "
            "count towards max_trials",
            handle.name,
            len(failed),
            "; ".join(f"trial {n}: {reasons[n]}" for n in failed),
        )


def known_stopped(record: Any) -> bool:
    """Whether the process of ``record`` (a run's record, or any mapping with its
    ``host`` and ``pid``) is known to have stopped; ``False`` for no record at all."""
    return isinstance(record, dict) and _why_stopped(record, this_host()) is not None


def _why_stopped(record: Any, here: str) -> str | None:
    """Why the run of ``record`` is known to have stopped, or ``None`` if it may be live."""
    if not isinstance(record, dict):
        return "its record is unreadable"
    if "ended_at" in record or "wall_s" in record:
        return "it recorded its end"
    pid = record.get("pid")
    if record.get("host") == here and isinstance(pid, int) and _process_gone(pid):
        return f"its process {pid} on this host is gone"
    return None


def this_host() -> str:
    """This process's host as its PIDs mean it: the host name, with the PID namespace
    where the system shows it (containers sharing a host name do not share PIDs)."""
    host = socket.gethostname()
    with contextlib.suppress(OSError):
        return f"{host}/pidns:{os.stat('/proc/self/ns/pid').st_ino}"
    return host


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs here (a zombie, killed and not yet reaped, is
    gone); ``False`` where that cannot be told."""
    if os.name != "posix" or pid <= 0:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: another user's process
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False
