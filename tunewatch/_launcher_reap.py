"""What becomes of a job whose worker exited or died: a worker that failed before claiming
it is retried after a wait (the job failed at :data:`MAX_LAUNCHES` in a row); one that
died holding it has the job queued again (failed at :data:`MAX_CRASHES`), or finished as
succeeded when its study had registered its version. Work of
:class:`tunewatch._launcher.JobLauncher`, done on its state.

A worker is read first (:func:`exited_worker`: its exit status, its stderr's end), then
its job looked up and settled (:func:`reap`): a worker that exited while the store was
unavailable is read all the same, and its job settled at a later reap.

A job's error is any caller's to read (``GET /v1/jobs/{id}``, a viewer's; the
``retune_*`` events): of its worker's stderr it keeps the fixed reason of a store outage,
or the stderr's end without the database's endpoint and the data directory's paths
(:func:`_shown`); the daemon's log has the stderr's end whole."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunewatch._errors import ConflictError, StoreError
from tunewatch._launcher_worker import describe_exit, stderr_tail, store_outage, worker_id
from tunewatch._redaction import redacted
from tunewatch._tuning_results import job_result, registered_version
from tunewatch.store import JobRow

if TYPE_CHECKING:
    from tunewatch._launcher import JobLauncher

# the launcher's records, under its name: operators' log filters and tests select on it
logger = logging.getLogger("tunewatch._launcher")

#: A job whose workers died (killed, or presumed dead) is queued again for the next
#: worker to resume its study, until they have died this many times: then it is failed
#: (a window too large for the host would have the OOM killer end every worker).
MAX_CRASHES = 3
#: A queued job whose workers failed this many times in a row before claiming it (a bad
#: environment, a store they cannot reach) is failed with the last one's stderr. After
#: the n-th failure the next worker waits ``retry_after_s · 2ⁿ⁻¹`` (5, 10, 20, 40 s by
#: default), so an outage shorter than about 75 s fails no job.
MAX_LAUNCHES = 5
#: How much of a worker's stderr a failed job's error keeps (its end).
_STDERR_TAIL = 2000


@dataclass(frozen=True, kw_only=True, eq=False)
class ExitedWorker:
    """A worker process that exited, as read when it was reaped: its job, the process (its
    exit status collected), the end of its stderr (the file is closed), and its job's
    crash count when it was started (``None``: not known)."""

    job_id: int
    proc: subprocess.Popen[bytes]
    tail: str
    crashes_at_start: int | None


def exited_worker(
    launcher: JobLauncher, job_id: int, proc: subprocess.Popen[bytes], stderr: Any
) -> ExitedWorker:
    """Read the worker ``proc`` of ``job_id``, which exited: the end of its ``stderr``
    (closed here; a file that cannot be read is logged, and its end taken as empty) and
    its job's crash count at its start. Nothing here needs the store."""
    try:
        tail = stderr_tail(stderr)
    except OSError:
        logger.exception("could not read the stderr of the worker of job %d", job_id)
        tail = ""
    finally:
        if stderr is not None:
            stderr.close()
    return ExitedWorker(
        job_id=job_id,
        proc=proc,
        tail=tail,
        crashes_at_start=launcher._crashes_at_start.pop(job_id, None),
    )


def reap(launcher: JobLauncher, worker: ExitedWorker) -> None:
    """Count a worker that failed before claiming its job (the job is still queued);
    at :data:`MAX_LAUNCHES` in a row the job is failed with the worker's stderr. One
    that had claimed its job is reported by :func:`_reap_claimed`. Raises the store's
    error when it cannot be read or written: the launcher reaps ``worker`` again later."""
    job_id, proc, tail = worker.job_id, worker.proc, worker.tail
    crashes_at_start = worker.crashes_at_start
    job = launcher.store.get_job(job_id)
    requeued = job.status == "queued" and crashes_at_start not in (None, job.crashes)
    if proc.returncode == 0 or job.status != "queued" or requeued:
        launcher._failed_starts.pop(job_id, None)
        launcher._start_errors.pop(job_id, None)
        if not requeued:  # one queued again as stale waits as it was told
            launcher._not_before.pop(job_id, None)
        if job.status != "queued" or requeued:
            _reap_claimed(launcher, job, proc, tail)
        return
    failures = launcher._failed_starts[job_id] = launcher._failed_starts.get(job_id, 0) + 1
    last_line = tail.splitlines()[-1] if tail else "(no stderr)"
    launcher._start_errors[job_id] = f"{describe_exit(proc.returncode)}: {last_line}"
    logger.warning(
        "job=%d model=%s: its worker (pid %d) exited with %d before claiming it (%d of %d): %s",
        job.id,
        job.model,
        proc.pid,
        proc.returncode,
        failures,
        MAX_LAUNCHES,
        last_line,
    )
    if failures < MAX_LAUNCHES:
        launcher._not_before[job_id] = launcher.clock() + launcher.retry_after_s * 2 ** (
            failures - 1
        )
        return
    del launcher._failed_starts[job_id]
    launcher._start_errors.pop(job_id, None)
    launcher._not_before.pop(job_id, None)
    whose = "the last one's stderr"
    shown = _shown(launcher, tail, whose)
    error = (
        f"its worker exited with {proc.returncode} before claiming the job, "
        f"{MAX_LAUNCHES} times in a row; {shown}"
    )
    try:
        job = launcher.store.finish_job(job_id, status="failed", error=error, replacing=("queued",))
    except ConflictError as exc:  # claimed or finished meanwhile
        if exc.code != "job_finished":
            raise
        return
    _log_failed(job, _headline(error), (proc.pid, describe_exit(proc.returncode), tail))
    launcher.store.add_event(
        model=job.model, type="retune_failed", payload={"job": job.id, "error": error}
    )


