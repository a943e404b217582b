"""What one Alertmanager delivery found of its models' retunes (:mod:`tunewatch.api._alerts`):
a model in its cool-down, the quota full, a retune it queued. Each decides what the
delivery does with the owed episodes it meets later."""

from __future__ import annotations

from tunewatch._actions import ActionOutcome


class Retunes:
    """What a delivery found of its models' retunes: a model in its cool-down, the quota
    full (daemon-wide), a retune it queued.

    A suppression stays for the rest of the delivery, so its other owed episodes of that
    model (of every model, for the quota) are left owed for the next delivery without a
    write: each cost three writing transactions (the claim, the job's insert under the job
    lock, the settle), and a 5,000-alert group redelivered in its model's cool-down took
    26 s on SQLite. A new episode is still claimed and dispatched (its alert and the
    suppression are recorded once), and tells the delivery of a suppression as well. A job
    that ends, or a cool-down that passes, while the delivery runs is acted on by the next
    one.

    A retune the delivery queued for a model settles the model's owed episodes it meets
    afterwards (each with an ``action_duplicate`` naming the job), suppressed or not: they
    were received before it was queued, so it retunes on what they fired for. Alerts of
    one model firing together (one per region) were owed a retune each, and each later
    delivery of the group queued one more per passed cool-down, for the same incident."""

    def __init__(self) -> None:
        self._cooling: set[str] = set()
        self._quota_full = False
        self._queued: dict[str, int] = {}

    def note(self, model: str, outcome: ActionOutcome) -> None:
        """Learn what a dispatch or a retry of ``model``'s retune came to."""
        if outcome.action == "retune" and outcome.status == "taken" and outcome.job_id:
            self._queued.setdefault(model, outcome.job_id)
        if outcome.status != "suppressed":
            return
        if outcome.cause == "cooldown":
            self._cooling.add(model)
        elif outcome.cause == "quota":
            self._quota_full = True

    def queued(self, model: str) -> int | None:
        """The job of the first retune of ``model`` the delivery queued, if it queued one."""
        return self._queued.get(model)

    def leaves_owed(self, model: str) -> bool:
        """Whether an owed episode of ``model`` is left owed, unclaimed: its retune is still
        suppressed, as the delivery found, and no retune it queued settles it."""
        return model not in self._queued and (self._quota_full or model in self._cooling)
