"""A model's standing re-tuning schedule: its runs and the catching up of what one left
undone (the leader's ``retune_schedule`` and ``retune_owed`` jobs)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tunewatch._actions import Dispatcher
from tunewatch._config import Config, ModelConfig
from tunewatch._errors import StoreError
from tunewatch._scheduler import due_after
from tunewatch.store import Store

logger = logging.getLogger(__name__)

# How often the leader tries again to queue a scheduled retune the quota suppressed, and
# how long after its due time a standing schedule's run that left no record is caught up.
OWED_RETRY_S = 30.0
#: The event recording when the leader first saw a model's standing schedule: the schedule
#: counts from it until its first run (a ``schedule`` event).
STARTED = "schedule_started"


def schedule_of(model: ModelConfig) -> float | str | None:
    """``model``'s standing schedule: a cron expression, seconds between runs, or None."""
    if model.tuning.schedule_cron:
        return model.tuning.schedule_cron
    if model.tuning.schedule_hours:
        return model.tuning.schedule_hours * 3600
    return None


def _payload(when: float | str) -> dict[str, float | str]:
    """The schedule ``when`` as its config key gives it, for the first-seen record."""
    return {"schedule_cron": when} if isinstance(when, str) else {"schedule_hours": when / 3600}


class StandingSchedule:
    """A model's standing re-tuning schedule (``tuning.schedule_hours`` or
    ``schedule_cron``): its runs, each recorded as a ``schedule`` event, and the catching
    up, by the leader's owed-retry job every ``OWED_RETRY_S``, of what a run left undone.

    A run the store failed under left no event: the schedule's own job runs next a period
    later, while a restarted leader, counting from the last event, would run it at once.
    So a run due (counted from the last event) more than ``OWED_RETRY_S`` ago runs when
    the owed-retry job next looks, after which ``recount(model)`` has the schedule's own
    job count from it, as a restarted leader would; and a run less than half a period
    after the last event is taken for the same run (the schedule's own job, late) and
    skipped. A run whose event was recorded but whose retune was not queued (the quota
    was full, the store failed) is retried (:meth:`Dispatcher.owed`).

    Before its first run the schedule counts from when the leader first saw it (a
    ``schedule_started`` event, see :meth:`last_run`), not from the model's registration,
    which retuned every model registered long ago at the deploy that added a schedule.
    """

    def __init__(
        self,
        store: Store,
        config: Config,
        dispatcher: Dispatcher,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        recount: Callable[[str], None] = lambda model: None,
    ) -> None:
        self.store = store
        self.config = config
        self.dispatcher = dispatcher
        self._now = now
        self._recount = recount
        self._lock = threading.Lock()  # a schedule's run and its catching up, in turn
        self._seeing = threading.Lock()  # a first-seen record read and written, in turn

    def run(self, model: str) -> None:
        """The schedule's own run (its APScheduler job)."""
        with self._lock:
            newest = self.store.list_events(model=model, type="schedule", limit=1)
            if newest and self._same_run(model, newest[0].created_at):
                logger.info(
                    "model=%s: the standing schedule's run was caught up at %s already",
                    model,
                    newest[0].created_at,
                )
                return
            self._fire(model)

    def catch_up(self, model: str) -> None:
        """Run what the schedule's last run left undone, if anything (see the class)."""
        with self._lock:  # not beside the schedule's own run of this model
            due = self._due(model)
            if due is not None and self._now() - due > timedelta(seconds=OWED_RETRY_S):
                logger.warning(
                    "model=%s: the standing schedule's run due at %s left no `schedule` "
                    "event (the store failed under it, or no process led); running it now",
                    model,
                    due,
                )
                try:
                    self._fire(model)
                finally:  # from the run caught up; if its event is lost too, from the
                    self._recount(model)  # missed one: the schedule's job tries at once
                return
            fired = self.dispatcher.owed(model, "schedule")
            if fired is not None:
                self.dispatcher.retry(model, fired)

    def last_run(self, model: str) -> datetime | None:
        """What the schedule of ``model`` counts from: its last run (``schedule`` event),
        or else when the leader first saw it (``schedule_started``), recorded now when
        nothing is: a schedule added to a model registered long ago, counted from the
        registration, retuned it at deploy, where cron or APScheduler would count a period
        from when the job was added. ``None`` when the store refused that record: the
        schedule then counts from now, as without a record, and the next call (the owed
        check's, within ``OWED_RETRY_S``) records it.

        Called on the leader only (its scheduling, the owed check and ``recount``), so
        only the leader writes the record. A schedule removed and added again counts from
        its old record; a schedule changed (7 days to 1) from its last run, as before."""
        last = self.store.list_events(model=model, type="schedule", limit=1)
        if last:
            return last[0].created_at
        return self._first_seen(model)

    def _first_seen(self, model: str) -> datetime | None:
        """When the leader first saw ``model``'s schedule, recording it now if never."""
        with self._seeing:  # the scheduling thread and the owed check: one record
            seen = self.store.list_events(model=model, type=STARTED, limit=1)
            if seen:
                return seen[0].created_at
            when = self._when(model)
            if when is None:
                return None
            try:
                started = self.store.add_event(model=model, type=STARTED, payload=_payload(when))
            except StoreError:
                logger.exception(
                    "model=%s: could not record when its standing schedule was first seen; "
                    "counting it from now",
                    model,
                )
                return None
        logger.info(
            "model=%s: standing schedule %r first seen; its first run is due at %s",
            model,
            when,
            due_after(when, started.created_at),
        )
        return started.created_at

    def _fire(self, model: str) -> None:
        self.dispatcher.handle(model, "schedule", {"reason": "standing schedule"})

    def _when(self, model: str) -> float | str | None:
        return schedule_of(self.config.model_or_default(model, self.store.get_model(model).task))

    def _due(self, model: str) -> datetime | None:
        """When the schedule's next run is due, counted from its last (or from when it was
        first seen); ``None`` without a schedule, without a record of either (the store
        refused it), or for a cron expression that fires no more."""
        when = self._when(model)
        last = None if when is None else self.last_run(model)
        return None if when is None or last is None else due_after(when, last)

    def _same_run(self, model: str, last: datetime) -> bool:
        """Whether a run now is the one recorded at ``last``: less than half the time
        from it to the next due run after it. The schedule's own job waits for one thread
        shared by every model (many due at one cron time, a leader taking over after
        downtime), so its run may come minutes after the catch-up ran it; a bound of
        ``OWED_RETRY_S`` took such a run for a new one, and retuned twice. After a catch-up
        the own job counts from it (``recount``), so its next run is a period on."""
        when = self._when(model)
        due = None if when is None else due_after(when, last)
        if due is None:
            return False
        return self._now() - last < (due - last) / 2
