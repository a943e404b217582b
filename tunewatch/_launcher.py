"""Starting worker processes for queued re-tuning jobs, and queueing again the jobs whose
workers died (run by the scheduler's leader)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tunewatch._config import ENV_DATA_DIR, ENV_STORE_URL
from tunewatch._errors import ConflictError, StoreError
from tunewatch._outage_log import OutageLog
from tunewatch._tuning_results import job_result, registered_version
from tunewatch.store import JobRow, Store

logger = logging.getLogger(__name__)

#: A running job whose workers missed this many heartbeats in a row is presumed dead.
STALE_HEARTBEATS = 6
#: A job whose workers died (killed, or presumed dead) is queued again for the next
#: worker to resume its study, until they have died this many times: then it is failed
#: (a window too large for the host would have the OOM killer end every worker).
MAX_CRASHES = 3
#: A queued job whose workers failed this many times in a row before claiming it (a bad
#: environment, a store they cannot reach) is failed with the last one's stderr. After
#: the n-th failure the next worker waits ``retry_after_s · 2ⁿ⁻¹`` (5, 10, 20, 40 s by
#: default), so an outage shorter than about 75 s fails no job.
MAX_LAUNCHES = 5
#: How much of a worker's stderr is read when it exits: at most its last 20 lines, from
#: its last 4 KiB.
_STDERR_LINES = 20
_STDERR_BYTES = 4096
#: How much of that a failed job's error keeps (its end).
_STDERR_TAIL = 2000
#: What a worker process is started without: it reads the configuration the daemon wrote
#: for it (``--config``), which holds the daemon's effective settings, the environment's
#: overrides applied. Inherited, they applied again in the worker: a daemon built without
#: them (the demo's) had its workers look for their jobs in another store.
WORKER_ENV_DROPPED = (ENV_DATA_DIR, ENV_STORE_URL, "TUNEWATCH_CONFIG")


def worker_id(pid: int) -> str:
    """The name a worker process claims its job under (``host:pid``)."""
    return f"{socket.gethostname()}:{pid}"


class JobLauncher:
    """Starts worker processes for queued jobs (run by the scheduler's leader)."""

    def __init__(
        self,
        *,
        store: Store,
        config_path: Path,
        workers: int,
        stale_after_s: float,
        command: Sequence[str] | None = None,
        stop_timeout_s: float = 30.0,
        retry_after_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.config_path = config_path
        self.workers = workers
        self.stale_after_s = stale_after_s
        # a worker's command line, the job id appended
        self.command = list(command) if command is not None else _worker_command(config_path)
        self.stop_timeout_s = stop_timeout_s
        self.retry_after_s = retry_after_s
        # monotonic seconds: when a failed start is retried, a lingering worker stopped
        self.clock = clock
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._stderr: dict[int, Any] = {}  # a worker's stderr, a temporary file
        self._failed_starts: dict[int, int] = {}  # per job, in a row
        self._start_errors: dict[int, str] = {}  # per job: how its last failed start ended
        self._not_before: dict[int, float] = {}  # per job: no worker before (monotonic)
        # per job, its crashes when its worker started: a worker whose job is queued when it
        # exits had claimed it if the count moved (queued again as stale meanwhile)
        self._crashes_at_start: dict[int, int] = {}
        # per job that ended while this host's worker of it still ran: when the launcher
        # first saw it ended, and when it sent that worker SIGTERM (:meth:`_stop_lingering`)
        self._ended_at: dict[int, float] = {}
        self._terminated_at: dict[int, float] = {}
        # held while a worker is started or the workers are listed to stop; once
        # ``_stopping`` is set no worker is started (a tick may still be running when the
        # daemon stops the launcher: the scheduler's shutdown does not wait for it)
        self._lock = threading.Lock()
        self._stopping = False
        self._requeue_outage = OutageLog(
            logger,
            what="queueing again the running jobs of stale workers",
            retry="starting workers for queued jobs meanwhile, retrying every tick",
            now=lambda: datetime.now(UTC),
        )
        self._lingering_outage = OutageLog(
            logger,
            what="checking on the jobs of this host's workers",
            retry="starting workers for queued jobs meanwhile, retrying every tick",
            now=lambda: datetime.now(UTC),
        )

    def tick(self) -> list[int]:
        """Reap finished workers, queue again (or fail, past :data:`MAX_CRASHES`) running
        jobs whose workers stopped heartbeating (any worker, on any host; this host's is
        killed), stop this host's workers still running once their jobs ended
        (:meth:`_stop_lingering`) and start new workers; returns the job ids started. A
        requeue that fails (a stopped worker's lock held past the lock timeout, say) still
        lets the queued jobs start. Does nothing once the launcher is stopping."""
        if self._stopping:
            return []
        with self._lock:
            exited = [(j, p) for j, p in self._procs.items() if p.poll() is not None]
            for job_id, _ in exited:
                del self._procs[job_id]
            outputs = [self._stderr.pop(job_id, None) for job_id, _ in exited]
        for (job_id, proc), err in zip(exited, outputs, strict=True):
            try:
                self._reap(job_id, proc, err)
            except (StoreError, OSError):  # one worker's: the others are still reaped
                logger.exception("could not check on the worker of job %d", job_id)
        # after the reap, which knows how this host's dead workers ended
        for job in self._requeue_stale():
            try:  # one job's: the others are still announced, and workers started
                self._kill_silent(job)
                self._announce_crash(job)
            except (StoreError, OSError):
                logger.exception("could not finish queueing again stale job %d", job.id)
        self._stop_lingering()
        started = []
        for job in self.store.list_jobs(status="queued", limit=50, oldest_first=True):
            with self._lock:
                if self._stopping or len(self._procs) >= self.workers:
                    break
                if job.id in self._procs or self._not_before.get(job.id, 0) > self.clock():
                    continue
                stderr = tempfile.TemporaryFile()
                proc = subprocess.Popen(
                    [*self.command, str(job.id)],
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env=worker_environment(),
                )
                self._procs[job.id] = proc
                self._stderr[job.id] = stderr
                self._crashes_at_start[job.id] = job.crashes
            started.append(job.id)
            logger.info("started a worker for job %d (pid %d)", job.id, proc.pid)
        return started

    def failed_start(self, job_id: int) -> str | None:
        """How this host's last worker of ``job_id`` ended when it exited before claiming
        the job, which waits to be retried (``status 2: tunewatch: error: …``, its exit and
        its stderr's last line); None when none did since a worker last claimed it, or
        once the job failed for it (:data:`MAX_LAUNCHES`)."""
        return self._start_errors.get(job_id)

    def _requeue_stale(self) -> list[JobRow]:
        """The running jobs just queued again (or failed) as stale; none when that failed.
        A failure (the store down, a lock it waited for past the lock timeout) is logged
        once while it lasts and retried next tick; raised, it failed the whole tick before
        any worker started, so no queued job started for as long as it lasted."""
        stale = timedelta(seconds=self.stale_after_s)
        try:
            jobs = self.store.requeue_stale_jobs(older_than=stale, max_crashes=MAX_CRASHES)
        except StoreError as exc:
            self._requeue_outage.failed(exc)
            return []
        self._requeue_outage.succeeded()
        return jobs

    def _stop_lingering(self) -> None:
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
        with self._lock:
            procs = list(self._procs.items())
        for job_id in (self._ended_at.keys() | self._terminated_at.keys()) - dict(procs).keys():
            self._ended_at.pop(job_id, None)  # its worker exited, or was killed
            self._terminated_at.pop(job_id, None)
        try:
            jobs = [(self.store.get_job(job_id), proc) for job_id, proc in procs]
        except StoreError as exc:
            self._lingering_outage.failed(exc)
            return
        self._lingering_outage.succeeded()
        now = self.clock()
        for job, proc in jobs:
            if job.status in ("queued", "running"):
                self._ended_at.pop(job.id, None)
                self._terminated_at.pop(job.id, None)
                continue
            ended_at = self._ended_at.setdefault(job.id, now)
            if now - ended_at < self.stop_timeout_s:
                continue
            terminated_at = self._terminated_at.get(job.id)
            if terminated_at is None:
                self._terminated_at[job.id] = now
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
            elif now - terminated_at >= self.stop_timeout_s:
                self._kill_lingering(job, now - ended_at)

    def _kill_lingering(self, job: JobRow, ended_for_s: float) -> None:
        """Kill and reap this host's worker of ``job``, which ended ``ended_for_s`` ago;
        its worker did not exit at SIGTERM (:meth:`_stop_lingering`)."""
        self._kill(
            job,
            f"was still running {ended_for_s:.0f} s after the job {job.status} and "
            f"{self.stop_timeout_s:.0f} s after SIGTERM",
        )

    def _take(self, job_id: int) -> tuple[subprocess.Popen[bytes], str] | None:
        """Take this host's worker of ``job_id`` off the launcher's list (its slot free),
        with its stderr's end; None when it has none (not this host's, reaped already)."""
        with self._lock:
            proc = self._procs.pop(job_id, None)
            stderr = self._stderr.pop(job_id, None)
            self._crashes_at_start.pop(job_id, None)
        self._ended_at.pop(job_id, None)
        self._terminated_at.pop(job_id, None)
        if proc is None:
            if stderr is not None:
                stderr.close()
            return None
        self._failed_starts.pop(job_id, None)  # it had claimed the job
        self._start_errors.pop(job_id, None)
        try:
            tail = _tail(stderr)
        except OSError:
            logger.exception("could not read the stderr of the worker of job %d", job_id)
            tail = ""
        finally:
            if stderr is not None:
                stderr.close()
        return proc, tail

    def _kill_silent(self, job: JobRow) -> None:
        """Kill and reap this host's worker of ``job``, just queued again (or failed) as
        stale: no worker of the job heartbeated for ``stale_after_s``, so it is hung (or
        stopped, SIGSTOP: hence SIGKILL, which a stopped process does not wait to be
        continued for). Left running it held its job, never started again, and a slot of
        the quota, for good. Its crash is the one the requeue counted: it is not reaped as
        a worker that died (:meth:`_reap`)."""
        self._kill(job, f"stopped heartbeating for {self.stale_after_s:.0f} s")

    def _kill(self, job: JobRow, why: str) -> None:
        """SIGKILL this host's worker of ``job``, which ``why`` says is hung, and reap it
        (its slot free), logging the end of its stderr; nothing if it has none."""
        taken = self._take(job.id)
        if taken is None:  # not this host's, or reaped already
            return
        proc, tail = taken
        proc.kill()
        try:  # a process in uninterruptible sleep dies when its I/O returns
            proc.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:  # reaped by `subprocess` after it is dropped
            logger.error(
                "job=%d model=%s: its worker (pid %d) %s and was sent SIGKILL, but had not "
                "exited after %.0f s; left to exit",
                job.id,
                job.model,
                proc.pid,
                why,
                self.stop_timeout_s,
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

    def _reap(self, job_id: int, proc: subprocess.Popen[bytes], stderr: Any) -> None:
        """Count a worker that failed before claiming its job (the job is still queued);
        at :data:`MAX_LAUNCHES` in a row the job is failed with the worker's stderr. One
        that had claimed its job is reported by :meth:`_reap_claimed`."""
        try:
            tail = _tail(stderr)
        finally:
            if stderr is not None:
                stderr.close()
        crashes_at_start = self._crashes_at_start.pop(job_id, None)
        job = self.store.get_job(job_id)
        requeued = job.status == "queued" and crashes_at_start not in (None, job.crashes)
        if proc.returncode == 0 or job.status != "queued" or requeued:
            self._failed_starts.pop(job_id, None)
            self._start_errors.pop(job_id, None)
            if not requeued:  # one queued again as stale waits as it was told
                self._not_before.pop(job_id, None)
            if job.status != "queued" or requeued:
                self._reap_claimed(job, proc, tail)
            return
        failures = self._failed_starts[job_id] = self._failed_starts.get(job_id, 0) + 1
        last_line = tail.splitlines()[-1] if tail else "(no stderr)"
        self._start_errors[job_id] = f"{describe_exit(proc.returncode)}: {last_line}"
        logger.warning(
            "worker for job %d exited with %d before claiming it (%d of %d): %s",
            job_id,
            proc.returncode,
            failures,
            MAX_LAUNCHES,
            last_line,
        )
        if failures < MAX_LAUNCHES:
            self._not_before[job_id] = self.clock() + self.retry_after_s * 2 ** (failures - 1)
            return
        del self._failed_starts[job_id]
        self._start_errors.pop(job_id, None)
        self._not_before.pop(job_id, None)
        error = (
            f"its worker exited with {proc.returncode} before claiming the job, "
            f"{MAX_LAUNCHES} times in a row; the last one's stderr ends:\n{tail[-_STDERR_TAIL:]}"
        )
        try:
            job = self.store.finish_job(job_id, status="failed", error=error, replacing=("queued",))
        except ConflictError as exc:  # claimed or finished meanwhile
            if exc.code != "job_finished":
                raise
            return
        logger.error("job=%d model=%s failed: %s", job.id, job.model, error)
        self.store.add_event(
            model=job.model, type="retune_failed", payload={"job": job.id, "error": error}
        )

    def _reap_claimed(self, job: JobRow, proc: subprocess.Popen[bytes], tail: str) -> None:
        """A worker that had claimed ``job`` exited. Its stderr (its log) is gone with it:
        a failure's end is logged here. A job it still holds (``running`` under its
        name: killed, say by the OOM killer, or dead without finishing) is queued again
        now, its crash counted, with the exit status and the stderr's end (failed at
        :data:`MAX_CRASHES`), rather than once its heartbeats are missed. A worker that
        joined the study earlier may still be running it: it goes on, and the worker
        started for the queued job joins it (failing the job freed its quota slot while
        that worker tuned). A job another worker claimed since, or one that ended, is
        left alone."""
        if proc.returncode == 0:
            return
        worker = worker_id(proc.pid)
        status = describe_exit(proc.returncode)
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
        error = (
            f"worker {worker!r} exited with {status} while running the job; its stderr "
            f"ends:\n{tail[-_STDERR_TAIL:] or '(nothing)'}"
        )
        row = self.store.requeue_crashed_job(job, error=error, max_crashes=MAX_CRASHES)
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
        self._announce_crash(row)

    def _announce_crash(self, job: JobRow) -> None:
        """Log and record a job whose worker died: finished as succeeded when its study
        had registered its version, else queued again (``retune_interrupted``, with how it
        died; its next worker waits ``retry_after_s``, doubling with each crash), or
        failed (``retune_failed``) once its workers died :data:`MAX_CRASHES` times."""
        if self._registered(job):
            return
        if job.status == "queued":
            # the next worker after a wait, as after a failed start: memory pressure that
            # ended one worker may have passed
            self._not_before[job.id] = self.clock() + self.retry_after_s * 2 ** (job.crashes - 1)
            logger.warning(
                "job=%d model=%s: queued again (its workers died %d of %d times): %s",
                job.id,
                job.model,
                job.crashes,
                MAX_CRASHES,
                job.error,
            )
            self.store.add_event(
                model=job.model,
                type="retune_interrupted",
                payload={"job": job.id, "error": job.error},
            )
            return
        logger.error("job=%d model=%s failed: %s", job.id, job.model, job.error)
        self.store.add_event(
            model=job.model, type="retune_failed", payload={"job": job.id, "error": job.error}
        )

    def _registered(self, job: JobRow) -> bool:
        """Finish a job whose worker died as succeeded when its study registered a version:
        the worker died between registering and finishing (a study registers once, so no
        other worker would)."""
        version = registered_version(self.store, job)
        if version is None:
            return False
        result = {
            **job_result(version),
            "recovered": "the worker died after registering; finished by the launcher",
        }
        try:  # queued again or failed a moment ago: succeeded after all
            self.store.finish_job(
                job.id, status="succeeded", result=result, replacing=("queued", "failed")
            )
        except ConflictError as exc:  # finished otherwise meanwhile
            if exc.code != "job_finished":
                raise
            return True
        self.store.add_event(model=job.model, type="challenger_registered", payload=result)
        logger.warning(
            "job=%d model=%s: its worker died after registering version %d; finished",
            job.id,
            job.model,
            version.version,
        )
        return True

    def stop(self) -> None:
        """Ask the workers to stop (SIGTERM: each ends its running trial and queues its
        job again); one still running after ``stop_timeout_s`` is killed, and its job
        queued again here, so the next worker resumes its study (without the trial it
        was running). No worker is started afterwards, by a tick running now or later."""
        with self._lock:
            self._stopping = True
            procs = list(self._procs.items())
            self._procs.clear()
            self._crashes_at_start.clear()
            files, self._stderr = self._stderr, {}
        for stderr in files.values():
            stderr.close()
        for _, proc in procs:
            proc.terminate()
        deadline = time.monotonic() + self.stop_timeout_s
        for job_id, proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self._requeue_killed(job_id, proc.pid)

    def _requeue_killed(self, job_id: int, pid: int) -> None:
        """Queue again the job of the worker just killed, unless another worker has
        claimed it since (or it is no longer running)."""
        try:
            if not self.store.requeue_job(job_id, worker_id(pid)):
                return
            model = self.store.get_job(job_id).model
            self.store.add_event(model=model, type="retune_interrupted", payload={"job": job_id})
        except StoreError:  # shutting down: log; the job is failed once its heartbeats stop
            logger.exception("could not queue job %d again after killing its worker", job_id)
            return
        logger.warning(
            "job=%d model=%s: its worker (pid %d) did not stop within %.0f s and was "
            "killed; queued again",
            job_id,
            model,
            pid,
            self.stop_timeout_s,
        )


def describe_exit(returncode: int) -> str:
    """A worker's exit status for a person: ``status 1``, ``SIGSEGV (-11)``, ``SIGKILL
    (-9): killed, e.g. out of memory``."""
    if returncode >= 0:
        return f"status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    if -returncode == signal.SIGKILL:
        return f"{name} ({returncode}): killed, e.g. out of memory"
    return f"{name} ({returncode})"


def _tail(stderr: Any) -> str:
    """The end of a worker's stderr: its last lines, as a terminal shows them (a progress
    bar redrawn with carriage returns is its last drawing)."""
    if stderr is None:
        return ""
    stderr.seek(0, 2)
    stderr.seek(max(0, stderr.tell() - _STDERR_BYTES))
    text = stderr.read().decode("utf-8", "replace").strip()
    lines = [line.rstrip("\r").rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    return "\n".join(lines[-_STDERR_LINES:]).strip()


def worker_environment() -> dict[str, str]:
    """This process's environment without :data:`WORKER_ENV_DROPPED`, for a worker."""
    return {k: v for k, v in os.environ.items() if k not in WORKER_ENV_DROPPED}


def _worker_command(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "tunewatch._cli", "--config", str(config_path), "worker", "--job"]