def _reap_claimed(
    launcher: JobLauncher, job: JobRow, proc: subprocess.Popen[bytes], tail: str
) -> None:
    """A worker that had claimed ``job`` exited. Its stderr (its log) is gone with it:
    the job's end is logged here (``job=N model=M succeeded: version=…``, or ``… failed:
    …`` on one line at error and the stderr's end in a warning of its own; a cancelled
    job's at its cancellation). A job it still holds (``running`` under its name:
    killed, say by the OOM killer, or dead without finishing) is queued again now, its
    crash counted, with the exit status and the stderr's end (failed at
    :data:`MAX_CRASHES`), rather than once its heartbeats are missed. A worker that
    joined the study earlier may still be running it: it goes on, and the worker
    started for the queued job joins it (failing the job freed its quota slot while
    that worker tuned). A job another worker claimed since, or one that ended, is
    left alone."""
    worker = worker_id(proc.pid)
    status = describe_exit(proc.returncode)
    if job.status == "succeeded":
        result = job.result or {}
        logger.info(
            "job=%d model=%s succeeded: version=%s registered (study %s)",
            job.id,
            job.model,
            result.get("version"),
            result.get("study"),
        )
    if proc.returncode == 0:
        if job.status == "cancelled":  # the cancellation itself is logged where it is made
            logger.info(
                "job=%d model=%s: its worker (pid %d) exited with %s; the job was cancelled",
                job.id,
                job.model,
                proc.pid,
                status,
            )
        return
    if job.status == "failed" and job.worker == worker:  # failed by the worker, saying why
        _log_failed(job, _headline(job.error), (proc.pid, status, tail))
        return
    if job.status != "running" or job.worker != worker:
        logger.warning(
            "job=%d model=%s: its worker (pid %d) exited with %s; the job is %s%s; "
            "the worker's stderr ends:\n%s",
            job.id,
            job.model,
            proc.pid,
            status,
            job.status,
            f" (claimed by {job.worker})" if job.status == "running" else "",
            tail or "(nothing)",
        )
        return
    shown = _shown(launcher, tail, "its stderr")
    error = f"worker {worker!r} exited with {status} while running the job; {shown}"
    whole = _whole(shown, tail, "its stderr")
    if whole and job.crashes + 1 < MAX_CRASHES:
        # announced queued again with the job's error: the whole end is logged here (a
        # failed job's is logged with its failure)
        logger.warning(
            "job=%d model=%s: its worker (pid %d) exited with %s; the job's error leaves "
            "out what names the store%s",
            job.id,
            job.model,
            proc.pid,
            status,
            whole,
        )
    row = launcher.store.requeue_crashed_job(job, error=error, max_crashes=MAX_CRASHES)
    if row is None:  # claimed by another worker, heartbeated or finished, meanwhile
        logger.warning(
            "job=%d model=%s: its worker (pid %d) exited with %s; left as it is; "
            "the worker's stderr ends:\n%s",
            job.id,
            job.model,
            proc.pid,
            status,
            tail or "(nothing)",
        )
        return
    announce_crash(launcher, row, worker_end=(proc.pid, status, tail))


def _end(tail: str, whose: str) -> str:
    """A job's error's words for the end of its worker's stderr, ``tail``: ``whose``
    (``its stderr``) ends, then at most :data:`_STDERR_TAIL` characters."""
    return f"{whose} ends:\n{tail[-_STDERR_TAIL:] or '(nothing)'}"


def _shown(launcher: JobLauncher, tail: str, whose: str) -> str:
    """A job's error's words for its worker's stderr ``tail``: a store outage's fixed
    reason (:func:`~tunewatch._launcher_worker.store_outage`), or :func:`_end` of ``tail``
    :func:`~tunewatch._redaction.redacted` (the data directory is the one the
    daemon writes its workers' configuration in)."""
    outage = store_outage(tail)
    if outage is not None:
        return outage
    data_dir, url = launcher.config_path.parent, launcher.store.engine.url
    return _end(redacted(tail, data_dir=data_dir, store_url=url), whose)


