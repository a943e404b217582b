"""Starting worker processes for queued re-tuning jobs, and queueing again the jobs whose
workers died (run by the scheduler's leader); reaping this process's workers whether or
not it leads.

:class:`JobLauncher` is the front: each :meth:`JobLauncher.tick` reaps the workers that
exited, queues again the jobs of stale workers, stops hung workers and starts new ones;
:meth:`JobLauncher.reap_exited` only reaps, and a thread of the launcher's own reaps so the
workers no tick reaps (this process lost the lease: its tick is no longer scheduled);
:meth:`JobLauncher.stop` ends them all. It delegates to

- :mod:`tunewatch._launcher_worker`: a worker process (its id, command line,
  environment, exit status and stderr's end);
- :mod:`tunewatch._launcher_reap`: what becomes of the job of a worker that exited or
  died (retried, queued again, failed, or finished as succeeded);
- :mod:`tunewatch._launcher_kill`: stopping this host's hung workers.

Those modules log under this module's logger name, ``tunewatch._launcher``."""

from __future__ import annotations

import logging
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Container, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tunewatch._errors import StoreError, StoreUnavailableError
from tunewatch._launcher_kill import kill_silent, stop_lingering
from tunewatch._launcher_reap import (
    MAX_CRASHES,
    MAX_LAUNCHES,
    ExitedWorker,
    announce_crash,
    exited_worker,
    reap,
    requeue_killed,
)
from tunewatch._launcher_worker import (
    WORKER_ENV_DROPPED,
    describe_exit,
    worker_command,
    worker_environment,
    worker_id,
)
from tunewatch._outage_log import OutageLog
from tunewatch.store import JobRow, Store

__all__ = [
    "MAX_CRASHES",
    "MAX_LAUNCHES",
    "REAP_EVERY_S",
    "STALE_HEARTBEATS",
    "WORKER_ENV_DROPPED",
    "JobLauncher",
    "describe_exit",
    "worker_environment",
    "worker_id",
]

logger = logging.getLogger(__name__)

#: A running job whose workers missed this many heartbeats in a row is presumed dead.
STALE_HEARTBEATS = 6
#: How often the launcher's reaping thread looks for exited workers no tick reaped.
REAP_EVERY_S = 5.0


