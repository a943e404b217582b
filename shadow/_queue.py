"""The shadow queue: challengers score the champion's requests off the request path.

:meth:`ShadowQueue.submit` (and :meth:`ShadowQueue.submit_many`, one hand-off for many
jobs) never blocks: when ``maxsize`` jobs are waiting, or the new job's rows would take the
rows of the jobs waiting past ``max_bytes`` (:attr:`ShadowQueue.queued_bytes`), it drops
the new job, counts it in :attr:`ShadowQueue.dropped` and returns ``False``. A count
alone let a slow challenger's backlog of large requests hold gigabytes (100 of 4096 rows
x 512 float32 features: 800 MiB). The jobs a drain holds (at most ``max_batch``) are no
longer waiting and count in neither bound. Worker threads drain the backlog (at
most ``max_batch`` jobs, however they were handed over), score it with each challenger in
one batched call (see :func:`score_many`), and hand the results to ``on_result`` in one
call. A failing challenger becomes a result with ``error`` set; a failing ``on_result``
is logged and counted. Neither stops a worker. ``max_batch`` defaults to 32: larger
batches save little (per job and model, 2.8-3.7 µs at 256 against 3.0-4.2 µs at 64 in a
microbench), and a drain's Python work holds the GIL in one stretch that the champion
waits out (held drains of 256 doubled its p99 at saturation).

With ``cpu_share`` set, the workers use at most that share of one core's time, measured
over :attr:`ShadowQueue.share_window_s`: each drain that took ``c`` seconds of their CPU
(scoring and ``on_result``) spends ``c / cpu_share`` seconds of the budget, and once the
budget runs ahead of the clock the queue rests until the clock catches up. While it rests
it takes each model's jobs until one drain's worth (``max_batch``) of that model's jobs is
waiting, and sheds the rest: refused and counted in :attr:`ShadowQueue.shed`; what waits
is scored when the rest ends. The budget is the queue's, the drain's worth each model's:
a model flooding the queue is shed past its own, and one offering a few requests a
second has them taken beside it. (One drain's worth for all models together let a model
saturated at 4.5k requests/s shed 24-48 % of the shadow jobs of 39 others at one a second
each.) A model is held by its jobs waiting, not by their CPU: one whose jobs cost more
takes more of the budget per job. Drains stay first in, first out, ``max_batch`` jobs
whatever their models, so a light model's job waits behind the flood's jobs waiting: one
drain's worth, plus what it handed over while a drain ran. Jobs arriving while a drain
runs are taken up to ``maxsize``, as without a share; ``maxsize`` and ``max_bytes`` bound
all models' jobs together. Under light load or in a short burst nothing is shed; on a
saturated server the challengers score a sample of the requests instead of taking the
champion's CPU. ``clock`` (``time.monotonic``) times the share. The share counts the worker
threads' own CPU only: with ``intra_op_threads`` above 1, onnxruntime's pool threads are
not in it. ``on_drop`` hears of every refused job with the reason, ``"queue_full"`` (past
``maxsize`` or ``max_bytes``) or ``"cpu_share"``.

A job keeps the challengers it was handed over with; with ``is_live(model, version)``
given, a drain asks it once per group of jobs with the same model and challengers (not
per job) whether each challenger is still in its model's line-up, and skips those that
left it (retired, rolled back): their jobs are not scored for them, and each skipped
(job, challenger) pair is counted in :attr:`ShadowQueue.skipped` and reported to
``on_drop`` as ``"left_lineup"`` (a job is passed once per challenger skipped). A job
with two challengers, one retired, is scored by the other and reported once. Without
the check a retired challenger scored its whole backlog, minutes of CPU under a
``cpu_share``, holding its session and the rows meanwhile. A failing ``is_live`` is
logged and the challenger scores.

Every job taken is scored (by the challengers not skipped so) and handed to
``on_result``, or counted in :attr:`ShadowQueue.dropped` (and reported as
``"queue_full"``, as jobs offered to a closed queue are): :meth:`ShadowQueue.close` drops
the jobs still queued when its timeout runs out, and stops the runs of a drain still
going (each job an error result, handed to ``on_result``): a worker left inside
onnxruntime when the interpreter exits aborts the process ("terminate called without an
active exception", SIGABRT). Only runs under a deadline (a model's ``run_timeout_s``) can
be stopped so.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

from shadow._deployment import LoadedVersion
from shadow._jobs import FailureLog, ShadowJob, ShadowResult, score_many
from shadow._onnx import thread_run_options
from shadow._sched import use_batch_scheduling

logger = logging.getLogger(__name__)

_STOP: Final = object()

#: How long :meth:`ShadowQueue.close` waits for workers whose runs it stopped.
STOP_GRACE_S: Final = 1.0
#: How often :meth:`ShadowQueue._stop_runs` sets ``terminate`` again while it waits.
STOP_POLL_S: Final = 0.05

#: The default ``max_bytes``: request rows the jobs waiting may hold (``None``: no bound).
DEFAULT_MAX_BYTES: Final = 256 * 2**20

#: Why a shadow job was not scored; ``"insufficient_memory"`` is reported by the results
#: consumer (tunewatch), not the queue: the run was tried and onnxruntime could not
#: allocate its tensors.
DropReason = Literal["queue_full", "cpu_share", "left_lineup", "insufficient_memory"]


def _nbytes(jobs: Sequence[ShadowJob]) -> int:
    return sum(job.x.nbytes for job in jobs)


class ShadowQueue:
    """A bounded, non-blocking job queue drained by daemon worker threads."""

    #: The ``cpu_share`` holds over windows this long: a burst after a quiet second is
    #: scored whole, a steady overload is paced drain by drain.
    share_window_s: Final = 1.0

    def __init__(
        self,
        *,
        maxsize: int,
        on_result: Callable[[Sequence[ShadowResult]], None],
        workers: int = 1,
        name: str = "shadow",
        max_batch: int = 32,
        cpu_share: float | None = None,
        on_drop: Callable[[Sequence[ShadowJob], DropReason], None] | None = None,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        is_live: Callable[[str, int], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"`maxsize` must be >= 1, got {maxsize}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"`max_bytes` must be >= 1 or None, got {max_bytes}")
        if workers < 1:
            raise ValueError(f"`workers` must be >= 1, got {workers}")
        if max_batch < 1:
            raise ValueError(f"`max_batch` must be >= 1, got {max_batch}")
        if cpu_share is not None and not 0 < cpu_share <= 1:
            raise ValueError(f"`cpu_share` must be in (0, 1] or None, got {cpu_share}")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._byte_limit = sys.maxsize if max_bytes is None else max_bytes
        self.max_batch = max_batch
        self.name = name
        self.cpu_share = cpu_share
        self._on_result = on_result
        self._on_drop = on_drop
        self._is_live = is_live
        self._clock = clock  # the share window's: when the workers rest, and until when
        self._failures = FailureLog()  # the first failure of each version and code logged
        self._n_workers = workers
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._depth = 0
        self._bytes = 0  # the rows (x.nbytes) of the jobs counted in _depth
        self._waiting: dict[str, int] = {}  # _depth by model (no entry: none waiting)
        self._dropped = 0
        self._shed = 0
        self._skipped = 0
        self._cpu_seconds = 0.0
        self._rest_until = 0.0  # clock() before which offered jobs are shed
        self._stopping = threading.Event()
        self._processed = 0
        self._errors = 0
        self._callback_errors = 0
        self._threads: list[threading.Thread] = []
        self._run_options: list[Any] = []  # each worker's onnxruntime RunOptions
        self._closed = False

    # -- counters -----------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Jobs waiting for a worker."""
        return self._depth

    @property
    def queued_bytes(self) -> int:
        """Bytes of the rows (``x.nbytes``) of the jobs waiting for a worker."""
        return self._bytes

    @property
    def dropped(self) -> int:
        """Jobs refused because the queue was full (or closed), and jobs still queued when
        :meth:`close` timed out."""
        return self._dropped

    @property
    def shed(self) -> int:
        """Jobs refused because the workers had used their ``cpu_share``."""
        return self._shed

    @property
    def skipped(self) -> int:
        """(job, challenger) pairs not scored because the challenger had left its model's
        line-up (``is_live`` said so) when a drain took the job."""
        return self._skipped

    @property
    def cpu_seconds(self) -> float:
        """CPU time the workers spent on drains (scoring and ``on_result``), in total."""
        return self._cpu_seconds

    @property
    def resting(self) -> bool:
        """Whether the workers are resting on their ``cpu_share``: a model's jobs offered
        now are taken only up to one drain's worth (``max_batch``) of its own waiting, the
        rest are shed."""
        return self._clock() < self._rest_until

    @property
    def processed(self) -> int:
        """Jobs fully handled (scored and passed to ``on_result``); a job whose challengers
        had all left the line-up is not (see :attr:`skipped`)."""
        return self._processed

    @property
    def errors(self) -> int:
        """Failed challenger scorings plus failed ``on_result`` calls."""
        return self._errors

    @property
    def callback_errors(self) -> int:
        """Failed ``on_result`` calls (also included in :attr:`errors`)."""
        return self._callback_errors

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        if self._closed:
            raise RuntimeError(f"shadow queue {self.name!r} is closed")
        if self._threads:
            raise RuntimeError(f"shadow queue {self.name!r} is already started")
        for i in range(self._n_workers):
            thread = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def submit(self, job: ShadowJob) -> bool:
        """Enqueue ``job`` without blocking; ``False`` (and the refusal counted) if the
        queue is full (in jobs or bytes) or the workers are resting with a drain's worth
        of its model's jobs waiting."""
        return self.submit_many([job]) == 1

    def submit_many(self, jobs: Sequence[ShadowJob]) -> int:
        """Enqueue as many of ``jobs`` as fit, in order, with one hand-off to the workers;
        returns how many were taken (the rest are dropped or shed, and counted)."""
        shed: list[ShadowJob] = []
        with self._lock:
            fit = 0 if self._closed else max(0, min(len(jobs), self.maxsize - self._depth))
            room = self._byte_limit - self._bytes
            size = 0
            for i in range(fit):  # one add and compare per job: this is the champion's path
                nbytes = jobs[i].x.nbytes
                if size + nbytes > room:
                    fit = i
                    break
                size += nbytes
            taken = jobs if fit == len(jobs) else jobs[:fit]
            if fit and self._clock() < self._rest_until:
                taken, shed = self._one_drain_each(taken)
                size = _nbytes(taken)
            else:
                waiting, count = self._waiting, self._waiting.get
                for job in taken:  # one dict update per job
                    waiting[job.model] = count(job.model, 0) + 1
            self._depth += len(taken)
            self._bytes += size
            self._shed += len(shed)
            self._dropped += len(jobs) - fit
            # put under the lock: a close() cannot slip its stop markers in ahead of them
            for start in range(0, len(taken), self.max_batch):  # no drain holds more
                self._queue.put(taken[start : start + self.max_batch])
        if shed:
            self._report_drop(shed, "cpu_share")
        if fit < len(jobs):
            self._report_drop(jobs[fit:], "queue_full")
        return len(taken)

    def _one_drain_each(self, jobs: Sequence[ShadowJob]) -> tuple[list[ShadowJob], list[ShadowJob]]:
        """While the workers rest: of ``jobs``, in order, those taken (counted as waiting,
        each model's up to ``max_batch`` of its own waiting) and those shed."""
        waiting = self._waiting
        taken: list[ShadowJob] = []
        shed: list[ShadowJob] = []
        for job in jobs:
            n = waiting.get(job.model, 0)
            if n < self.max_batch:
                waiting[job.model] = n + 1
                taken.append(job)
            else:
                shed.append(job)
        return taken, shed

    def _not_waiting(self, jobs: Sequence[ShadowJob], nbytes: int) -> None:
        """Count ``jobs`` (taken by a drain, or dropped), whose rows hold ``nbytes``, as no
        longer waiting; under the lock."""
        waiting = self._waiting
        for job in jobs:
            n = waiting[job.model] - 1
            if n:
                waiting[job.model] = n
            else:
                del waiting[job.model]
        self._depth -= len(jobs)
        self._bytes -= nbytes

    def _report_drop(self, jobs: Sequence[ShadowJob], reason: DropReason) -> None:
        if self._on_drop is None:
            return
        try:
            self._on_drop(jobs, reason)
        except Exception:  # the submitter (the event loop) must not fail for a counter
            logger.exception("shadow queue %s: on_drop failed", self.name)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting jobs, let workers finish those queued, then stop them. Jobs
        still queued after ``timeout`` are dropped: counted in :attr:`dropped` and
        reported to ``on_drop`` as ``"queue_full"``; the runs of a drain still going are
        then stopped (their jobs become error results) and its worker waited for up to
        :data:`STOP_GRACE_S` more."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(_STOP)
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = self._take_queued()
        if self.running:
            self._stop_runs()
        if left:
            logger.warning(
                "shadow queue %s: %d queued jobs dropped unscored: no worker took them "
                "within the %.1f s close timeout",
                self.name,
                len(left),
                timeout,
            )
            self._report_drop(left, "queue_full")

    def _stop_runs(self) -> None:
        """Stop the workers' onnxruntime runs, the one in flight and any later one, and
        wait for the workers to end. ``terminate`` is set again at each poll: a deadline
        passing at the same moment clears it for the thread's next run."""
        with self._lock:
            run_options = list(self._run_options)
        logger.warning("shadow queue %s: stopping the runs of a drain past close", self.name)
        until = time.monotonic() + STOP_GRACE_S
        while self.running and time.monotonic() < until:
            for options in run_options:
                options.terminate = True
            for thread in self._threads:
                thread.join(STOP_POLL_S)
        if self.running:  # a model without run_timeout_s, or on_result
            logger.warning("shadow queue %s: a worker outlived its stopped runs", self.name)

    def _take_queued(self) -> list[ShadowJob]:
        """Take the jobs no worker took (counted as dropped), leaving the stop markers
        for the workers still busy."""
        left: list[ShadowJob] = []
        stops = 0
        with self._lock:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stops += 1
                else:
                    left.extend(item)
            for _ in range(stops):
                self._queue.put(_STOP)
            self._not_waiting(left, _nbytes(left))
            self._dropped += len(left)
        return left

    def __enter__(self) -> ShadowQueue:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- worker -------------------------------------------------------------------
    def _work(self) -> None:
        use_batch_scheduling()
        with self._lock:  # for close() to stop this worker's runs
            self._run_options.append(thread_run_options())
        carried: list[ShadowJob] = []  # a hand-off that did not fit in the last drain
        while True:
            drained = self._drain(carried)
            if drained is None:
                return
            jobs, carried, stop = drained
            size = _nbytes(jobs)
            with self._lock:
                self._not_waiting(jobs, size)
            began, cpu = self._clock(), time.thread_time()
            self._handle(jobs)
            used = time.thread_time() - cpu
            # nothing of a drain is held while the worker waits for the next: its jobs
            # hold their challengers' sessions, and a retired challenger's lived on with
            # the daemon when no challenger was left to submit another job
            del jobs, drained
            with self._lock:
                self._cpu_seconds += used
            if stop:
                return
            if self.cpu_share is not None:
                self._rest(began, used)

    def _drain(
        self, carried: list[ShadowJob]
    ) -> tuple[list[ShadowJob], list[ShadowJob], bool] | None:
        """The next drain: ``carried`` (the hand-off the last one left) or the next
        hand-off, waited for, then what else is queued up to ``max_batch`` jobs; the
        hand-off that does not fit, carried to the next; and whether the queue was told
        to stop behind them. None when it was told to stop before any."""
        if carried:
            jobs = carried
        else:
            first = self._queue.get()
            if first is _STOP:
                return None
            jobs = list(first)
        while len(jobs) < self.max_batch:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is _STOP:
                return jobs, [], True
            if len(jobs) + len(more) > self.max_batch:
                return jobs, list(more), False
            jobs.extend(more)
        return jobs, [], False

    def _rest(self, began: float, cpu_s: float) -> None:
        """Charge this drain's CPU to the budget (shared by every worker) and rest while
        the budget is ahead of the clock."""
        assert self.cpu_share is not None
        with self._lock:
            # Idle time earns credit for at most one window: a burst may run ahead by
            # ``cpu_share * share_window_s`` of CPU before the queue rests at all.
            credit_from = began - self.share_window_s
            self._rest_until = max(self._rest_until, credit_from) + cpu_s / self.cpu_share
        while not self._stopping.is_set():
            pause = self._rest_until - self._clock()
            if pause <= 0:
                return
            self._stopping.wait(pause)

    def _handle(self, jobs: list[ShadowJob]) -> None:
        results: list[ShadowResult] = []
        left: list[ShadowJob] = []  # one entry per (job, challenger) pair skipped
        # by model too: liveness is a model's, and two models may share an equal challenger
        groups: dict[tuple[str, tuple[LoadedVersion, ...]], list[ShadowJob]] = {}
        for job in jobs:
            groups.setdefault((job.model, job.challengers), []).append(job)
        scored = 0  # jobs a challenger scored: one whose challengers all left is not
        for (model, challengers), group in groups.items():
            live = [c for c in challengers if self._live(model, c.version)]
            left.extend(group * (len(challengers) - len(live)))
            scored += len(group) if live else 0
            for loaded in live:
                results.extend(self._score_group(group, loaded))
        if left:
            with self._lock:
                self._skipped += len(left)
            self._report_drop(left, "left_lineup")
        failures = sum(1 for r in results if r.error is not None)
        callback_failed = False
        try:
            self._on_result(results)
        except Exception:  # job boundary: the worker must survive its consumer
            callback_failed = True
            logger.exception(
                "shadow queue %s: on_result failed for %d jobs (first model=%s request=%s)",
                self.name,
                len(jobs),
                jobs[0].model,
                jobs[0].request_id,
            )
        with self._lock:
            self._processed += scored
            self._errors += failures + callback_failed
            self._callback_errors += callback_failed

    def _live(self, model: str, version: int) -> bool:
        """Whether ``is_live`` keeps ``version`` of ``model`` scoring: yes without one, and
        (logged) when it fails."""
        if self._is_live is None:
            return True
        try:
            return self._is_live(model, version)
        except Exception:  # job boundary: a broken check must not stop the worker
            logger.exception(
                "shadow queue %s: is_live failed for model=%s version=%d; scoring it",
                self.name,
                model,
                version,
            )
            return True

    def _score_group(self, group: list[ShadowJob], loaded: LoadedVersion) -> list[ShadowResult]:
        """:func:`score_many`, at the job boundary: an exception it lets out (a bug, not a
        failing job, which is an error result already) fails this challenger's jobs of
        the group, each an error result, and never the worker."""
        try:
            return score_many(group, loaded, failures=self._failures)
        except Exception as exc:  # job boundary: log with traceback, record, carry on
            logger.exception(
                "shadow queue %s: scoring %d jobs failed unexpectedly: model=%s version=%d "
                "(first request=%s)",
                self.name,
                len(group),
                group[0].model,
                loaded.version,
                group[0].request_id,
            )
            error = f"{type(exc).__name__}: {exc}"
            return [
                ShadowResult(
                    j.model, j.request_id, loaded.version, None, None, error, "shadow_error"
                )
                for j in group
            ]
