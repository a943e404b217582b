"""Several challengers against one champion: family-wise error control.

Bonferroni runs each of the ``k`` sequential tests at ``alpha / k``. Holm's step-down
procedure on always-valid p-values is valid at every look too: for the true nulls
``P(exists t: min_i p_i(t) <= alpha / m0) <= sum_i P(exists t: p_i(t) <= alpha / m0) <=
alpha``, and Holm's adjusted p-values only fall as the running p-values fall, so its
rejections are final like the tests' own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from shadow.stats._errors import StatsError
from shadow.stats._look import Decision, Look, family_decision
from shadow.stats._paired import DEFAULT_MIN_N, PairedSequentialTest
from shadow.stats._validation import check_alpha
from shadow.stats.always_valid import MethodName

Correction = Literal["holm", "bonferroni"]
CORRECTIONS: tuple[Correction, ...] = ("holm", "bonferroni")


def adjust(p_values: Mapping[str, float], *, method: Correction) -> Mapping[str, float]:
    """Family-wise adjusted p-values, keyed like ``p_values`` (reject where <= alpha)."""
    if method not in CORRECTIONS:
        raise StatsError(f"`method` must be one of {', '.join(CORRECTIONS)}, got {method!r}")
    names = list(p_values)
    p = np.asarray([p_values[name] for name in names], dtype=np.float64)
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise StatsError(f"p-values must be in [0, 1], got {dict(p_values)}")
    k = p.size
    if method == "bonferroni":
        adjusted = np.minimum(p * k, 1.0)
    else:
        order = np.argsort(p, kind="stable")
        stepped = np.minimum((k - np.arange(k)) * p[order], 1.0)
        adjusted = np.empty(k)
        adjusted[order] = np.maximum.accumulate(stepped)
    return {name: float(value) for name, value in zip(names, adjusted, strict=True)}


@dataclass(frozen=True)
class ChallengerLook:
    """One challenger's latest look; ``decision`` applies the family-wise correction."""

    name: str
    look: Look | None
    adjusted_p_value: float
    decision: Decision


@dataclass(frozen=True)
class MultiChallengerLook:
    correction: Correction
    alpha: float
    per_test_alpha: float
    challengers: tuple[ChallengerLook, ...]

    def by_name(self, name: str) -> ChallengerLook:
        for item in self.challengers:
            if item.name == name:
                return item
        raise KeyError(name)


class MultiChallengerComparison:
    """One paired sequential test per challenger with family-wise error ``alpha``.

    Each test runs at ``alpha / k`` (its interval is a Bonferroni-simultaneous confidence
    sequence). Decisions: with ``correction="bonferroni"`` a challenger is decided when its
    own test decides; with ``"holm"`` when its Holm-adjusted always-valid p-value is at most
    ``alpha`` (never fewer decisions than Bonferroni). The default follows the method:
    Bonferroni for confidence sequences, Holm for mSPRT p-values. ``min_n`` and
    ``loss_range`` go to every challenger's :class:`PairedSequentialTest`, whose defaults
    and documentation say why skewed losses need both.
    """

    def __init__(
        self,
        challengers: Sequence[str],
        *,
        alpha: float = 0.05,
        method: MethodName = "confidence_sequence",
        correction: Correction | None = None,
        planned_n: int = 1000,
        min_n: int = DEFAULT_MIN_N,
        mixing_sd: float | None = None,
        loss_range: float | None = None,
        bootstrap_resamples: int = 0,
        seed: int = 0,
    ) -> None:
        names = list(challengers)
        if not names or len(set(names)) != len(names):
            raise StatsError(f"`challengers` must be distinct names, at least one, got {names}")
        self.alpha = check_alpha(alpha)
        if correction is None:
            correction = "bonferroni" if method == "confidence_sequence" else "holm"
        if correction not in CORRECTIONS:
            raise StatsError(
                f"`correction` must be one of {', '.join(CORRECTIONS)}, got {correction!r}"
            )
        self.correction: Correction = correction
        self.per_test_alpha = self.alpha / len(names)
        self._tests = {
            name: PairedSequentialTest(
                alpha=self.per_test_alpha,
                method=method,
                planned_n=planned_n,
                min_n=min_n,
                mixing_sd=mixing_sd,
                loss_range=loss_range,
                bootstrap_resamples=bootstrap_resamples,
                seed=seed + i,
            )
            for i, name in enumerate(names)
        }
        self._looks: dict[str, Look | None] = dict.fromkeys(names)
        self._decided: dict[str, Decision] = dict.fromkeys(names, "continue")

    @property
    def tests(self) -> Mapping[str, PairedSequentialTest]:
        return dict(self._tests)

    def update(self, differences: Mapping[str, np.ndarray]) -> MultiChallengerLook:
        """Add loss differences (challenger minus champion) for some or all challengers."""
        unknown = sorted(set(differences) - set(self._tests))
        if unknown:
            raise StatsError(
                f"unknown challengers {unknown}; known: {', '.join(sorted(self._tests))}"
            )
        for name, values in differences.items():
            self._looks[name] = self._tests[name].update(values)
        p = {name: (look.p_value if look else 1.0) for name, look in self._looks.items()}
        adjusted = adjust(p, method=self.correction)
        results = []
        for name, look in self._looks.items():
            if self._decided[name] == "continue" and look is not None:
                self._decided[name] = family_decision(
                    adjusted[name],
                    alpha=self.alpha,
                    evidence=self._tests[name].evidence,
                    estimate=look.estimate,
                )
            results.append(
                ChallengerLook(
                    name=name,
                    look=look,
                    adjusted_p_value=adjusted[name],
                    decision=self._decided[name],
                )
            )
        return MultiChallengerLook(
            correction=self.correction,
            alpha=self.alpha,
            per_test_alpha=self.per_test_alpha,
            challengers=tuple(results),
        )
