"""The guardrail verdict a decided test was acted on with, as recorded then.

A decided test's guardrails are not checked again (each check reads up to
``latency_samples`` latencies of two versions, and what they say now is not what the
decision saw): its outcome records a refusal's violations or a pass, and a test whose
action left no verdict in its outcome (notified, pending approval, a promotion that
failed) has it in the ``challenger_better`` event that handed it over.
"""

from __future__ import annotations

from typing import Any

from shadow.stats import GuardrailResult
from tunewatch.store import Store
from tunewatch.store._comparisons import ComparisonTestRow

#: How many of the newest ``challenger_better`` events are searched for verdicts.
GUARDRAIL_EVENTS = 200


class RecordedGuardrails:
    """Reads the verdicts of decided tests of one model, its events at most once."""

    def __init__(self, store: Store, model: str) -> None:
        self._store = store
        self._model = model
        self._events: dict[int, dict[str, Any]] | None = None

    def of(self, test: ComparisonTestRow) -> GuardrailResult | None:
        """The verdict ``test`` was acted on with; None for an open test, a rollback
        watch, a lost test or one whose verdict was not recorded."""
        if test.status != "decided" or test.kind == "rollback_watch":
            return None
        outcome = test.outcome or {}
        violations = outcome.get("violations")
        if outcome.get("action") == "refused" and isinstance(violations, list):
            return GuardrailResult(False, tuple(str(v) for v in violations))
        if outcome.get("guardrails") == "passed":
            return GuardrailResult(True, ())
        if test.decision != "challenger_better":
            return None
        recorded = self._handed_over().get(test.id)
        if recorded is None or not isinstance(recorded.get("passed"), bool):
            return None
        found = recorded.get("violations")
        return GuardrailResult(
            recorded["passed"], tuple(str(v) for v in found) if isinstance(found, list) else ()
        )

    def _handed_over(self) -> dict[int, dict[str, Any]]:
        """The guardrails each of the newest ``challenger_better`` events recorded, by
        the test it names (the newest event of a test wins)."""
        if self._events is None:
            self._events = {}
            newest = self._store.list_events(
                model=self._model, type="challenger_better", limit=GUARDRAIL_EVENTS
            )
            for e in newest:
                test_id, guard = e.payload.get("test_id"), e.payload.get("guardrails")
                if isinstance(test_id, int) and isinstance(guard, dict):
                    self._events.setdefault(test_id, guard)
        return self._events
