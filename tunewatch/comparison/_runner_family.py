"""The family of a champion's shadow tests, decided and acted on together.

:meth:`ComparisonRunner._compare <tunewatch.comparison._runner.ComparisonRunner>` opens,
closes and reopens the tests of one champion's shadow challengers and computes each open
test's new look; this module takes it from there:

* :func:`record_family` shares the error rate among the family — the p-values adjusted
  by Holm or Bonferroni, a paired test deciding on its adjusted p-value once past its
  burn-in, a DeLong test on the bounds it planned — and records each look;
* :func:`act_on_decided` acts once on every decided test (the family's, and ones whose
  action did not happen yet) through :class:`~tunewatch.comparison._decisions.Decisions`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from shadow.stats import Correction, Decision, PairedSequentialTest, adjust, family_decision
from tunewatch._errors import ConflictError, InvalidValueError
from tunewatch.comparison._results import ComparisonResult, make_result, needs_action
from tunewatch.store._comparisons import ComparisonStore, ComparisonTestRow, LookValues

if TYPE_CHECKING:
    from tunewatch.comparison._config import ComparisonConfig
    from tunewatch.comparison._decisions import Decisions

#: The runner's logger: these warnings are the comparison loop's, and were always
#: logged (and filtered) under its name.
logger = logging.getLogger("tunewatch.comparison._runner")

#: An open test's new look, not yet recorded: the test, the request ids it consumed, the
#: look's values and the test's new state.
Pending = tuple[ComparisonTestRow, list[str], LookValues, dict[str, Any]]


def record_family(
    comparisons: ComparisonStore,
    model: str,
    champion_version: int,
    kind: Literal["paired", "delong"],
    settings: ComparisonConfig,
    *,
    correction: Correction,
    k: int,
    pending: Mapping[int, Pending],
    p_values: Mapping[int, float],
) -> list[ComparisonResult]:
    """Decide and record the ``pending`` looks of the family of ``k`` tests, keyed by
    challenger version; ``p_values`` holds the newest p-value of every test in the family
    (1.0 for one that never looked), the pending ones' included.

    A paired test decides on its ``correction``-adjusted p-value once it holds
    ``settings.min_n`` effective requests; a DeLong test decides on its own bounds and
    closes when it spent every look it planned without a difference. A look that lost a
    race with another run, or whose statistics the store refuses, is not recorded (the
    latter's result says why)."""
    results: list[ComparisonResult] = []
    by_name = {str(v): p for v, p in p_values.items()}
    adjusted_by_name = adjust(by_name, method=correction) if by_name else {}
    adjusted = {int(name): p for name, p in adjusted_by_name.items()}
    for version, (test, consumed, look, state) in pending.items():
        if kind == "paired":
            decision: Decision = "continue"
            # the burn-in counts requests, the paired test's unit (not their rows):
            # the effective ones, which a few batch requests holding most rows are
            effective = PairedSequentialTest.effective_n_in(state)
            if effective >= settings.min_n and look.estimate is not None:
                decision = family_decision(
                    adjusted[version],
                    alpha=settings.alpha,
                    evidence=PairedSequentialTest.evidence_in(state),
                    estimate=look.estimate,
                )
            look = replace(
                look, adjusted_p_value=adjusted[version], decision=decision, family_size=k
            )
            status: Literal["open", "decided", "closed"] = (
                "open" if decision == "continue" else "decided"
            )
        else:
            status = "open" if look.decision == "continue" else "decided"
            # every look the test planned (its own bounds: ``delong_looks`` as it
            # started; raised since, the test stayed open and could look no more)
            if status == "open" and test.looks + 1 >= int(state["planned_looks"]):
                status = "closed"  # spent without a difference
        try:
            saved = comparisons.record_look(
                test, consumed=consumed, look=look, state=state, status=status
            )
        except ConflictError as exc:
            logger.warning("model=%s %s", model, exc.message)
            continue
        except InvalidValueError as exc:  # e.g. statistics that overflowed
            logger.warning(
                "model=%s comparison of v%d against v%d cannot look: %s",
                model,
                version,
                champion_version,
                exc.message,
            )
            results.append(make_result(test, None, 0, "none", (exc.message,)))
            continue
        look_row = comparisons.latest_look(saved.id)
        results.append(make_result(saved, look_row, len(consumed), "none"))
    return results


def act_on_decided(
    decisions: Decisions,
    comparisons: ComparisonStore,
    model: str,
    results: Iterable[ComparisonResult],
    tests: Iterable[ComparisonTestRow],
    settings: ComparisonConfig,
    *,
    blocked: bool,
    requested_by: str | None,
) -> list[ComparisonResult]:
    """``results`` with the action taken on each decided test that still needs one, then
    a result for each of ``tests`` decided and still needing an action that none of
    ``results`` reports. ``blocked`` holds promotions (a sample-ratio mismatch);
    ``requested_by`` names who asked for the run (see :meth:`Decisions.act`)."""
    final: list[ComparisonResult] = []
    for result in results:
        test = comparisons.get_test(result.test_id)
        if test.status == "decided" and needs_action(test):
            action, detail = decisions.act(
                model, test, settings, blocked=blocked, requested_by=requested_by
            )
            result = replace(result, action=action, detail=detail)
        final.append(result)
    for test in tests:
        current = comparisons.get_test(test.id)
        if current.status == "decided" and needs_action(current):
            if all(r.test_id != current.id for r in final):
                action, detail = decisions.act(
                    model, current, settings, blocked=blocked, requested_by=requested_by
                )
                final.append(make_result(current, None, 0, action, detail))
    return final
