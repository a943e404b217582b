"""Events to actions: each model's triggers decide what an event causes, subject to
per-model cool-downs and a daemon-wide quota on concurrent tuning jobs. Every action,
taken or suppressed, is recorded as an event with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from monitor import ServingMetrics
from tunewatch._config import Config
from tunewatch._errors import ConflictError
from tunewatch.store import Store

logger = logging.getLogger(__name__)


# The outcomes that settle a trigger (see ActionOutcome.final): an action taken, one taken
# before (a duplicate), or none configured. A suppressed action is still owed.
SETTLED: tuple[str, ...] = ("taken", "duplicate", "none")


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    action: str
    status: Literal["taken", "suppressed", "duplicate", "none"]
    reason: str
    job_id: int | None = None

    @property
    def final(self) -> bool:
        """Whether the trigger is settled: the action was taken, had been taken already,
        or there is none. A suppressed action (quota, cool-down) is still owed, and the
        same trigger seen again later may get it."""
        return self.status in SETTLED

    def describe(self) -> str:
        job = f" (job {self.job_id})" if self.job_id is not None else ""
        return f"{self.action} {self.status}{job}: {self.reason}"


class Dispatcher:
    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        metrics: ServingMetrics | None = None,
        clock: Any = None,
    ) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics
        self._clock = clock

    def _now(self) -> datetime:
        return self._clock() if self._clock is not None else datetime.now(UTC)

    def handle(
        self,
        model: str,
        event: str,
        payload: Mapping[str, Any],
        *,
        dedupe_key: str | None = None,
        actor: str = "system",
    ) -> ActionOutcome:
        """Record ``event`` for ``model`` and carry out (or suppress) its action; raises
        ``NotFoundError`` for a model that is not registered, recording nothing."""
        self.store.get_model(model)
        self.store.add_event(model=model, type=event, payload=dict(payload))
        if self.metrics is not None:
            self.metrics.events.labels(model, event).inc()
        trigger = self.config.trigger(model, event)
        if trigger is None:
            return ActionOutcome("none", "none", f"no trigger configured for {event}")
        if trigger.do == "retune":
            outcome = self._retune(model, event, payload, trigger.cooldown_minutes, dedupe_key)
        else:
            # promote and notify are carried out by their owners (the comparison loop
            # promotes with governance; notify is the event itself).
            outcome = ActionOutcome(trigger.do, "taken", f"{event} recorded for {trigger.do}")
        self.store.add_event(
            model=model,
            type=f"action_{outcome.status}",
            payload={
                "action": outcome.action,
                "trigger": event,
                "reason": outcome.reason,
                "job": outcome.job_id,
                "actor": actor,
            },
        )
        logger.info("model=%s event=%s -> %s", model, event, outcome.describe())
        return outcome

    def _retune(
        self,
        model: str,
        event: str,
        payload: Mapping[str, Any],
        cooldown_min: float,
        dedupe_key: str | None,
    ) -> ActionOutcome:
        if dedupe_key is not None:
            existing = [
                j for j in self.store.list_jobs(model=model, limit=50) if j.dedupe_key == dedupe_key
            ]
            if existing:
                return ActionOutcome(
                    "retune",
                    "duplicate",
                    f"already handled by job {existing[0].id}",
                    existing[0].id,
                )
        champion = self.store.champion(model)
        try:
            job, created = self.store.create_job(
                model=model,
                kind="retune",
                trigger={"event": event, **dict(payload)},
                # the champion whose reference the job trains on, whoever serves later
                spec={"champion_version": champion.version if champion else None},
                dedupe_key=dedupe_key,
                max_active=self.config.tuning.max_concurrent_jobs,
                # checked with the insert, so that simultaneous triggers queue one job
                cooldown_since=(
                    self._now() - timedelta(minutes=cooldown_min) if cooldown_min > 0 else None
                ),
            )
        except ConflictError as exc:
            if exc.code == "cooldown":
                reason = f"{exc.message} ({cooldown_min} min)"
            elif exc.code == "quota":
                reason = exc.message
            else:
                reason = f"could not queue: {exc.message}"
            return ActionOutcome("retune", "suppressed", reason)
        if not created:
            return ActionOutcome("retune", "duplicate", f"already handled by job {job.id}", job.id)
        return ActionOutcome("retune", "taken", f"queued job {job.id} for {event}", job.id)
