"""Why a study has no winner: the message of the :class:`~retune.StudyError` that
:func:`~retune.run_study` raises when no trial that ran may win, naming what happened to
them by outcome (vetoed, rejected for their serving cost, failed, pruned, unfinished).
"""

from __future__ import annotations

from retune._optuna import OUTCOME, TrialRecord
from retune.warmstart import WarmStartPlan


def no_winner(
    trials: list[TrialRecord], *, max_fold_spread: float | None, plan: WarmStartPlan | None
) -> str:
    """What happened to the study's ``trials`` (those that ran, by number) when none may
    win: how many were vetoed (the spreads and the limit), rejected for their serving
    cost (the ceiling and the first violation), failed (the first error) or pruned."""
    if not trials:
        return "no trial completed: none ran"
    groups: dict[str, list[TrialRecord]] = {}
    for t in trials:
        outcome = str(t.user_attrs[OUTCOME])
        if t.state == "COMPLETE" and t.value is not None:  # none within max_fold_spread
            outcome = "vetoed"  # completed before this run's limit applied
        elif outcome == "complete":
            outcome = "unfinished"
        groups.setdefault(outcome, []).append(t)
    parts = [
        (outcome, len(group), _outcome_phrase(outcome, group, max_fold_spread, plan))
        for outcome, group in sorted(groups.items(), key=lambda g: _ORDER.get(g[0], len(_ORDER)))
    ]
    if len(parts) == 1:
        outcome, _, phrase = parts[0]
        what = "configurations" if outcome == "cost_rejected" else "trials"
        were = "" if outcome == "error" else "were "
        return f"no trial completed: all {len(trials)} {what} {were}{phrase}"
    listed = "; ".join(f"{n} {phrase}" for _, n, phrase in parts)
    return f"no trial completed of {len(trials)} trials: {listed}"


#: The order :func:`no_winner` names outcomes in (others after).
_ORDER = {"vetoed": 0, "cost_rejected": 1, "error": 2, "pruned": 3, "unfinished": 4}


def _outcome_phrase(
    outcome: str,
    group: list[TrialRecord],
    max_fold_spread: float | None,
    plan: WarmStartPlan | None,
) -> str:
    """How :func:`no_winner` describes the trials of one ``outcome``."""
    if outcome == "vetoed":
        spreads = sorted(
            float(t.user_attrs["fold_spread"])
            for t in group
            if t.user_attrs.get("fold_spread") is not None
        )
        if not spreads:
            return "vetoed for their fold spread"
        shown = f"{spreads[0]:.2g}" + (
            f" to {spreads[-1]:.2g}" if spreads[-1] != spreads[0] else ""
        )
        if max_fold_spread is None:
            return f"vetoed for their fold spread ({shown}) by an earlier run's max_fold_spread"
        earlier = sum(t.user_attrs[OUTCOME] == "complete" for t in group)
        before = f", {earlier} completed before it applied" if earlier else ""
        return (
            f"vetoed for their fold spread ({shown} > max_fold_spread {max_fold_spread:g}{before})"
        )
    if outcome == "cost_rejected":
        details = []
        cost = plan.cost if plan is not None else None
        if cost is not None and cost.max_latency_p99_s is not None:
            details.append(f"max_latency_p99_s {cost.max_latency_p99_s:g} s")
        if cost is not None and cost.max_memory_bytes is not None:
            details.append(f"max_memory_bytes {cost.max_memory_bytes} B")
        ceiling = f"ceiling {', '.join(details)}; " if details else ""
        first = group[0].user_attrs.get("cost_violation")
        return (
            f"rejected before training for their predicted serving cost ({ceiling}first: {first})"
        )
    if outcome == "error":
        return f"failed (first: {group[0].user_attrs.get('error')})"
    if outcome == "unfinished":  # scored, then its worker stopped or lost it as stale
        return "scored but never finished as complete"
    return outcome
