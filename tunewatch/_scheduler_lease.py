"""The scheduler's lease in the store: which one process leads.

Every process's scheduler renews the lease ``LEASE`` every third of its ``lease_ttl_s``,
on a thread of its own; the process holding it runs the scheduled work and exports the
evaluation figures (``ServingMetrics.exports_evaluation``). :class:`Lease` is this
process's side of it: whether it leads, until when by its own clock, and the lock under
which a renewal and the release at shutdown take turns. A renewal the store fails keeps
the lease (and the figures) while it is unexpired by this process's clock; once it has
run out, the process acts as a follower and drops the figures at every tick. Only this
process's lease is ever released, never another holder's.

With ``metrics``, the process says whether it leads: ``tunewatch_scheduler_leader`` reads
:meth:`Lease.holds` at each scrape (exported once the scheduler starts), so a leader whose
renewals stalled says 0 once its lease runs out, as its evaluation figures go then too
(``ServingMetrics.exports_evaluation``); ``tunewatch_scheduler_lease_renewed_timestamp_seconds``
is when it last renewed the lease. A follower logs the holder it follows, once a holder.

The scheduler that adds the leader's jobs is :mod:`tunewatch._scheduler` (which
re-exports ``LEASE``); the thread that renews the lease :mod:`tunewatch._scheduler_renewal`;
the jobs are :mod:`tunewatch._scheduler_jobs`.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from monitor import ServingMetrics
from tunewatch._errors import StoreError
from tunewatch._outage_log import OutageLog
from tunewatch.store import Store

# The scheduler's logger, not this module's: its operators (and its tests) filter on it.
logger = logging.getLogger("tunewatch._scheduler")

LEASE = "scheduler"


class Renewal(enum.Enum):
    """What a renewal (:meth:`Lease.renew`) found."""

    KEPT = "kept"  # the store failed within the lease: still this process's, as it was
    GAINED = "gained"  # this process took the lease: it leads from now
    RENEWED = "renewed"  # it led and leads on
    FOLLOWS = "follows"  # another process holds the lease, or may: this one's ran out


class Lease:
    """This process's hold on the scheduler lease ``LEASE`` in ``store``, as ``holder``,
    for ``ttl_s`` a renewal. ``clock`` times it (monotonic seconds), ``now`` the outages
    of its renewal; with ``metrics``, whether they export the evaluation figures follows
    it. :meth:`renew` and :meth:`release` are called with :attr:`lock` held;
    :meth:`hold` and :meth:`release_by` (at shutdown) take it themselves."""

    def __init__(
        self,
        *,
        store: Store,
        holder: str,
        ttl_s: float,
        clock: Callable[[], float],
        now: Callable[[], datetime],
        metrics: ServingMetrics | None,
    ) -> None:
        self.holder = holder
        self.leader = False
        self.lock = threading.Lock()  # a renewal and the release at shutdown, in turn
        self.abandoned = False  # shutdown gave up waiting for a renewal: it releases
        self._store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._now = now
        self._metrics = metrics
        self._following: str | None = None  # the holder this follower last logged
        # when the lease this process last took or renewed expires, by ``clock``: counted
        # from before the renewal was sent, so never later than the store's expiry
        self._until: float | None = None
        self._outage = OutageLog(
            logger,
            what="scheduler lease renewal",
            retry="acting as a follower once the lease runs out, retrying every tick",
            now=now,
        )

    def holds(self) -> bool:
        """Whether the lease this process last took or renewed is unexpired by its clock."""
        until = self._until
        return until is not None and self._clock() < until

    def renew(self) -> Renewal:
        """Take the lease, or renew it; a store that fails is logged once an outage, not
        at every tick."""
        ttl = self._ttl_s
        sent = self._clock()
        try:
            leader = self._store.acquire_lease(LEASE, self.holder, ttl_s=ttl)
        except Exception as exc:  # the store is down: act as a follower until it is back
            self._outage.failed(exc)  # once an outage, not at every tick
            if self.holds():
                # Still ours until it runs out: keep the jobs (their starts check the
                # lease) and their times, and try again at the next tick. Dropped and
                # added anew when the store came back, each counted from then: outages
                # shorter than the lease postponed every evaluation again and again.
                logger.debug(
                    "the scheduler lease is this process's for %.1f s more",
                    (self._until or sent) - sent,
                )
                return Renewal.KEPT
            leader = False
        else:
            self._outage.succeeded()
            if leader:
                self._renewed()
            else:
                self._follow()
        if leader and not self.leader:
            logger.info("this process (%s) now leads the scheduler", self.holder)
        if not leader and self.leader:
            logger.warning("this process (%s) lost the scheduler lease", self.holder)
        if not leader and self._metrics is not None:
            # Another process leads and exports the evaluation figures, or may: this one's
            # lease ran out with the store out of reach (a partition), and a process that
            # took it over exports its own (a cleared alarm: 0), which the rules' `max by
            # (model)` read under this one's stale 1. Cleared at every tick, not once: an
            # evaluation still running here, or one asked for through the API, would export
            # them again. A failed renewal within the lease returned above, keeping them: a
            # store hiccup would make the alerts resolve and fire again as new episodes.
            self._metrics.clear_evaluation()
        gained = leader and not self.leader
        self.leader = leader
        self._until = sent + ttl if leader else None
        if self._metrics is not None:
            self._metrics.exports_evaluation = leader
        if gained:
            return Renewal.GAINED
        return Renewal.RENEWED if leader else Renewal.FOLLOWS

    def hold(self, deadline: float) -> None:
        """Renew the lease while shutdown waits for running jobs (no jobs are added),
        waiting for :attr:`lock` (taken here) until ``deadline`` (``time.monotonic()``)."""
        if not self.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return
        try:
            if self.leader:
                sent = self._clock()
                ttl = self._ttl_s
                self.leader = self._store.acquire_lease(LEASE, self.holder, ttl_s=ttl)
                self._until = sent + ttl if self.leader else None
                if self.leader:
                    self._renewed()
                if self._metrics is not None:
                    self._metrics.exports_evaluation = self.leader
        except Exception:  # shutting down: log; the lease may expire under the job
            logger.exception("scheduler lease renewal during shutdown failed")
        finally:
            self.lock.release()

    def _renewed(self) -> None:
        """This process took or renewed the lease: when, for its gauge."""
        self._following = None  # a holder it follows after this is news again
        if self._metrics is not None:
            self._metrics.scheduler_lease_renewed.set(self._now().timestamp())

    def _follow(self) -> None:
        """Another process holds the lease: log which, the first time it is seen."""
        try:
            holder = self._store.lease_holder(LEASE)
        except StoreError:  # only a log line lost: the renewal's own outcome stands
            logger.debug("could not read the scheduler lease's holder", exc_info=True)
            return
        if holder is not None and holder != self._following:
            self._following = holder
            logger.info(
                "this process (%s) does not lead the scheduler: following %s",
                self.holder,
                holder,
            )

    def release(self, *, maybe_taken: bool = False) -> None:
        """Give the lease up (the lease lock held); with ``maybe_taken``, also when this
        process does not count itself the leader (a renewal that failed after taking it).
        Only this process's lease is released, never another holder's."""
        if self.leader or maybe_taken:
            try:
                self._store.release_lease(LEASE, self.holder)
            except Exception:  # shutting down: log and let the lease expire on its own
                logger.exception("could not release the scheduler lease")
            self.leader = False
            self._until = None
            if self._metrics is not None:
                self._metrics.exports_evaluation = False

    def release_by(self, deadline: float) -> None:
        """Give the lease up at shutdown, waiting for :attr:`lock` (taken here) until
        ``deadline`` (``time.monotonic()``). A renewal hanging in the store past it lets
        the lease go itself when it returns (:attr:`abandoned`)."""
        if not self.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            self.abandoned = True
            if not self.lock.acquire(blocking=False):  # (it may have returned since)
                logger.warning(
                    "a scheduler lease renewal is still waiting on the store; it releases "
                    "the lease when it returns"
                )
                return
        try:
            self.release()
        finally:
            self.lock.release()
