"""The family of a champion's shadow tests, decided and acted on together.

:meth:`ComparisonRunner._compare <tunewatch.comparison._runner.ComparisonRunner>` opens,
closes and reopens the tests of one champion's shadow challengers and computes each open
test's new look; this module takes it from there:

* :func:`record_family` shares the error rate among the family — the p-values adjusted
  by Holm or Bonferroni, a paired test deciding on its adjusted p-value once past its
  burn-in, a DeLong test on the bounds it planned — and records each look;
* :func:`act_on_decided` acts once on every decided test (the family's, and ones whose
  action did not happen yet) through :class:`~tunewatch.comparison._decisions.Decisions`,
  the winners strongest first (:func:`strongest_first`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from shadow.stats import Correction, Decision, PairedSequentialTest, adjust, family_decision
from tunewatch._errors import ConflictError, InvalidValueError
from tunewatch.comparison._results import (
    ComparisonResult,
    log_decision,
    make_result,
    needs_action,
)
from tunewatch.store._comparisons import (
    ComparisonLookRow,
    ComparisonStore,
    ComparisonTestRow,
    LookValues,
)

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
                "model=%s version=%d champion=%d test=%d (%s) cannot look: %s",
                model,
                version,
                champion_version,
                test.id,
                test.kind,
                exc.message,
            )
            results.append(make_result(test, None, 0, "none", (exc.message,)))
            continue
        if saved.status == "decided":
            log_decision(logger, saved, look)
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
    ``requested_by`` names who asked for the run (see :meth:`Decisions.act`).

    The tests act in that order, but for the winners among them, which act strongest
    first (:func:`strongest_first`): the first promotion changes the champion, and every
    other winner closes, never compared with the new one. In version order v2 (estimate
    -0.114) was promoted over v3 (-0.267), whose evidence was thrown away."""
    final = list(results)
    reported = {r.test_id for r in final}
    # every test to act on: the results' tests, then those of ``tests`` none reports
    ids = [r.test_id for r in final] + [t.id for t in tests if t.id not in reported]
    added: dict[int, ComparisonResult] = {}
    for i in strongest_first(comparisons, ids):
        test = comparisons.get_test(ids[i])  # as it stands now: an earlier act may close it
        if test.status != "decided" or not needs_action(test):
            continue
        action, detail = decisions.act(
            model, test, settings, blocked=blocked, requested_by=requested_by
        )
        if i < len(final):
            final[i] = replace(final[i], action=action, detail=detail)
        else:
            added[i] = make_result(test, None, 0, action, detail)
    return final + [added[i] for i in sorted(added)]


def strongest_first(comparisons: ComparisonStore, test_ids: Sequence[int]) -> list[int]:
    """The positions of ``test_ids`` in the order their tests act: as given, except that
    the winners (decided ``challenger_better``, action still to take) swap places among
    themselves to act strongest first (:func:`strength`)."""
    winners: list[tuple[tuple[float, float, int], int]] = []
    for i, test_id in enumerate(test_ids):
        test = comparisons.get_test(test_id)
        if test.status == "decided" and test.decision == "challenger_better" and needs_action(test):
            winners.append((strength(test, comparisons.latest_look(test_id)), i))
    order = list(range(len(test_ids)))
    for slot, (_, i) in zip(sorted(i for _, i in winners), sorted(winners), strict=True):
        order[slot] = i
    return order


def strength(test: ComparisonTestRow, look: ComparisonLookRow | None) -> tuple[float, float, int]:
    """A winner's sort key, strongest first: the larger improvement on the champion (a
    paired test's estimate is the challenger's loss minus the champion's, lower better
    whatever the objective; a DeLong test's the challenger's AUC minus the champion's,
    higher better), then the smaller adjusted p-value, then the lower version. A winner
    without a look or an estimate comes after those with one."""
    estimate = None if look is None else look.estimate
    if estimate is None:
        gain = -math.inf
    else:
        gain = estimate if test.kind == "delong" else -estimate
    adjusted_p = 1.0 if look is None else look.adjusted_p_value
    return (-gain, adjusted_p, test.challenger_version)
