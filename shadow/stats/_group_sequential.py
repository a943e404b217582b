"""Group-sequential comparison of whole-sample metrics (ROC AUC) with alpha spending.

Metrics that do not decompose per request cannot feed a confidence sequence, so they are
compared at a planned number of fixed looks: a paired DeLong z-statistic on all labelled
requests so far, against O'Brien–Fleming-type critical values that spend ``alpha`` over
the looks (see :mod:`shadow.stats._spending`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import stats as sps

from shadow.stats._delong import delong_test
from shadow.stats._errors import StatsError
from shadow.stats._look import DECISIONS, Decision
from shadow.stats._spending import group_sequential_bounds, obrien_fleming_spending
from shadow.stats._validation import check_alpha, check_positive_int

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupSequentialLook:
    """One planned look. ``p_value`` is DeLong's nominal p at this look; the look rejects
    when it is at most ``nominal_alpha`` (equivalently ``|z| >= critical_z``).
    ``alpha_spent`` is the cumulative error budget used up to this look."""

    look: int
    information_fraction: float
    n: int
    auc_champion: float
    auc_challenger: float
    estimate: float
    standard_error: float
    z: float
    p_value: float
    critical_z: float
    nominal_alpha: float
    alpha_spent: float
    decision: Decision


@cache
def _bounds(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    return group_sequential_bounds(fractions, alpha=alpha)


def decide(z: np.ndarray, critical_z: float) -> np.ndarray:
    """Decision codes for DeLong z-statistics (positive z = challenger's AUC higher)."""
    zz = np.asarray(z, dtype=np.float64)
    return np.asarray(np.where(np.abs(zz) >= critical_z, np.sign(zz), 0).astype(np.int8))


class GroupSequentialDeLong:
    """Paired DeLong test at up to ``planned_looks`` equally spaced looks.

    Each look passes every labelled request so far. Information fractions default to
    ``k / planned_looks``; pass ``information_fraction`` when looks are unevenly spaced
    (e.g. ``n_k / n_planned``). The last planned look spends what is left of ``alpha``.
    A decision is final; looks beyond the plan are refused.
    """

    def __init__(self, *, alpha: float = 0.05, planned_looks: int = 5) -> None:
        self.alpha = check_alpha(alpha)
        self.planned_looks = check_positive_int(planned_looks, field="planned_looks")
        self._fractions: list[float] = []
        self._history: list[GroupSequentialLook] = []

    @property
    def history(self) -> tuple[GroupSequentialLook, ...]:
        return tuple(self._history)

    @property
    def decision(self) -> Decision:
        return self._history[-1].decision if self._history else "continue"

    def critical_values(self, fractions: tuple[float, ...] | None = None) -> tuple[float, ...]:
        """Critical |z| per look for ``fractions`` (default: the equally spaced plan)."""
        if fractions is None:
            fractions = tuple((k + 1) / self.planned_looks for k in range(self.planned_looks))
        return _bounds(tuple(float(f) for f in fractions), self.alpha)

    def look(
        self,
        labels: np.ndarray,
        champion_scores: np.ndarray,
        challenger_scores: np.ndarray,
        *,
        information_fraction: float | None = None,
        clusters: np.ndarray | None = None,
    ) -> GroupSequentialLook:
        """Take the next look at the rows so far; ``clusters`` (each row's request, when a
        request may hold several rows) makes the request DeLong's unit
        (:func:`~shadow.stats._delong.delong_test`)."""
        index = len(self._history) + 1
        if index > self.planned_looks:
            raise StatsError(
                f"all {self.planned_looks} planned looks are spent; `planned_looks` bounds "
                "how often a group-sequential test may look"
            )
        if index == self.planned_looks:
            fraction = 1.0
        elif information_fraction is None:
            fraction = index / self.planned_looks
        else:
            fraction = float(information_fraction)
        if not 0.0 < fraction <= 1.0 or (self._fractions and fraction <= self._fractions[-1]):
            raise StatsError(
                f"`information_fraction` must increase within (0, 1], got {fraction} after "
                f"{self._fractions[-1] if self._fractions else 0.0}"
            )
        result = delong_test(labels, champion_scores, challenger_scores, clusters=clusters)
        critical = self.critical_values((*self._fractions, fraction))[-1]
        previous = self.decision
        decision = previous
        if previous == "continue":
            decision = DECISIONS[int(decide(np.asarray(result.z), critical))]
        self._fractions.append(fraction)
        look = GroupSequentialLook(
            look=index,
            information_fraction=fraction,
            n=result.n_positive + result.n_negative,
            auc_champion=result.auc_champion,
            auc_challenger=result.auc_challenger,
            estimate=result.difference,
            standard_error=result.standard_error,
            z=result.z,
            p_value=result.p_value,
            critical_z=critical,
            nominal_alpha=float(2.0 * sps.norm.sf(critical)),
            alpha_spent=float(obrien_fleming_spending(fraction, alpha=self.alpha)),
            decision=decision,
        )
        self._history.append(look)
        if previous == "continue" and decision != "continue":
            logger.debug(  # the caller, who knows the model and versions, logs it
                "group-sequential DeLong decided %s at look %d (z=%.3f, critical=%.3f)",
                decision,
                index,
                look.z,
                critical,
            )
        return look