def _headline(error: str | None) -> str:
    """A failed job's ``error`` on one line, for the daemon's log: its first line, without
    the words that introduce its worker's stderr (``; its stderr ends:``), whose end is
    logged in a record of its own (:func:`_log_failed`)."""
    first = (error or "").split("\n", 1)[0]
    head, sep, rest = first.rpartition("; ")
    if sep and rest.endswith(" ends:"):
        return head
    return first or "(no error recorded)"


def _log_failed(job: JobRow, reason: str, worker_end: tuple[int, str, str] | None) -> None:
    """Log that ``job`` failed: at error, on one line (``job=N model=M failed: reason``);
    then the end of its last worker's stderr at warning, ``worker_end`` (its pid, how it
    exited, its stderr's end), when known."""
    logger.error("job=%d model=%s failed: %s", job.id, job.model, reason)
    if worker_end is None:
        return
    pid, status, tail = worker_end
    logger.warning(
        "job=%d model=%s: its worker (pid %d) exited with %s; its stderr ends:\n%s",
        job.id,
        job.model,
        pid,
        status,
        tail or "(nothing)",
    )


def _whole(shown: str, tail: str, whose: str) -> str:
    """For the daemon's log, after a job's error that shows ``shown`` of a worker's stderr
    ``tail``: ``tail`` whole when ``shown`` left something out of it, else nothing."""
    if shown == _end(tail, whose):
        return ""
    return f"; {whose} ends:\n{tail or '(nothing)'}"


def announce_crash(
    launcher: JobLauncher, job: JobRow, *, worker_end: tuple[int, str, str] | None = None
) -> None:
    """Log and record a job whose worker died: finished as succeeded when its study
    had registered its version, else queued again (``retune_interrupted``, with how it
    died; its next worker waits ``retry_after_s``, doubling with each crash), or
    failed (``retune_failed``) once its workers died :data:`MAX_CRASHES` times, its
    worker's stderr's end (``worker_end``: its pid, how it exited, the end; ``None``
    for a stale worker's, logged when it was killed) logged apart (:func:`_log_failed`)."""
    if _registered(launcher, job):
        return
    if job.status == "queued":
        # the next worker after a wait, as after a failed start: memory pressure that
        # ended one worker may have passed
        launcher._not_before[job.id] = launcher.clock() + launcher.retry_after_s * 2 ** (
            job.crashes - 1
        )
        logger.warning(
            "job=%d model=%s: queued again (its workers died %d of %d times): %s",
            job.id,
            job.model,
            job.crashes,
            MAX_CRASHES,
            job.error,
        )
        launcher.store.add_event(
            model=job.model,
            type="retune_interrupted",
            payload={"job": job.id, "error": job.error},
        )
        return
    reason = f"{_headline(job.error)} (its workers died {job.crashes} times: not queued again)"
    _log_failed(job, reason, worker_end)
    launcher.store.add_event(
        model=job.model, type="retune_failed", payload={"job": job.id, "error": job.error}
    )


def _registered(launcher: JobLauncher, job: JobRow) -> bool:
    """Finish a job whose worker died as succeeded when its study registered a version:
    the worker died between registering and finishing (a study registers once, so no
    other worker would)."""
    version = registered_version(launcher.store, job)
    if version is None:
        return False
    result = {
        **job_result(version),
        "recovered": "the worker died after registering; finished by the launcher",
    }
    try:  # queued again or failed a moment ago: succeeded after all
        launcher.store.finish_job(
            job.id, status="succeeded", result=result, replacing=("queued", "failed")
        )
    except ConflictError as exc:  # finished otherwise meanwhile
        if exc.code != "job_finished":
            raise
        return True
    launcher.store.add_event(model=job.model, type="challenger_registered", payload=result)
    logger.warning(
        "job=%d model=%s: its worker died after registering version %d; finished",
        job.id,
        job.model,
        version.version,
    )
    return True


def requeue_killed(launcher: JobLauncher, job_id: int, pid: int) -> None:
    """Queue again the job of the worker just killed at stop, unless another worker has
    claimed it since (or it is no longer running)."""
    try:
        if not launcher.store.requeue_job(job_id, worker_id(pid)):
            return
        model = launcher.store.get_job(job_id).model
        launcher.store.add_event(model=model, type="retune_interrupted", payload={"job": job_id})
    except StoreError:  # shutting down: log; the job is failed once its heartbeats stop
        logger.exception("could not queue job %d again after killing its worker", job_id)
        return
    logger.warning(
        "job=%d model=%s: its worker (pid %d) did not stop within %.0f s and was "
        "killed; queued again",
        job_id,
        model,
        pid,
        launcher.stop_timeout_s,
    )
