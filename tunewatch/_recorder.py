"""Group commit: a response waits until its records are durable; concurrent requests share
one transaction.

One writer thread owns the store's write path. Handlers call :meth:`Recorder.record` and
await the future it returns. Records of one event-loop iteration are handed to the writer
together, at the end of that iteration (``loop.call_soon``): one queue put and one thread
wake-up per iteration rather than per request, which on a busy core is most of the cost of
a hand-off. The writer takes everything that queued up while the last commit ran (up to
``max_batch`` requests), writes it in one transaction, commits and then resolves every
future of the group with one ``call_soon_threadsafe`` per event loop. No request waits on
a timer: under load the groups grow by themselves, and a lone request commits at the end
of its loop iteration. Outputs nobody waits for (challengers scoring in shadow) are held
for up to ``hold_s`` to ride in the next group's transaction instead of paying for a
commit of their own (a third of all commits under load before).

When a group fails because the store is unavailable (a lock held past ``lock_timeout_s``,
a server gone, a PostgreSQL connection that stops answering: the store shuts it down at
its write deadline, ``lock_timeout_s`` + 5 s, since a proxy that keeps TCP open but stops
forwarding held this thread in its commit forever), everything queued behind it fails
with the same error without being tried: each group would wait out its own lock timeout,
so a request behind N groups got its 503 after N timeouts (60 s of a held lock at 2k
requests/s: ~234 groups of 512, two hours) while the queue grew.
``tunewatch_record_failures_total`` counts failed groups: each failed commit, each set of
records failed with it untried, each group an unexpected error failed (logged with its
traceback, its requests answered 500 ``store_error``; the writer goes on), what is left in
the queue when the recorder closes, and each hand-off of shadow outputs after it closed (a
shadow drain that finished during shutdown). Shadow outputs have no request to answer
503, so that count is the only trace of their loss.

The records waiting for the store are bounded in bytes (``max_pending_bytes``: inputs,
outputs and an estimate of each record's objects, from their hand-over until their group
is written or failed). While the store stalls (a lock held for up to ``lock_timeout_s``, a
slow disk, a failover) each request queued its record without limit and waited out the
stall: 2,000 requests of 64 KiB held 125 MiB. Once the records waiting hold the bound, a
new record fails at once with :class:`~tunewatch.StoreUnavailableError`, unqueued, so its
request is answered 503 and never acknowledged; ``tunewatch_record_refusals_total`` counts
them and the first refusal of a stall is logged, as is the first record taken after it.
Shadow outputs are counted but never refused: they come from requests already recorded,
through the bounded shadow queue.

At SIGTERM uvicorn gives the requests in flight a grace (``request_grace_s``: one commit's
lock wait and write deadline, and 5 s), then cancels them: a bare text/plain 500. The
recorder is closed only after that, and wrote what was still queued. A request queued
behind a group waiting for a lock waited for that group and then for its own commit,
twice the lock timeout: cancelled, its record was then committed as the recorder closed,
so a retry was refused as a duplicate. Once told that shutdown began
(:meth:`Recorder.begin_shutdown`), a request whose commit would start too late to end
within the grace fails with :class:`~tunewatch.StoreUnavailableError`, unwritten (503,
not stored); a commit already running is left to end by its own write deadline.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from monitor import ServingMetrics
from shadow import use_batch_scheduling
from tunewatch._errors import StoreError, StoreUnavailableError
from tunewatch._outage_log import OutageLog
from tunewatch._recorder_queue import (
    RECORD_OVERHEAD_BYTES,
    STOP,
    Batch,
    Pending,
    drain,
    fail_futures,
    notify,
    record_size,
)
from tunewatch.store import OutputRecord, RequestRecord, RunTally, Store

logger = logging.getLogger(__name__)

#: Seconds a commit that failed for the store keeps the daemon not ready
#: (:meth:`Recorder.failing`) when no commit has been tried since.
READY_RECHECK_S = 30.0

#: What a request needs of the shutdown's grace once its commit ended: its future resolved
#: on its event loop and its answer written.
ANSWER_MARGIN_S = 1.0


class Recorder:
    """The single writer of requests and outputs."""

    def __init__(
        self,
        store: Store,
        *,
        metrics: ServingMetrics | None = None,
        max_batch: int = 512,
        hold_s: float = 0.05,
        max_pending_bytes: int = 256 * 2**20,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # ``max_pending_bytes``: once the records handed over and not yet written or failed
        # (this loop's iteration's included) hold this many bytes, records are refused.
        # ``now`` times a stall for its log; ``monotonic`` the shutdown's deadline.
        self.max_pending_bytes = max_pending_bytes
        self._pending_bytes = 0  # changed under ``_closing``
        self._store = store
        self._metrics = metrics
        self._max_batch = max_batch
        # How long outputs nobody waits for may wait for a group of requests to ride with.
        self._hold_s = hold_s
        self._queue: queue.SimpleQueue[list[Pending] | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Records of the running event-loop iteration, per loop, not yet handed over.
        self._batches: dict[asyncio.AbstractEventLoop, Batch] = {}
        self._closed = False
        self._monotonic = monotonic
        # Once shutdown began: the last moment a request's commit may start (monotonic).
        self._commit_by: float | None = None
        # the newest commit's failure for the store (monotonic time, error); None once
        # one succeeds: readiness reads it (:meth:`failing`), the writer thread sets it
        self._failed: tuple[float, StoreUnavailableError] | None = None
        # the store's database has not answered a ping since the newest failed commit
        # (:meth:`unreachable`): the failure was the outage's, which an answer ends
        self._unreached = False
        # nothing is handed over behind the stop marker; pending bytes change under it
        self._closing = threading.Lock()
        self._late_outputs_logged = False
        self._refusing = False  # since the last refusal no record was taken
        self._refusals = threading.Lock()  # event loops of several threads refuse
        self._stall = OutageLog(
            logger,
            what="queueing records for the store",
            retry=(
                "requests are answered 503 store_unavailable, unrecorded, until the records "
                "waiting (recording.max_pending_bytes) are written or failed"
            ),
            now=now,
        )
        self._unavailable = OutageLog(  # only the writer thread uses it
            logger,
            what="recording to the store",
            retry=(
                "requests are answered 503 store_unavailable, unrecorded, and shadow outputs "
                "are not written, until a commit succeeds"
            ),
            now=now,
            traceback=False,  # an outage, not a fault of the code: its message says which
        )
        if metrics is not None:  # read at each scrape: nothing added to a request's path
            metrics.record_pending_bytes.set_function(lambda: self._pending_bytes)
            metrics.record_max_pending_bytes.set(max_pending_bytes)

    @property
    def max_batch(self) -> int:
        """The most requests one commit writes (when they are handed over apart)."""
        return self._max_batch

    @property
    def pending_bytes(self) -> int:
        """Bytes of the records handed to the writer and not yet written or failed."""
        return self._pending_bytes

    def failing(self, *, answered: bool = False) -> StoreUnavailableError | None:
        """The error of the newest commit when the store refused it as unavailable (a
        full disk, a database gone) within ``READY_RECHECK_S`` and none has succeeded
        since: requests are answered 503 ``store_unavailable``, so the daemon is not
        ready. Past that span it is ready again, though no commit was tried: a replica
        taken out of rotation gets no request to show the store back.

        ``answered``: the store's database has just answered a ping. When one did not
        answer since the failure (:meth:`unreachable`), the failure was the outage's, and
        the answer ends it: a replica out of rotation stayed not ready for 30 s after a
        PostgreSQL restart. Commits refused while pings answer (a full disk, a read-only
        standby) are not ended by an answer."""
        failed = self._failed
        if failed is None or self._monotonic() - failed[0] > READY_RECHECK_S:
            return None
        if answered and self._unreached and self._failed is failed:
            self._failed = None
            return None
        return failed[1]

    def unreachable(self) -> None:
        """The store's database did not answer a ping (see :meth:`failing`)."""
        if self._failed is not None:
            self._unreached = True

    def stopped(self) -> StoreUnavailableError | None:
        """The error readiness raises once the writer thread started and is no longer
        alive (killed by an error outside :meth:`_commit_or_fail`'s boundary): nothing
        handed over is written or answered any more. ``None`` before :meth:`start` and
        after :meth:`close`."""
        thread = self._thread
        if thread is None or thread.is_alive():
            return None
        return StoreUnavailableError(
            "the recorder's writer thread has stopped: requests cannot be recorded; "
            "restart the daemon"
        )

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="tunewatch-recorder", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued so far, then stop the writer. Records that arrive
        later fail with :class:`~tunewatch.StoreUnavailableError` (no writer is left to
        acknowledge them). Records still queued after ``timeout`` fail with it too; a
        writer still in a commit then stops once that commit ends."""
        with self._closing:
            self._closed = True
            self._queue.put(STOP)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        left, stopping = drain(self._queue)  # a writer that did not stop in time, or never ran
        if stopping:  # for the writer still committing: without it, it waits here forever
            self._queue.put(STOP)
        if left:
            logger.error("the recorder closed with %d records unwritten", len(left))
            self._count_failure()
            self._release(left)
            fail_futures(left, _closed_error())

    def begin_shutdown(self, *, grace_s: float, commit_s: float) -> None:
        """Shutdown began: the requests in flight get ``grace_s`` from now to be answered
        (the server then cancels them), and a commit may take up to ``commit_s`` (the
        store's lock timeout and its write deadline's margin). A request whose commit has
        not started ``grace_s - commit_s -`` :data:`ANSWER_MARGIN_S` from now fails with
        :class:`~tunewatch.StoreUnavailableError`, unwritten, and those handed over later
        at once: it could not be answered before it was cancelled, and its record, written
        as the recorder closed, would refuse the client's retry as a duplicate. The commit
        running then ends by its own write deadline. Shadow outputs are still written.
        Call it on the event loop or any thread, not from a signal handler."""
        commit_by = self._monotonic() + grace_s - commit_s - ANSWER_MARGIN_S
        logger.info(
            "shutting down: requests whose commit has not started within %.1f s fail "
            "(503 store_unavailable), unrecorded",
            max(0.0, grace_s - commit_s - ANSWER_MARGIN_S),
        )
        with self._closing:
            if self._commit_by is None or commit_by < self._commit_by:
                self._commit_by = commit_by

    def record(
        self, request: RequestRecord, outputs: Sequence[OutputRecord]
    ) -> asyncio.Future[bool]:
        """Queue one request with its outputs; the future resolves after the commit.

        The result is ``True`` when the request was new, ``False`` when its id was already
        recorded (its outputs were then not written). The future raises
        :class:`~tunewatch.StoreError` when the commit failed, and is returned failed with
        :class:`~tunewatch.StoreUnavailableError`, the record not queued, when the records
        waiting hold ``max_pending_bytes`` or more.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        batch = self._batches.get(loop)
        waiting = self._pending_bytes + (batch.nbytes if batch is not None else 0)
        if waiting >= self.max_pending_bytes:
            self._refuse(future, waiting)
            return future
        if self._refusing:
            self._stall_ended()
        nbytes = record_size(request, outputs)
        if batch is None:
            batch = self._batches[loop] = Batch([])
            loop.call_soon(self._hand_over, loop)
        batch.records.append(Pending(request, outputs, future, loop, nbytes))
        batch.nbytes += nbytes
        return future

    def _refuse(self, future: asyncio.Future[bool], waiting: int) -> None:
        error = StoreUnavailableError(
            f"the store is not keeping up: the records waiting for it hold {waiting} bytes, "
            f"recording.max_pending_bytes is {self.max_pending_bytes}; not recorded"
        )
        future.set_exception(error)
        with self._refusals:
            self._refusing = True
            self._stall.failed(error)
        if self._metrics is not None:
            self._metrics.record_refusals.inc()

    def _stall_ended(self) -> None:
        with self._refusals:
            if self._refusing:
                self._refusing = False
                self._stall.succeeded()

    def record_outputs(
        self, outputs: Sequence[OutputRecord], tallies: Sequence[RunTally] = ()
    ) -> None:
        """Queue outputs nobody waits for (challengers scoring in shadow), with the runs
        that gave them and those that failed (``tallies``); any thread. Once the recorder
        is closed they are not written: counted as a failure (a shadow drain finishing
        after shutdown), and logged the first time."""
        if not outputs and not tallies:
            return
        nbytes = record_size(None, outputs) + RECORD_OVERHEAD_BYTES * len(tallies)
        with self._closing:
            if not self._closed:
                self._pending_bytes += nbytes
                self._queue.put([Pending(None, outputs, None, None, nbytes, tallies)])
                return
            first = not self._late_outputs_logged
            self._late_outputs_logged = True
        if first:
            logger.warning(
                "%d shadow outputs recorded after the recorder closed are not written; "
                "later ones are only counted in tunewatch_record_failures_total",
                len(outputs),
            )
        self._count_failure()

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._batches.pop(loop)
        if self._commit_by is not None and self._too_late():  # only once shutdown began
            self._count_failure()
            fail_futures(batch.records, _too_late_error())
            return
        with self._closing:
            if not self._closed:
                self._pending_bytes += batch.nbytes
                self._queue.put(batch.records)
                return
        fail_futures(batch.records, _closed_error())

    def _too_late(self) -> bool:
        """Whether a request's commit starting now might end after the shutdown's grace."""
        return self._commit_by is not None and self._monotonic() >= self._commit_by

    def _release(self, records: Sequence[Pending]) -> None:
        """Give back the share of the bound of records written or failed: before their
        futures resolve, so that a request answered has left the bound."""
        nbytes = 0
        for p in records:  # once: a group that failed after its release is not given twice
            nbytes += p.nbytes
            p.nbytes = 0
        with self._closing:
            self._pending_bytes -= nbytes

    def _run(self) -> None:
        use_batch_scheduling()  # waking the writer must not preempt the event loop
        # Outputs nobody waits for (shadow results) are held back to ride in the next
        # group's transaction: a commit of its own would cost as much as a whole group's.
        held: list[Pending] = []
        held_until = 0.0
        stopping = False
        while not stopping:
            timeout = max(0.0, held_until - time.monotonic()) if held else None
            try:
                first = self._queue.get(timeout=timeout)
            except queue.Empty:
                stopping = self._commit_or_fail(held)
                held = []
                continue
            if first is STOP:
                stopping = True
                group: list[Pending] = []
            else:
                assert isinstance(first, list)
                group = first
            n_requests = sum(p.request is not None for p in group)
            while n_requests < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is STOP:
                    stopping = True
                    continue
                assert isinstance(item, list)
                group.extend(item)
                n_requests += sum(p.request is not None for p in item)
            if group and not held:
                held_until = time.monotonic() + self._hold_s
            held.extend(group)
            if (
                n_requests
                or stopping
                or time.monotonic() >= held_until
                or sum(len(p.outputs) for p in held) >= self._max_batch
            ):
                if held and self._commit_or_fail(held):
                    stopping = True
                held = []
            # Let go of the group before waiting for the next: kept in these locals, the
            # last group (every request's inputs) stayed alive until another request came.
            first = item = None
            group = []

    def _commit_or_fail(self, group: list[Pending]) -> bool:
        """:meth:`_commit`, an unexpected error (a ``MemoryError`` building the group, a
        bug) failing the group instead of the writer thread: logged with its traceback,
        counted, its bytes given back and its requests failed with
        :class:`~tunewatch.StoreError` (500); the writer goes on with the next group. It
        killed the thread: every later request waited unanswered."""
        try:
            return self._commit(group)
        except Exception as exc:
            logger.exception(
                "writing a group of %d requests failed unexpectedly; they are failed, not recorded",
                sum(p.request is not None for p in group),
            )
            self._count_failure()
            self._release(group)
            fail_futures(group, StoreError(f"recording failed: {exc}"))
            return False

    def _commit(self, group: list[Pending]) -> bool:
        """Write ``group`` in one transaction and resolve its futures. If the store refuses
        the group, each record is written on its own, so one bad record fails alone and
        the requests that shared its commit are still stored and acknowledged. Not when
        the store is unavailable: every record would wait out the same failure, so the
        rest of the group and everything queued behind it fail with that error, untried.
        Once shutdown began, requests whose commit would start too late fail untried
        (:meth:`begin_shutdown`). Returns whether the stop marker was among what was failed
        or taken so."""
        stopping = False
        if self._commit_by is not None:  # only once shutdown began
            group, stopping = self._fail_late(group)
            if not group:
                return stopping
        error = self._write(group)
        if _worth_retrying(group, error):
            logger.warning("retrying the %d records of a failed group one by one", len(group))
            late: list[Pending] = []
            for i, p in enumerate(group):
                if p.request is not None and self._too_late():
                    late.append(p)
                    continue
                error = self._write([p])
                if isinstance(error, StoreUnavailableError):
                    self._fail_unavailable(group[i + 1 :], error)
                    break
            self._fail_requests(late)
        if isinstance(error, StoreUnavailableError):  # rare: the hot path pays one check
            return self._fail_queued(error) or stopping
        return stopping

    def _fail_late(self, group: list[Pending]) -> tuple[list[Pending], bool]:
        """Past the shutdown's deadline, fail the requests of ``group`` and of everything
        queued behind it, unwritten: none of their commits could end within the grace.
        Returns what is left to write (shadow outputs), and whether the stop marker was
        among what was taken."""
        if not self._too_late():
            return group, False
        queued, stopping = drain(self._queue)
        records = group + queued
        self._fail_requests([p for p in records if p.request is not None])
        return [p for p in records if p.request is None], stopping

    def _fail_requests(self, late: list[Pending]) -> None:
        if not late:
            return
        logger.error(
            "failing %d requests without writing them: the daemon is shutting down and their "
            "commit would not end before the requests in flight are cancelled",
            len(late),
        )
        self._count_failure()
        self._release(late)
        fail_futures(late, _too_late_error())

    def _fail_queued(self, error: StoreUnavailableError) -> bool:
        """Fail everything queued so far with ``error``, unwritten; whether the stop marker
        was among it. Records handed over later form the next group, which tries again."""
        failed, stopping = drain(self._queue)
        self._fail_unavailable(failed, error)
        return stopping

    def _fail_unavailable(self, failed: list[Pending], error: StoreUnavailableError) -> None:
        if not failed:
            return
        logger.debug(  # the outage is logged once, by ``_unavailable``; these are counted
            "failing %d records (%d requests) without writing them: the store is unavailable: %s",
            len(failed),
            sum(p.request is not None for p in failed),
            error,
        )
        self._count_failure()
        self._release(failed)
        fail_futures(failed, error)

    def _count_failure(self) -> None:
        if self._metrics is not None:
            self._metrics.record_failures.inc()

    def _write(self, group: list[Pending]) -> Exception | None:
        """One transaction for ``group``; returns its error (``None`` when it committed)
        and resolves its futures with it, unless it failed in a way worth retrying record
        by record (:func:`_worth_retrying`): then nothing is resolved."""
        requests = [p.request for p in group if p.request is not None]
        outputs = _winning_outputs(group)
        shadow_outputs = [o for p in group if p.request is None for o in p.outputs]
        tallies = [t for p in group for t in p.tallies]
        tallies += _answered_runs([o for p in group if p.request is not None for o in p.outputs])
        started = time.perf_counter()
        error: Exception | None = None
        inserted: list[bool] = []
        try:
            inserted = self._store.write_records(requests, outputs, shadow_outputs, tallies)
        except StoreError as exc:
            error = exc
        except Exception as exc:  # the writer must survive anything; log and fail the group
            logger.exception("group commit of %d requests failed unexpectedly", len(requests))
            error = StoreError(f"recording failed: {exc}")
        if isinstance(error, StoreUnavailableError):  # once an outage, not once a group
            self._unavailable.failed(error)
            self._unreached = False
            self._failed = (self._monotonic(), error)
        elif error is not None:
            logger.error("group commit of %d requests failed: %s", len(requests), error)
            if _worth_retrying(group, error):
                return error
        else:
            self._unavailable.succeeded()
            if requests:  # shadow outputs alone fit where a request's inputs may not
                self._failed = None
        if self._metrics is not None:
            self._metrics.record_commit_latency.observe(time.perf_counter() - started)
            if requests:  # a commit of shadow outputs alone holds no request
                self._metrics.record_batch_size.observe(len(requests))
            if error is not None:
                self._metrics.record_failures.inc()
        self._release(group)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool], bool]]] = {}
        results = iter(inserted)
        for p in group:
            if p.request is None or p.future is None or p.loop is None:
                continue
            ok = True if error is not None else next(results)
            by_loop.setdefault(p.loop, []).append((p.future, ok))
        notify(by_loop, error)
        return error


