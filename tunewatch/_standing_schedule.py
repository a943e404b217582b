"""A model's standing re-tuning schedule: its runs and the catching up of what one left
undone (the leader's ``retune_schedule`` and ``retune_owed`` jobs)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tunewatch._actions import Dispatcher
from tunewatch._config import Config, ModelConfig
from tunewatch._scheduler import due_after
from tunewatch.store import Store

logger = logging.getLogger(__name__)

# How often the leader tries again to queue a scheduled retune the quota suppressed, and
# how long after its due time a standing schedule's run that left no record is caught up.
OWED_RETRY_S = 30.0


def schedule_of(model: ModelConfig) -> float | str | None:
    """``model``'s standing schedule: a cron expression, seconds between runs, or None."""
    if model.tuning.schedule_cron:
        return model.tuning.schedule_cron
    if model.tuning.schedule_hours:
        return model.tuning.schedule_hours * 3600
    return None


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

    def last_run(self, model: str) -> datetime:
        """When the schedule last fired for ``model`` (its ``schedule`` event), or when the
        model was registered: the schedule counts from there."""
        last = self.store.list_events(model=model, type="schedule", limit=1)
        return last[0].created_at if last else self.store.get_model(model).created_at

    def _fire(self, model: str) -> None:
        self.dispatcher.handle(model, "schedule", {"reason": "standing schedule"})

    def _when(self, model: str) -> float | str | None:
        return schedule_of(self.config.model_or_default(model, self.store.get_model(model).task))

    def _due(self, model: str) -> datetime | None:
        """When the schedule's next run is due, counted from its last; ``None`` without a
        schedule (or for a cron expression that fires no more)."""
        when = self._when(model)
        return None if when is None else due_after(when, self.last_run(model))

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
