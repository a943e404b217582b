"""The rollback watch that follows every promotion."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np

from monitor.objectives import Objective
from shadow.stats import (
    TwoSampleLook,
    TwoSampleSequentialTest,
)
from tunewatch._errors import ConflictError
from tunewatch.comparison._config import ComparisonConfig
from tunewatch.comparison._results import ACTOR, ComparisonResult, make_result
from tunewatch.store import Store
from tunewatch.store._comparisons import (
    ComparisonLookRow,
    ComparisonStore,
    ComparisonTestRow,
    LookValues,
)

logger = logging.getLogger(__name__)


class RollbackWatch:
    """After a promotion: the new champion's realised losses against the previous
    champion's recorded losses (unpaired, always valid); degradation rolls back."""

    def __init__(
        self,
        store: Store,
        comparisons: ComparisonStore,
        *,
        clock: Callable[[], datetime],
        on_lineup_change: Callable[[str], object] | None,
    ) -> None:
        self.store = store
        self.comparisons = comparisons
        self.clock = clock
        self.on_lineup_change = on_lineup_change

    def run(
        self, model: str, settings: ComparisonConfig, objective: Objective
    ) -> ComparisonResult | None:
        rules, max_batch = settings.rollback, settings.max_batch
        events = self.store.list_events(model=model, type="promoted", limit=1)
        if not events or events[0].payload.get("previous") is None:
            return None
        promotion = events[0]
        version = int(promotion.payload["version"])
        previous = int(promotion.payload["previous"])
        promoted_at = promotion.created_at
        existing = [
            t
            for t in self.comparisons.list_tests(model, kind="rollback_watch")
            if t.champion_version == previous and t.challenger_version == version
        ]
        if existing:
            test = existing[0]
        else:
            matured = settings.matured_before(self.clock())
            if matured is not None and matured < promoted_at:
                # Until then neither the baseline's newest requests nor any request the new
                # champion answered has every label in: nothing fair to compare yet.
                return None
            baseline = self.comparisons.read_labelled(
                model=model,
                answered_by=previous,
                received_before=promoted_at,
                newest_first=True,  # with a maturity: the newest requests, not labels
                limit=rules.baseline_requests,
                matured_before=matured,
            )
            sequential = TwoSampleSequentialTest(
                alpha=rules.alpha,
                method=rules.method,
                planned_n=max(rules.watch_requests, rules.min_n),
                min_n=rules.min_n,
            )
            if baseline.n_rows >= rules.min_n:
                losses = objective.per_request_loss(baseline.labels, baseline.answer)
                sequential.update(champion=np.asarray(losses, dtype=np.float64))
            test, created = self.comparisons.get_or_create_test(
                model=model,
                kind="rollback_watch",
                champion_version=previous,
                challenger_version=version,
                correction=None,
                state={
                    **sequential.to_dict(),
                    "promoted_at": promoted_at.isoformat(),
                    "baseline_n": baseline.n_rows,
                },
            )
            if created and baseline.n_rows < rules.min_n:
                why = (
                    f"v{previous} recorded only {baseline.n_rows} labelled rows before the "
                    f"promotion (need {rules.min_n}): nothing to compare with"
                )
                test = self.comparisons.finish_test(
                    test.id, status="closed", outcome={"action": "closed", "reason": why}
                )
                logger.info("model=%s rollback watch of v%d: %s", model, version, why)
                return make_result(test, None, 0, "closed", (why,))
        if test.status != "open":
            return None
        champion = self.store.champion(model)
        if champion is None or champion.version != version:
            closed = self.comparisons.finish_test(
                test.id,
                status="closed",
                outcome={"action": "closed", "reason": "the champion changed during the watch"},
            )
            return make_result(closed, None, 0, "closed")
        sequential = TwoSampleSequentialTest.from_dict(
            {k: v for k, v in test.state.items() if k not in ("promoted_at", "baseline_n")}
        )
        history = sequential.history
        watched = history[-1].n_challenger if history else 0
        over = rules.watch_s is not None and self.clock() - promoted_at >= timedelta(
            seconds=rules.watch_s
        )
        if watched >= rules.watch_requests or over:
            passed = self.comparisons.finish_test(
                test.id,
                status="closed",
                outcome={"action": "watch_passed", "n": watched},
            )
            return make_result(passed, None, 0, "watch_passed")
        batch = self.comparisons.read_labelled(
            model=model,
            answered_by=version,
            received_from=promoted_at,
            unconsumed_by=test.id,
            limit=min(max_batch, rules.watch_requests - watched),
            matured_before=settings.matured_before(self.clock()),
        )
        if batch.n_rows == 0:
            self.comparisons.consume_unscored(test, batch.request_ids)  # not read again
            return make_result(test, None, 0, "none")
        losses = objective.per_request_loss(batch.labels, batch.answer)
        look = sequential.update(challenger=np.asarray(losses, dtype=np.float64))
        status: Literal["open", "decided", "closed"] = "open"
        if look.decision == "challenger_worse":
            status = "decided"
        elif look.decision == "challenger_better":
            status = "closed"
        state = {
            **sequential.to_dict(),
            "promoted_at": test.state["promoted_at"],
            "baseline_n": test.state["baseline_n"],
        }
        try:
            saved = self.comparisons.record_look(
                test,
                consumed=list(batch.request_ids),
                look=watch_values(look, rules.method),
                state=state,
                status=status,
            )
        except ConflictError as exc:
            logger.warning("model=%s %s", model, exc.message)
            return None
        look_row = self.comparisons.latest_look(saved.id)
        if status == "closed":
            saved = self.comparisons.finish_test(
                saved.id,
                status="closed",
                outcome={"action": "watch_passed", "n": look.n_challenger},
            )
            return make_result(saved, look_row, len(batch.request_ids), "watch_passed")
        if status == "open":
            return make_result(saved, look_row, len(batch.request_ids), "none")
        return self._rollback(model, saved, look_row, len(batch.request_ids))

    def _rollback(
        self, model: str, test: ComparisonTestRow, look: ComparisonLookRow | None, fed: int
    ) -> ComparisonResult:
        evidence: dict[str, Any] = {
            "test_id": test.id,
            "version": test.challenger_version,
            "previous": test.champion_version,
            "baseline_n": test.state.get("baseline_n"),
        }
        if look is not None:
            evidence.update(
                method=look.method,
                n=look.n,
                estimate=look.estimate,
                ci=[look.ci_low, look.ci_high],
                p_value=look.p_value,
            )
        reason = (
            f"rollback watch {test.id}: v{test.challenger_version}'s realised loss is worse than "
            f"v{test.champion_version}'s before the promotion"
        )
        try:
            restored, rolled = self.store.rollback(
                model, actor=ACTOR, reason=reason, expected_champion=test.challenger_version
            )
        except ConflictError as exc:
            if exc.code == "champion_changed":  # another promotion replaced it meanwhile
                closed = self.comparisons.finish_test(
                    test.id, status="closed", outcome={"action": "closed", "reason": exc.message}
                )
                return make_result(closed, look, fed, "closed", (exc.message,))
            logger.warning(
                "model=%s rollback of v%d failed (%s): %s",
                model,
                test.challenger_version,
                exc.code,
                exc.message,
            )
            self.store.add_event(
                model=model,
                type="rollback_failed",
                payload={**evidence, "error": exc.message, "code": exc.code},
            )
            failed = self.comparisons.finish_test(
                test.id,
                status="decided",
                outcome={"action": "rollback_failed", "error": exc.message, "code": exc.code},
            )
            return make_result(failed, look, fed, "rollback_failed", (exc.message,))
        self.store.add_event(
            model=model,
            type="rollback_triggered",
            payload={**evidence, "restored": restored.version, "rolled_back": rolled.version},
        )
        done = self.comparisons.finish_test(
            test.id,
            status="decided",
            outcome={"action": "rolled_back", "restored": restored.version},
        )
        if self.on_lineup_change is not None:
            self.on_lineup_change(model)
        logger.warning(
            "model=%s rolled back v%d to v%d: %s", model, rolled.version, restored.version, reason
        )
        return make_result(done, look, fed, "rolled_back", (reason,))


def watch_values(look: TwoSampleLook, method: str) -> LookValues:
    return LookValues(
        method=method,
        n=int(look.n_challenger),
        estimate=look.estimate,
        ci_low=look.ci_low,
        ci_high=look.ci_high,
        p_value=look.p_value,
        adjusted_p_value=look.p_value,
        decision=look.decision,
        fixed_t_p=look.fixed_t_p,
    )