def _worth_retrying(group: list[Pending], error: Exception | None) -> bool:
    """Whether a failed group is retried record by record: not one record alone, and not
    when the store is unavailable (every record would wait out the same failure)."""
    return error is not None and len(group) > 1 and not isinstance(error, StoreUnavailableError)


def _winning_outputs(group: list[Pending]) -> list[OutputRecord]:
    """The outputs of the requests of ``group`` that can be stored: of an id sent twice in
    one group only the first copy's. The store keeps the first copy and refuses the others
    (409), but cannot tell whose outputs are whose: a refused copy's answer would be stored
    under the first copy's rows and block the real ones (outputs are unique per version)."""
    outputs: list[OutputRecord] = []
    seen: set[tuple[str, str]] = set()
    for p in group:
        request = p.request
        if request is None:
            continue
        key = (request.model, request.request_id)
        if key not in seen:
            seen.add(key)
            outputs.extend(p.outputs)
    return outputs


def _answered_runs(outputs: Sequence[OutputRecord]) -> list[RunTally]:
    """The runs of the versions that answered ``outputs`` (the champion, a live split's
    arm, a version a request named), one tally per version and role (failed runs have no
    output: the request path hands them over as tallies of their own; mirrored records'
    ``external`` outputs are no runs of ours)."""
    runs = Counter((o.model, o.version, o.role) for o in outputs if o.role != "external")
    return [
        RunTally(model=model, version=version, role=role, runs=n)
        for (model, version, role), n in runs.items()
    ]


def _closed_error() -> StoreUnavailableError:
    return StoreUnavailableError("the recorder is closed: the daemon is shutting down")


def _too_late_error() -> StoreUnavailableError:
    return StoreUnavailableError(
        "the daemon is shutting down: this request's record could not be committed before "
        "requests in flight are cut off; not recorded"
    )
