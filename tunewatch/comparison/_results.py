"""What a comparison run reports."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shadow.stats import GuardrailResult, Look, TwoSampleLook
from tunewatch.store._comparisons import (
    ComparisonLookRow,
    ComparisonTestRow,
    LookValues,
    SplitCheckRow,
)

ACTOR = "tunewatch"
Action = Literal[
    "none",
    "promoted",
    "pending_approval",
    "refused",
    "blocked_srm",
    "notified",
    "promotion_failed",
    "rolled_back",
    "rollback_failed",
    "watch_passed",
    "closed",
]


@dataclass(frozen=True, slots=True)
class ComparisonResult:
    """What one run did for one test: its newest look (``None`` when nothing new was fed)
    and the action taken on a decision."""

    model: str
    kind: str
    test_id: int
    champion_version: int
    challenger_version: int
    status: str
    decision: str
    correction: str | None
    fed: int
    look: ComparisonLookRow | None
    action: Action = "none"
    detail: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckedGuardrails(GuardrailResult):
    """The guardrails as checked, with ``notes`` on rules that could not apply and were
    passed (recorded with the decision: "champion scored elsewhere: …")."""

    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChallengerSummary:
    """A test of the current champion as the API shows it."""

    test: ComparisonTestRow
    look: ComparisonLookRow | None
    guardrails: GuardrailResult | None
    split: SplitCheckRow | None


def make_result(
    test: ComparisonTestRow,
    look: ComparisonLookRow | None,
    fed: int,
    action: Action,
    detail: tuple[str, ...] = (),
) -> ComparisonResult:
    return ComparisonResult(
        model=test.model,
        kind=test.kind,
        test_id=test.id,
        champion_version=test.champion_version,
        challenger_version=test.challenger_version,
        status=test.status,
        decision=test.decision,
        correction=test.correction,
        fed=fed,
        look=look,
        action=action,
        detail=detail,
    )


def log_decision(log: logging.Logger, test: ComparisonTestRow, look: LookValues) -> None:
    """Log at INFO that ``test`` (just recorded) decided at its new ``look``, naming the
    model, the challenger (``version``), the champion and the test: the statistics
    library says it only at DEBUG, knowing none of them."""
    log.info(
        "model=%s version=%d champion=%d test=%d (%s) decided %s at n=%d: estimate=%s, "
        "p=%.3g, adjusted_p=%.3g (%s)",
        test.model,
        test.challenger_version,
        test.champion_version,
        test.id,
        test.kind,
        look.decision,
        look.n,
        "none" if look.estimate is None else format(look.estimate, ".6g"),
        look.p_value,
        look.adjusted_p_value,
        look.method,
    )


def requested(requested_by: str | None) -> dict[str, str]:
    """What a run's records add about who asked for it (``POST /compare``, ``tunewatch
    compare``): ``{"requested_by": name}``, nothing for a scheduled run. The deciding actor
    stays :data:`ACTOR`, whose rules decided."""
    return {} if requested_by is None else {"requested_by": requested_by}


def needs_action(test: ComparisonTestRow) -> bool:
    """Decided tests act once; a promotion blocked by a sample-ratio mismatch retries."""
    return test.outcome is None or test.outcome.get("action") == "blocked_srm"


def stateless(state: Mapping[str, Any]) -> dict[str, Any]:
    """A test's state without its look history (the looks live in ``comparison_looks``)."""
    return {**state, "history": []}


def paired_values(look: Look, method: str, correction: str | None = None) -> LookValues:
    """A paired test's look as stored (its p-value not adjusted yet)."""
    return LookValues(
        method=method,
        n=look.n,
        estimate=look.estimate,
        ci_low=look.ci_low,
        ci_high=look.ci_high,
        p_value=look.p_value,
        adjusted_p_value=look.p_value,
        decision=look.decision,
        fixed_t_p=look.fixed_t_p,
        bootstrap_ci=look.bootstrap_ci,
        correction=correction,
    )


def watch_values(look: TwoSampleLook, method: str) -> LookValues:
    """An unpaired look (a rollback watch's, the live split's) as stored."""
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