class JobLauncher:
    """Starts worker processes for queued jobs (:meth:`tick`, run by the scheduler's
    leader) and reaps them whether or not this process still leads.

    The tick reaps the workers that exited first thing. Once this process lost the lease
    its tick no longer runs, and a worker exiting then stayed a zombie, its stderr file
    open, and a job it died holding stayed running until the new leader found six
    heartbeats missed. So from its first worker on, the launcher has a thread of its own
    (``tunewatch-reaper``) that looks every ``reap_every_s`` and reaps the workers it
    already saw exited the time before: those no tick reaped for that long (none while
    the leader's tick runs, every two seconds), so within twice ``reap_every_s`` (10 s by
    default) of their exit. It starts no worker, and ends at :meth:`stop`."""

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
        reap_every_s: float = REAP_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.config_path = config_path
        self.workers = workers
        self.stale_after_s = stale_after_s
        # a worker's command line, the job id appended
        self.command = list(command) if command is not None else worker_command(config_path)
        self.stop_timeout_s = stop_timeout_s
        self.retry_after_s = retry_after_s
        self.reap_every_s = reap_every_s
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
        # first saw it ended, and when it sent that worker SIGTERM
        # (:func:`~tunewatch._launcher_kill.stop_lingering`)
        self._ended_at: dict[int, float] = {}
        self._terminated_at: dict[int, float] = {}
        # per job, its worker that exited while the store was unavailable: read (its exit
        # status and stderr logged), its job settled at a later reap, when the store answers
        self._unsettled: dict[int, ExitedWorker] = {}
        # held while a worker is started or the workers are listed to stop; once
        # ``_stopped`` is set no worker is started (a tick may still be running when the
        # daemon stops the launcher: the scheduler's shutdown does not wait for it), and
        # the reaping thread ends
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        # held by a whole tick, and by a reap outside one: a worker's reap (its job's
        # failed start counted, its wait set) ends before a tick can start the next
        self._reaping = threading.Lock()
        self._reaper: threading.Thread | None = None  # started with the first worker
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
        (:func:`~tunewatch._launcher_kill.stop_lingering`) and start new workers; returns
        the job ids started. A requeue that fails (a stopped worker's lock held past the
        lock timeout, say) still lets the queued jobs start. Does nothing once the launcher
        is stopping."""
        with self._reaping:
            return self._tick()

    def _tick(self) -> list[int]:
        if self._stopped.is_set():
            return []
        self._reap_exited()
        # after the reap, which knows how this host's dead workers ended
        for job in self._requeue_stale():
            try:  # one job's: the others are still announced, and workers started
                kill_silent(self, job)
                announce_crash(self, job)
            except (StoreError, OSError):
                logger.exception("could not finish queueing again stale job %d", job.id)
        stop_lingering(self)
        started = []
        for job in self.store.list_jobs(status="queued", limit=50, oldest_first=True):
            with self._lock:
                if self._stopped.is_set() or len(self._procs) >= self.workers:
                    break
                if job.id in self._procs or job.id in self._unsettled:
                    continue
                if self._not_before.get(job.id, 0) > self.clock():
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
                if self._reaper is None:
                    self._reaper = threading.Thread(
                        target=self._reap_unattended, name="tunewatch-reaper", daemon=True
                    )
                    self._reaper.start()
            started.append(job.id)
            logger.info("job=%d model=%s: started a worker (pid %d)", job.id, job.model, proc.pid)
        return started

    def reap_exited(self) -> list[int]:
        """Reap this host's workers that exited, as :meth:`tick` does first: each one's
        exit status collected, its stderr file read and closed, and what becomes of its
        job recorded (:func:`~tunewatch._launcher_reap.reap`: a failed start counted, a
        job it died holding queued again or failed). While the store is unavailable a
        worker's exit status and stderr's end are logged at once, and its job is settled
        at a later reap. Returns their jobs' ids. Starts no worker and needs no lease: the
        launcher's reaping thread reaps so whether or not this process leads. Waits for a
        tick (or reap) in progress to end first."""
        with self._reaping:
            return self._reap_exited()

    def _reap_exited(self, among: Container[subprocess.Popen[bytes]] | None = None) -> list[int]:
        """Reap the workers that exited (only those ``among``, if given), and settle the
        jobs of those that exited while the store was unavailable, ``_reaping`` held."""
        with self._lock:
            exited = [
                (j, p)
                for j, p in self._procs.items()
                if p.poll() is not None and (among is None or p in among)
            ]
            for job_id, _ in exited:
                del self._procs[job_id]
            outputs = [self._stderr.pop(job_id, None) for job_id, _ in exited]
        read = [
            exited_worker(self, job_id, proc, err)
            for (job_id, proc), err in zip(exited, outputs, strict=True)
        ]
        for worker in [*self._unsettled.values(), *read]:
            self._settle(worker)
        return [job_id for job_id, _ in exited]

    def _settle(self, worker: ExitedWorker) -> None:
        """What becomes of the job of ``worker``, which exited (:func:`reap`). When the
        store cannot say (unavailable), the worker's exit status and stderr's end are
        logged now, once: the reap read and closed its stderr before it looked the job up,
        and they were lost with a failure. The job is settled at a later reap."""
        proc = worker.proc
        try:
            reap(self, worker)
        except StoreUnavailableError as exc:
            if self._unsettled.get(worker.job_id) is worker:
                logger.debug("job %d: the store still cannot be read: %s", worker.job_id, exc)
                return
            self._unsettled[worker.job_id] = worker
            logger.log(
                logging.WARNING if proc.returncode else logging.INFO,
                "worker for job %d (pid %d) exited with %s; what becomes of its job is "
                "settled at the next reap the store answers (%s); the worker's stderr "
                "ends:\n%s",
                worker.job_id,
                proc.pid,
                describe_exit(proc.returncode),
                exc,
                worker.tail or "(nothing)",
            )
            return
        except StoreError:  # one worker's: the others are still reaped
            logger.exception(
                "could not check on the worker of job %d (pid %d), which exited with %s; "
                "the worker's stderr ends:\n%s",
                worker.job_id,
                proc.pid,
                describe_exit(proc.returncode),
                worker.tail or "(nothing)",
            )
        self._unsettled.pop(worker.job_id, None)

    def _reap_unattended(self) -> None:
        """The reaping thread: every ``reap_every_s`` until :meth:`stop`, reap the workers
        already seen exited the time before, which no tick reaped meanwhile (this process
        no longer leads, or its tick is held up); a worker the leader's tick reaps within
        that time is left to it. A failure is logged and the next turn tries again."""
        seen: set[subprocess.Popen[bytes]] = set()
        while not self._stopped.wait(self.reap_every_s):
            try:
                with self._reaping:
                    self._reap_exited(among=seen)
                    with self._lock:
                        seen = {p for p in self._procs.values() if p.poll() is not None}
            except Exception:  # the thread's boundary: logged, tried again next turn
                logger.exception("could not reap the workers that exited")

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

    def stop(self) -> None:
        """Ask the workers to stop (SIGTERM: each ends its running trial and queues its
        job again); one still running after ``stop_timeout_s`` is killed, and its job
        queued again here, so the next worker resumes its study (without the trial it
        was running). No worker is started afterwards, by a tick running now or later, and
        the reaping thread ends, a reap in progress waited for (a tick is not)."""
        with self._lock:
            self._stopped.set()
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
                requeue_killed(self, job_id, proc.pid)
        if self._reaper is not None:  # a reap in progress ends before the store closes
            self._reaper.join(self.stop_timeout_s)
