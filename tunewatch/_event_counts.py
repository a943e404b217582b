"""``tunewatch_events_total`` and ``tunewatch_notifications_total``, counted from the
store by the scheduler's leader: a leader task (:class:`tunewatch._scheduler.Task`) that
reads the events stored since the last it read, whichever process recorded them.

Counted in the process that decided them, a ``do: notify`` decided by ``tunewatch
compare`` or ``tunewatch evaluate`` (a command's throwaway registry) or by a replica no
Prometheus scrapes reached nobody: the daemon's ``/metrics`` stayed at 0 and the shipped
``TunewatchNotification`` rule never fired. Every ``COUNTED_EVENTS`` event counts in
``tunewatch_events_total{model, type}``, and every ``action_taken`` whose action is
``notify`` in ``tunewatch_notifications_total{model, event}`` (its trigger event).

The task goes forward by event id, at most ``BATCH`` events a run. A process that takes
the lease starts at the events stamped in the last ``WINDOW`` (the shipped rule's
``increase(...[15m])``), by its clock: a notification decided just before a failover
still alerts, and one the previous leader counted may be counted again; the shipped
rules only ask whether the counters rose. A process that loses the lease stops counting
(the scheduler runs no task of a process that does not hold it).

Ids are handed out when an event is inserted, not when it commits: on PostgreSQL an
append still committing is read after one of a higher id. The ids read past (a gap) are
looked for again in each run for ``GAP_WAIT_S``; one that never commits (rolled back) is
then forgotten.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from monitor import ServingMetrics
from tunewatch._actions import COUNTED_EVENTS
from tunewatch.store import Event, Store

if TYPE_CHECKING:  # the scheduler imports this module: its Task is read at the call
    from tunewatch._scheduler import Task

logger = logging.getLogger(__name__)

#: The task's name (its ``<task>_failed`` and ``<task>_skipped`` outcomes under model ``-``).
COUNT_TASK = "count_events"
#: How often the leader reads the events stored since: about as often as Prometheus scrapes.
COUNT_INTERVAL_S = 5.0
#: How far back a process that takes the lease starts: the shipped rule's window.
WINDOW = timedelta(minutes=15)
#: The events read at most a run.
BATCH = 500
#: How long the ids read past are looked for again (an append committing late).
GAP_WAIT_S = 60.0
#: The ids read past held at most (the newest): each is in the next runs' queries.
MAX_GAPS = 200

#: The events counted (:data:`tunewatch._actions.COUNTED_EVENTS`: the trigger events and
#: the rollback watch's own, exported at 0 from the same tuple).
_COUNTED = frozenset(COUNTED_EVENTS)


class EventCounts:
    """Counts the events ``store`` holds into ``metrics``, from the last ``WINDOW`` by
    ``now`` when it (re)starts; ``clock`` (monotonic seconds) times its gaps."""

    def __init__(
        self,
        store: Store,
        metrics: ServingMetrics,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self._now = now
        self._clock = clock
        self._after: int | None = None  # the last id read; None: start over
        self._gaps: dict[int, float] = {}  # ids read past, by when
        self._restart = threading.Lock()  # guards _start_over only: taken by the lease
        self._start_over = True
        self._polling = threading.Lock()  # one run at a time (a test's, the task's)

    def start_over(self) -> None:
        """This process took the lease: the next run starts at the events of the last
        ``WINDOW``. Called on the lease's thread, which must not wait for the store: a run
        going on now ends as it was, and the next one starts over."""
        with self._restart:
            self._start_over = True

    def poll(self) -> int:
        """Count the events stored since the last run (at most ``BATCH``) and those read
        past before that have committed since; returns how many were read."""
        with self._polling:
            with self._restart:
                if self._start_over:  # kept None until a read starts it: one may fail
                    self._after, self._start_over = None, False
            if self._after is None:
                since = self._now() - WINDOW
                self._after = self.store.last_event_id_before(since)
                self._gaps.clear()
                logger.info(
                    "counting the events stored after event %d (those since %s)",
                    self._after,
                    since.isoformat(),
                )
            now = self._clock()
            self._gaps = {i: t for i, t in self._gaps.items() if now - t < GAP_WAIT_S}
            read = self.store.events_after(self._after, also=sorted(self._gaps), limit=BATCH)
            for event in read:
                if event.id > self._after:
                    first = max(self._after + 1, event.id - MAX_GAPS)
                    self._gaps.update((i, now) for i in range(first, event.id))
                    self._after = event.id
                elif self._gaps.pop(event.id, None) is None:
                    continue  # not one this run asked for
                self._count(event)
            for stale in sorted(self._gaps)[:-MAX_GAPS]:
                del self._gaps[stale]
            return len(read)

    def _count(self, event: Event) -> None:
        if event.model is None:
            return
        if event.type in _COUNTED:
            self.metrics.events.labels(event.model, event.type).inc()
        elif event.type == "action_taken" and event.payload.get("action") == "notify":
            trigger = event.payload.get("trigger")
            if isinstance(trigger, str) and trigger in _COUNTED:
                self.metrics.notifications.labels(event.model, trigger).inc()

    def task(self) -> Task:
        """The leader's task running :meth:`poll` every ``COUNT_INTERVAL_S``."""
        from tunewatch._scheduler import Task

        return Task(COUNT_TASK, COUNT_INTERVAL_S, self.poll)
