"""Acting on decided comparisons: guardrails first, then the trigger's action through
the dispatcher and governance (which may open an approval instead of promoting)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from shadow.stats import (
    GuardrailResult,
    ServingProfile,
    check_guardrails,
)
from tunewatch._errors import ConflictError
from tunewatch._registry import recorded_parity_error
from tunewatch.store import Store, VersionRow
from tunewatch.store._comparisons import (
    ComparisonStore,
    ComparisonTestRow,
)

if TYPE_CHECKING:  # _config nests ComparisonConfig: import nothing that imports _config
    from tunewatch._actions import Dispatcher
    from tunewatch._config import Config


from tunewatch.comparison._config import ComparisonConfig
from tunewatch.comparison._results import (
    ACTOR,
    Action,
)

logger = logging.getLogger(__name__)


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

    def guardrails(
        self, model: str, champion: VersionRow, challenger: int, settings: ComparisonConfig
    ) -> GuardrailResult:
        """The serving guardrails of ``challenger`` against ``champion`` as recorded now."""
        rules = settings.guardrails
        target = self.store.get_version(model, challenger)
        violations: list[str] = []
        # The champion's over the period of the challenger's newest: each version's own
        # newest reach back over different periods when one answers more often (a live-
        # split arm, one latency per shadow drain), and a load that changed meanwhile
        # would read as a difference between the versions.
        latencies = self.store.latencies(
            model,
            since=target.created_at,
            versions=(champion.version, challenger),
            newest=rules.latency_samples,
            aligned_to=challenger,
        )
        p99: dict[int, float] = {}
        for version in (champion.version, challenger):
            values = latencies.get(version, np.empty(0))
            if values.size >= rules.min_latency_samples:
                p99[version] = max(float(np.quantile(values, 0.99)), 1e-9)
        latency_rules = rules.max_latency_p99_ratio is not None or rules.max_latency_p99_s
        if latency_rules and len(p99) < 2:
            counts = {
                v: int(latencies.get(v, np.empty(0)).size) for v in (champion.version, challenger)
            }
            violations.append(
                f"latency: need {rules.min_latency_samples} recorded latencies per version "
                f"since v{challenger} was registered (the champion's over the period of "
                f"v{challenger}'s), got {counts}"
            )
        memory = {v.version: v.load_memory_bytes for v in (champion, target)}
        memory_rules = rules.max_memory_ratio is not None or rules.max_memory_bytes is not None
        if memory_rules and any(not m for m in memory.values()):
            violations.append(f"memory: load memory not measured for every version: {memory}")
        parity = recorded_parity_error(target.details)
        if parity is None:  # registered before the value was checked
            violations.append(
                f"parity: v{challenger} records `parity_error` = "
                f"{target.details.get('parity_error')!r}, not a finite number >= 0"
            )
        result = check_guardrails(
            rules.limits(),
            champion=ServingProfile(
                latency_p99_s=p99.get(champion.version, 1.0),
                memory_bytes=memory[champion.version] or 1,
            ),
            challenger=ServingProfile(
                latency_p99_s=p99.get(challenger, 1.0),
                memory_bytes=memory[challenger] or 1,
            ),
            parity_error=parity or 0.0,
        )
        measured = [
            v
            for v in result.violations
            if not (v.startswith("max_latency") and len(p99) < 2)
            and not (v.startswith("max_memory") and any(not m for m in memory.values()))
        ]
        violations += measured
        return GuardrailResult(passed=not violations, violations=tuple(violations))

    def act(
        self,
        model: str,
        test: ComparisonTestRow,
        settings: ComparisonConfig,
        *,
        blocked: bool,
    ) -> tuple[Action, tuple[str, ...]]:
        look = self.comparisons.latest_look(test.id)
        evidence: dict[str, Any] = {
            "test_id": test.id,
            "kind": test.kind,
            "champion_version": test.champion_version,
            "challenger_version": test.challenger_version,
            "n": test.n,
            "correction": test.correction,
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
            outcome = self.dispatcher.handle(
                model, "challenger_worse", evidence, dedupe_key=f"comparison:{test.id}"
            )
            self.comparisons.finish_test(
                test.id, status="decided", outcome={"action": "notified", "trigger": outcome.action}
            )
            return "notified", (outcome.describe(),)
        # Read now, not at the start of the run: an earlier decision of the same run (or
        # another process) may have promoted, and this test never saw the new champion.
        champion = self.store.champion(model)
        if champion is None or test.champion_version != champion.version:
            self.comparisons.finish_test(
                test.id,
                status="closed",
                outcome={"action": "closed", "reason": "the champion changed before promotion"},
            )
            return "closed", ("the champion changed before promotion",)
        if blocked:
            first = test.outcome is None
            self.comparisons.finish_test(
                test.id, status="decided", outcome={"action": "blocked_srm"}
            )
            if first:
                self.store.add_event(
                    model=model,
                    type="promotion_blocked",
                    payload={**evidence, "reason": "sample ratio mismatch in the live split"},
                )
            return "blocked_srm", ("sample ratio mismatch in the live split",)
        guard = self.guardrails(model, champion, test.challenger_version, settings)
        evidence["guardrails"] = {"passed": guard.passed, "violations": list(guard.violations)}
        outcome = self.dispatcher.handle(
            model, "challenger_better", evidence, dedupe_key=f"comparison:{test.id}", actor=ACTOR
        )
        if outcome.action != "promote" or outcome.status != "deferred":
            self.comparisons.finish_test(
                test.id, status="decided", outcome={"action": "notified", "trigger": outcome.action}
            )
            return "notified", (outcome.describe(),)
        if not guard.passed:
            self._promotion(model, "refused", "guardrails: " + "; ".join(guard.violations))
            self.store.add_event(
                model=model,
                type="promotion_refused",
                payload={**evidence, "violations": list(guard.violations)},
            )
            self.comparisons.finish_test(
                test.id,
                status="decided",
                outcome={"action": "refused", "violations": list(guard.violations)},
            )
            logger.warning(
                "model=%s v%d won but breaks guardrails: %s",
                model,
                test.challenger_version,
                "; ".join(guard.violations),
            )
            return "refused", guard.violations
        reason = (
            f"comparison {test.id}: v{test.challenger_version} beat v{test.champion_version} "
            f"({test.kind}, n={test.n}, p={evidence.get('adjusted_p_value')})"
        )
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
            )
        except ConflictError as exc:
            self._promotion(model, "refused", exc.message)
            if exc.code == "champion_changed":  # another promotion won meanwhile
                self.comparisons.finish_test(
                    test.id, status="closed", outcome={"action": "closed", "reason": exc.message}
                )
                return "closed", (exc.message,)
            logger.warning(
                "model=%s promotion of v%d failed: %s", model, test.challenger_version, exc.message
            )
            self.store.add_event(
                model=model,
                type="promotion_failed",
                payload={**evidence, "error": exc.message, "code": exc.code},
            )
            self.comparisons.finish_test(
                test.id,
                status="decided",
                outcome={"action": "promotion_failed", "error": exc.message},
            )
            return "promotion_failed", (exc.message,)
        if promoted.status == "pending_approval":
            assert promoted.approval is not None
            self._promotion(
                model,
                "pending_approval",
                f"approval {promoted.approval.id}: " + "; ".join(promoted.approval.rules),
            )
            self.comparisons.finish_test(
                test.id,
                status="decided",
                outcome={"action": "pending_approval", "approval": promoted.approval.id},
            )
            return "pending_approval", promoted.approval.rules
        self._promotion(model, "taken", reason)
        self.comparisons.finish_test(
            test.id, status="decided", outcome={"action": "promoted", "guardrails": "passed"}
        )
        if self.on_lineup_change is not None:
            self.on_lineup_change(model)
        return "promoted", (reason,)

    def _promotion(
        self, model: str, status: Literal["taken", "refused", "pending_approval"], reason: str
    ) -> None:
        """Record what became of the ``do: promote`` the dispatcher deferred to us."""
        self.dispatcher.record_promotion(model, status, reason, actor=ACTOR)

    # -- rollback watch -------------------------------------------------------------------------
