"""Acting on decided comparisons: guardrails first, then the trigger's action through
the dispatcher and governance (which may open an approval instead of promoting)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from tunewatch._errors import ConflictError
from tunewatch.comparison._config import ComparisonConfig
from tunewatch.comparison._guardrails import Guardrails
from tunewatch.comparison._results import (
    ACTOR,
    Action,
    needs_action,
    requested,
)
from tunewatch.store import Event, Store
from tunewatch.store._comparisons import (
    ComparisonStore,
    ComparisonTestRow,
    Replaces,
)

if TYPE_CHECKING:  # _config nests ComparisonConfig: import nothing that imports _config
    from tunewatch._actions import Dispatcher
    from tunewatch._config import Config

logger = logging.getLogger(__name__)

# An unsettled test's event is among its type's newest: each test decided so since has
# recorded one event (once, the quota holding its retune or not).
_HANDED_OVER_SCAN = 200


class Decisions:
    """What a decided test does: guardrails, the dispatcher, governance, the lineup."""

    def __init__(
        self,
        store: Store,
        config: Config,
        comparisons: ComparisonStore,
        *,
        dispatcher: Dispatcher,
        on_lineup_change: Callable[[str], object] | None,
    ) -> None:
        self.store = store
        self.config = config
        self.comparisons = comparisons
        self.dispatcher = dispatcher
        self.on_lineup_change = on_lineup_change
        self.guardrails = Guardrails(store, config, comparisons).check

    def act(
        self,
        model: str,
        test: ComparisonTestRow,
        settings: ComparisonConfig,
        *,
        blocked: bool,
        requested_by: str | None = None,
    ) -> tuple[Action, tuple[str, ...]]:
        """Act on the decided ``test`` once; what it records of the decision names
        ``requested_by``, who asked for the run, if anyone did (:func:`requested`).
        Outcomes are settled in the store by a compare-and-set: a run that finds the test
        settled by another — a second process comparing the same model — records nothing
        and returns ``"none"``. A refusal or a closing is settled before what it records;
        a promotion's outcome is known only once it is tried (the champion's
        compare-and-set decides which of two runs promotes), and its ``challenger_better``
        event, recorded before, is recorded once (:meth:`_record_better`); a notice
        (notify, retune) is settled after it is handed over, so that a failure between
        the two sends it again rather than never (see :meth:`_notify`)."""
        look = self.comparisons.latest_look(test.id)
        evidence: dict[str, Any] = {
            "test_id": test.id,
            "kind": test.kind,
            "champion_version": test.champion_version,
            "challenger_version": test.challenger_version,
            "n": test.n,
            "correction": test.correction,
            **requested(requested_by),
        }
        if look is not None:
            evidence.update(
                method=look.method,
                estimate=look.estimate,
                ci=[look.ci_low, look.ci_high],
                p_value=look.p_value,
                adjusted_p_value=look.adjusted_p_value,
                family_size=look.family_size,
            )
        if test.decision == "challenger_worse":
            return self._notify(model, test, evidence, actor="system")
        # Read now, not at the start of the run: an earlier decision of the same run (or
        # another process) may have promoted, and this test never saw the new champion.
        champion = self.store.champion(model)
        if champion is None or test.champion_version != champion.version:
            if champion is not None and champion.version == test.challenger_version:
                return self._close(model, test, f"v{champion.version} is the champion already")
            return self._close(model, test, "the champion changed before promotion")
        # An operator may have retired (or rolled back) the winner since it was decided,
        # e.g. while a sample-ratio mismatch held its promotion: it is not promoted.
        stage = self.store.get_version(model, test.challenger_version).stage
        if stage != "shadow":
            return self._close(model, test, _left_shadow(test, stage))
        if blocked:
            why = "sample ratio mismatch in the live split"
            if self._settle(test, "decided", {"action": "blocked_srm"}, replaces="unset"):
                self.store.add_event(
                    model=model, type="promotion_blocked", payload={**evidence, "reason": why}
                )
            elif not _blocked(self.comparisons.get_test(test.id)):
                return self._lost(model, test)
            return "blocked_srm", (why,)
        trigger = self._trigger(model, test.decision)
        # the replay only for a promotion: a notice does not act on the ratio
        guard = self.guardrails(
            model, champion, test.challenger_version, settings, replay=trigger == "promote"
        )
        evidence["guardrails"] = {"passed": guard.passed, "violations": list(guard.violations)}
        noted: dict[str, Any] = {}
        if guard.notes:
            evidence["guardrails"]["notes"] = noted["guardrail_notes"] = list(guard.notes)
            logger.info(
                "model=%s version=%d champion=%d test=%d guardrail notes: %s",
                model,
                test.challenger_version,
                test.champion_version,
                test.id,
                "; ".join(guard.notes),
            )
        if trigger != "promote":
            return self._notify(model, test, evidence, actor=ACTOR)
        if not guard.passed:
            refused = {"action": "refused", "violations": list(guard.violations), **noted}
            if not self._settle(test, "decided", refused):
                return self._lost(model, test)
            self.dispatcher.handle(
                model,
                "challenger_better",
                evidence,
                dedupe_key=f"comparison:{test.id}",
                actor=ACTOR,
            )
            self._promotion(model, "refused", "guardrails: " + "; ".join(guard.violations))
            self.store.add_event(
                model=model,
                type="promotion_refused",
                payload={**evidence, "violations": list(guard.violations)},
            )
            logger.warning(
                "model=%s version=%d champion=%d test=%d won but breaks guardrails: %s",
                model,
                test.challenger_version,
                test.champion_version,
                test.id,
                "; ".join(guard.violations),
            )
            return "refused", guard.violations
        # The promotion's outcome is known only once it is tried; the promotion itself is
        # a compare-and-set on the champion and on the winner's stage, so of two runs here
        # one promotes, and a winner an operator retired since the check above is neither
        # promoted nor put to an approver. Read the test again first: another process may
        # have acted on it during this run; its event is recorded once (_record_better).
        if not needs_action(self.comparisons.get_test(test.id)):
            return self._lost(model, test)
        self._record_better(model, test, evidence)
        reason = (
            f"comparison {test.id}: v{test.challenger_version} beat v{test.champion_version} "
            f"({test.kind}, n={test.n}, p={evidence.get('adjusted_p_value')})"
        )
        if requested_by is not None:  # the audit entry and the action event name them
            reason += f"; the run was requested by {requested_by!r}"
        from tunewatch import _governance as governance

        try:
            promoted = governance.promote(
                self.store,
                self.config,
                model,
                test.challenger_version,
                actor=ACTOR,
                reason=reason,
                expected_champion=test.champion_version,
                expected_stage="shadow",
            )
        except ConflictError as exc:
            if exc.code == "stage_changed":  # an operator moved the winner during this run
                return self._stage_changed(model, test, exc)
            if exc.code == "champion_changed":  # another promotion won meanwhile
                now = self.store.champion(model)
                if now is not None and now.version == test.challenger_version:
                    return self._lost(model, test)  # another run promoted this very version
                closed = {"action": "closed", "reason": exc.message}
                if not self._settle(test, "closed", closed):
                    return self._lost(model, test)
                self._promotion(model, "refused", exc.message)
                return "closed", (exc.message,)
            failed = {"action": "promotion_failed", "error": exc.message}
            if not self._settle(test, "decided", failed):
                return self._lost(model, test)
            self._promotion(model, "refused", exc.message)
            logger.warning(
                "model=%s version=%d test=%d promotion failed: %s",
                model,
                test.challenger_version,
                test.id,
                exc.message,
            )
            self.store.add_event(
                model=model,
                type="promotion_failed",
                payload={**evidence, "error": exc.message, "code": exc.code},
            )
            return "promotion_failed", (exc.message,)
        if promoted.status == "pending_approval":
            assert promoted.approval is not None
            pending = {"action": "pending_approval", "approval": promoted.approval.id, **noted}
            if not self._settle(test, "decided", pending):
                return self._lost(model, test)
            self._promotion(
                model,
                "pending_approval",
                f"approval {promoted.approval.id}: " + "; ".join(promoted.approval.rules),
            )
            return "pending_approval", promoted.approval.rules
        # Only this run promoted (the champion's compare-and-set): its outcome stands over
        # a "champion changed" another run may have written meanwhile.
        self._settle(
            test,
            "decided",
            {"action": "promoted", "guardrails": "passed", **noted},
            replaces="any",
        )
        self._promotion(model, "taken", reason)
        if self.on_lineup_change is not None:
            self.on_lineup_change(model)
        return "promoted", (reason,)

    def _notify(
        self, model: str, test: ComparisonTestRow, evidence: dict[str, Any], *, actor: str
    ) -> tuple[Action, tuple[str, ...]]:
        """Hand a decision whose trigger is not a promotion (notify, retune) to the
        dispatcher, then settle the test: at least once, not at most — a crash between the
        two sends it again at the next run rather than losing it (a retune's job is
        deduplicated by the test). A retune the quota suppressed is still owed: the test
        is left unsettled, and each run tries again until the job is queued; one a
        cool-down suppressed is settled, the model having just been retuned. The event
        and its suppression are recorded once: a later run retries the retune of the event
        this test recorded (:meth:`~tunewatch._actions.Dispatcher.retry`, still
        deduplicated by the test), which records nothing while the quota holds it and the
        outcome once it settles. A run that finds the test settled sends nothing; two
        processes racing past that read may both record the event."""
        if not needs_action(self.comparisons.get_test(test.id)):
            return self._lost(model, test)
        dedupe_key = f"comparison:{test.id}"
        fired = self._handed_over(model, test)
        if fired is not None:
            outcome = self.dispatcher.retry(model, fired, actor=actor, dedupe_key=dedupe_key)
        else:
            outcome = self.dispatcher.handle(
                model, test.decision, evidence, dedupe_key=dedupe_key, actor=actor
            )
        if outcome.cause == "quota":
            logger.info(
                "model=%s version=%d test=%d: %s; tried again at the next run",
                model,
                test.challenger_version,
                test.id,
                outcome.describe(),
            )
            return "none", (f"{outcome.describe()}; tried again at the next run",)
        self._settle(test, "decided", {"action": "notified", "trigger": outcome.action})
        return "notified", (outcome.describe(),)

    def _handed_over(self, model: str, test: ComparisonTestRow) -> Event | None:
        """The event an earlier run recorded for the unsettled ``test`` when its trigger is
        a retune, whose retune is still owed (the quota held it, or the run failed before
        settling the test); ``None`` when there is none to retry, and the event is to be
        recorded. Matched by the test its payload names: several tests may be decided so
        at once. One older than its type's newest :data:`_HANDED_OVER_SCAN` is not found,
        and the event is recorded again: at least once, not at most."""
        if self._trigger(model, test.decision) != "retune":
            return None
        return self._recorded(model, test, test.decision)

    def _record_better(self, model: str, test: ComparisonTestRow, evidence: dict[str, Any]) -> None:
        """Record the ``challenger_better`` event of ``test``, about to be promoted, unless
        a run recorded it already: two processes acting on one decided test at once
        recorded it twice (the test is settled only after the promotion, which only one
        of them makes), and a run whose process died after the event and before the
        promotion leaves it for the next run, which promotes without recording it again.

        The newest event of the type is read, then the test's own sought among the newest
        (:meth:`_recorded`), then the event appended only if that newest is still the
        newest (:meth:`Dispatcher.handle_after`): one recorded by another run in between
        is found by the next turn. One older than the type's newest
        :data:`_HANDED_OVER_SCAN` is not found, and the event is recorded again."""
        while True:
            newest = self.store.list_events(model=model, type="challenger_better", limit=1)
            if self._recorded(model, test, "challenger_better") is not None:
                return
            last = newest[0] if newest else None
            recorded = self.dispatcher.handle_after(
                model, "challenger_better", evidence, last=last, actor=ACTOR
            )
            if recorded is not None:
                return

    def _recorded(self, model: str, test: ComparisonTestRow, event: str) -> Event | None:
        """The ``event`` an earlier run recorded for ``test``, matched by the test its
        payload names (several tests may be decided at once) among its type's newest
        :data:`_HANDED_OVER_SCAN`."""
        fired = self.store.list_events(model=model, type=event, limit=_HANDED_OVER_SCAN)
        return next((e for e in fired if e.payload.get("test_id") == test.id), None)

    def _trigger(self, model: str, event: str) -> str:
        """What the model's trigger for ``event`` does (``"none"`` without one)."""
        trigger = self.config.trigger(model, event)
        return "none" if trigger is None else trigger.do

    def _settle(
        self,
        test: ComparisonTestRow,
        status: Literal["decided", "closed"],
        outcome: dict[str, Any],
        *,
        replaces: Replaces = "retryable",
    ) -> bool:
        """Settle ``test``; ``False`` when another run settled it first."""
        settled = self.comparisons.settle_test(
            test.id, status=status, outcome=outcome, replaces=replaces
        )
        return settled is not None

    def _close(
        self, model: str, test: ComparisonTestRow, why: str
    ) -> tuple[Action, tuple[str, ...]]:
        if not self._settle(test, "closed", {"action": "closed", "reason": why}):
            return self._lost(model, test)
        return "closed", (why,)

    def _stage_changed(
        self, model: str, test: ComparisonTestRow, exc: ConflictError
    ) -> tuple[Action, tuple[str, ...]]:
        """The store refused the promotion (or its approval request): the winner left
        shadow after :meth:`act` checked it, an operator's retirement landing during the
        run. Closed as the check closes it (with the store's message as the reason when
        the version is back in shadow by now), and the deferred promotion recorded
        refused."""
        stage = self.store.get_version(model, test.challenger_version).stage
        why = exc.message if stage == "shadow" else _left_shadow(test, stage)
        if not self._settle(test, "closed", {"action": "closed", "reason": why}):
            return self._lost(model, test)
        self._promotion(model, "refused", why)
        logger.warning(
            "model=%s version=%d test=%d not promoted: %s",
            model,
            test.challenger_version,
            test.id,
            why,
        )
        return "closed", (why,)

    def _lost(self, model: str, test: ComparisonTestRow) -> tuple[Action, tuple[str, ...]]:
        """Another run acted on ``test`` first: this one records nothing."""
        current = self.comparisons.get_test(test.id)
        done = (current.outcome or {}).get("action", current.status)
        logger.info(
            "model=%s version=%d test=%d: another comparison run acted first (%s)",
            model,
            test.challenger_version,
            test.id,
            done,
        )
        return "none", (f"another comparison run acted on test {test.id} first: {done}",)

    def _promotion(
        self, model: str, status: Literal["taken", "refused", "pending_approval"], reason: str
    ) -> None:
        """Record what became of the ``do: promote`` the dispatcher deferred to us."""
        self.dispatcher.record_promotion(model, status, reason, actor=ACTOR)

    # -- rollback watch -------------------------------------------------------------------------


def _left_shadow(test: ComparisonTestRow, stage: str) -> str:
    """Why a winner that is not in shadow (an operator retired or rolled it back since it
    was decided) is not promoted."""
    return (
        f"v{test.challenger_version} is {stage}, not in shadow: only a shadow challenger "
        "is promoted"
    )


def _blocked(test: ComparisonTestRow) -> bool:
    return test.outcome is not None and test.outcome.get("action") == "blocked_srm"
