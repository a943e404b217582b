"""Stopping this host's hung workers: one still running once its job ended (SIGTERM, then
SIGKILL), and one that stopped heartbeating (SIGKILL); each is reaped, its slot of the
launcher's ``workers`` free. Work of :class:`tunewatch._launcher.JobLauncher`, done on
its state."""

from __future__ import annotations

import logging
import subprocess
from typing import TYPE_CHECKING

from tunewatch._errors import StoreError
from tunewatch._launcher_worker import stderr_tail
from tunewatch.store import JobRow

if TYPE_CHECKING:
    from tunewatch._launcher import JobLauncher

# the launcher's records, under its name: operators' log filters and tests select on it
logger = logging.getLogger("tunewatch._launcher")


def stop_lingering(launcher: JobLauncher) -> None:
    """Stop this host's workers still running once their jobs ended (succeeded, failed
    or cancelled: another worker that joined the study finished the job while this one
    hung in a trial or in I/O). Such a worker is not stale (only running jobs are) and
    never exits: left alone it held a slot of ``workers`` for good, and with one slot
    no queued job started again. One is left ``stop_timeout_s`` from when the launcher
    first sees its job ended (it may be finishing: registering the study's version,
    reporting), then sent SIGTERM (it ends after its running trial), and once
    ``stop_timeout_s`` more have passed, killed and reaped, its slot free. A failure
    to read the jobs (the store down) is logged once while it lasts and retried next
    tick; workers are started meanwhile."""
    with launcher._lock:
        procs = list(launcher._procs.items())
    for job_id in (launcher._ended_at.keys() | launcher._terminated_at.keys()) - dict(procs).keys():
        launcher._ended_at.pop(job_id, None)  # its worker exited, or was killed
        launcher._terminated_at.pop(job_id, None)
    try:
        jobs = [(launcher.store.get_job(job_id), proc) for job_id, proc in procs]
    except StoreError as exc:
        launcher._lingering_outage.failed(exc)
        return
    launcher._lingering_outage.succeeded()
    now = launcher.clock()
    for job, proc in jobs:
        if job.status in ("queued", "running"):
            launcher._ended_at.pop(job.id, None)
            launcher._terminated_at.pop(job.id, None)
            continue
        ended_at = launcher._ended_at.setdefault(job.id, now)
        if now - ended_at < launcher.stop_timeout_s:
            continue
        terminated_at = launcher._terminated_at.get(job.id)
        if terminated_at is None:
            launcher._terminated_at[job.id] = now
            proc.terminate()
            logger.warning(
                "job=%d model=%s: its worker (pid %d) was still running %.0f s after the "
                "job %s; sent SIGTERM",
                job.id,
                job.model,
                proc.pid,
                now - ended_at,
                job.status,
            )
        elif now - terminated_at >= launcher.stop_timeout_s:
            _kill_lingering(launcher, job, now - ended_at)


def kill_silent(launcher: JobLauncher, job: JobRow) -> None:
    """Kill and reap this host's worker of ``job``, just queued again (or failed) as
    stale: no worker of the job heartbeated for ``stale_after_s``, so it is hung (or
    stopped, SIGSTOP: hence SIGKILL, which a stopped process does not wait to be
    continued for). Left running it held its job, never started again, and a slot of
    the quota, for good. Its crash is the one the requeue counted: it is not reaped as
    a worker that died (:func:`tunewatch._launcher_reap.reap`)."""
    _kill(launcher, job, f"stopped heartbeating for {launcher.stale_after_s:.0f} s")


def _kill_lingering(launcher: JobLauncher, job: JobRow, ended_for_s: float) -> None:
    """Kill and reap this host's worker of ``job``, which ended ``ended_for_s`` ago;
    its worker did not exit at SIGTERM (:func:`stop_lingering`)."""
    _kill(
        launcher,
        job,
        f"was still running {ended_for_s:.0f} s after the job {job.status} and "
        f"{launcher.stop_timeout_s:.0f} s after SIGTERM",
    )


def _take(launcher: JobLauncher, job_id: int) -> tuple[subprocess.Popen[bytes], str] | None:
    """Take this host's worker of ``job_id`` off the launcher's list (its slot free),
    with its stderr's end; None when it has none (not this host's, reaped already)."""
    with launcher._lock:
        proc = launcher._procs.pop(job_id, None)
        stderr = launcher._stderr.pop(job_id, None)
        launcher._crashes_at_start.pop(job_id, None)
    launcher._ended_at.pop(job_id, None)
    launcher._terminated_at.pop(job_id, None)
    if proc is None:
        if stderr is not None:
            stderr.close()
        return None
    launcher._failed_starts.pop(job_id, None)  # it had claimed the job
    launcher._start_errors.pop(job_id, None)
    try:
        tail = stderr_tail(stderr)
    except OSError:
        logger.exception("could not read the stderr of the worker of job %d", job_id)
        tail = ""
    finally:
        if stderr is not None:
            stderr.close()
    return proc, tail


def _kill(launcher: JobLauncher, job: JobRow, why: str) -> None:
    """SIGKILL this host's worker of ``job``, which ``why`` says is hung, and reap it
    (its slot free), logging the end of its stderr; nothing if it has none."""
    taken = _take(launcher, job.id)
    if taken is None:  # not this host's, or reaped already
        return
    proc, tail = taken
    proc.kill()
    try:  # a process in uninterruptible sleep dies when its I/O returns
        proc.wait(launcher.stop_timeout_s)
    except subprocess.TimeoutExpired:  # reaped by `subprocess` after it is dropped
        logger.error(
            "job=%d model=%s: its worker (pid %d) %s and was sent SIGKILL, but had not "
            "exited after %.0f s; left to exit",
            job.id,
            job.model,
            proc.pid,
            why,
            launcher.stop_timeout_s,
        )
        return
    logger.warning(
        "job=%d model=%s: its worker (pid %d) %s and was killed (SIGKILL); the job is %s; the "
        "worker's stderr ends:\n%s",
        job.id,
        job.model,
        proc.pid,
        why,
        job.status,
        tail or "(nothing)",
    )
