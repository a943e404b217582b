"""Under the ``fdr`` and ``bonferroni`` dataset rules, distance columns are part of the
family whose error the rule controls (STYLE #18: A/A simulations and golden verdicts).

Above 1000 rows the default chooser picks distances (Wasserstein for continuous columns),
which have no p-value; the rules corrected the p-value columns only, and each distance
kept its own noise floor at the full ``alpha`` while any drifted column made dataset
drift. With 10 unchanged N(0, 1) features, 1,200-row windows against a 1,500-row
reference raised dataset drift in 18.7 % of 300 windows under either rule (the
900-row KS windows: 6.0 %). A distance is now judged with its noise floor at
``alpha / m`` (``m`` the columns tested), and a p-value column's cut-off counts every
tested column.

Constants: reference ``REFERENCE_ROWS = 1500`` rows and windows of ``WINDOW = 1200``
rows of ``K = 10`` independent N(0, 1) columns; ``ALPHA = 0.05``; ``N_WINDOWS = 200``
unchanged windows per rule, dataset drift in at most ``MAX_RATE`` of them (alpha plus
two binomial standard errors, 8.1 %; over 1,000 windows this reference, drawn once,
gave 5.9 %: a column's rate depends on how its reference sample fell, 0-7 % of windows
at ``alpha / 10``, as a KS column's does)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor.drift import ColumnDriftConfig, DriftDetector, ReferenceProfile

K = 10
REFERENCE_ROWS = 1500
WINDOW = 1200
ALPHA = 0.05
N_WINDOWS = 200
MAX_RATE = ALPHA + 2 * np.sqrt(ALPHA * (1 - ALPHA) / N_WINDOWS)
NAMES = [f"x{i}" for i in range(K)]
RULES = ["fdr", "bonferroni"]
MIXED = {
    **{name: ColumnDriftConfig(method="ks") for name in NAMES[:3]},
    **{name: ColumnDriftConfig(method="jensenshannon") for name in NAMES[3:5]},
}
"""Three KS columns and two Jensen-Shannon ones (over Sturges bins); the other five
Wasserstein by default at 1200 rows."""


def _frame(seed: int, n: int, *, shift: float = 0.0) -> pd.DataFrame:
    frame = pd.DataFrame(np.random.default_rng(seed).normal(size=(n, K)), columns=NAMES)
    frame["x0"] += shift
    frame["x5"] += shift
    return frame


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return ReferenceProfile.build(_frame(0, REFERENCE_ROWS))


def _detector(
    profile: ReferenceProfile, rule: str, columns: dict[str, ColumnDriftConfig] | None = None
) -> DriftDetector:
    return DriftDetector(
        profile,
        dataset_rule=rule,  # type: ignore[arg-type]
        columns=columns,
        alpha=ALPHA,
        min_rows=100,
    )


@pytest.mark.parametrize("rule", RULES)
def test_distance_columns_hold_the_rule_s_false_alarm_rate(
    profile: ReferenceProfile, rule: str
) -> None:
    """A/A: 200 unchanged 1200-row windows, every column Wasserstein: dataset drift in
    4.5 % of them (16.8 % of the first 250 before; at most ``MAX_RATE``)."""
    detector = _detector(profile, rule)
    results = [detector.check(_frame(10_000 + s, WINDOW)) for s in range(N_WINDOWS)]
    assert {c.method for r in results for c in r.columns} == {"wasserstein"}
    assert np.mean([r.dataset_drift for r in results]) <= MAX_RATE


def test_a_mixed_family_holds_fdr_s_false_alarm_rate(profile: ReferenceProfile) -> None:
    """A/A as above with three configured KS columns and two configured Jensen-Shannon
    ones among the Wasserstein columns, under ``fdr``: the p-value cut-off counts all
    ten (4.5 % of windows; 17.6 % of the first 250 before). ``bonferroni`` rejects a subset of what
    ``fdr`` rejects on the same verdicts (the same ``m``), so this bounds it too."""
    detector = _detector(profile, "fdr", MIXED)
    results = [detector.check(_frame(20_000 + s, WINDOW)) for s in range(N_WINDOWS)]
    assert {c.method for c in results[0].columns} == {"ks", "jensenshannon", "wasserstein"}
    assert np.mean([r.dataset_drift for r in results]) <= MAX_RATE


@pytest.mark.parametrize("rule", RULES)
def test_a_shift_of_a_third_of_a_standard_deviation_is_still_detected(
    profile: ReferenceProfile, rule: str
) -> None:
    """x0 and x5 (Wasserstein) shifted by 0.3 sd: both drift in each of 20 windows, while
    the eight unchanged columns drift in at most 3 of their 160 checks."""
    detector = _detector(profile, rule)
    results = [detector.check(_frame(30_000 + s, WINDOW, shift=0.3)) for s in range(20)]
    for result in results:
        assert result.dataset_drift
        assert {"x0", "x5"} <= set(result.drifted_columns)
    assert sum(len(r.drifted_columns) - 2 for r in results) <= 3


@pytest.mark.parametrize("rule", RULES)
def test_a_distance_s_cut_off_is_its_noise_floor_at_alpha_over_m(
    profile: ReferenceProfile, rule: str
) -> None:
    """Golden: the same window's drifting Wasserstein column, its floor at ``alpha / 10``
    under the rule and at ``alpha`` under ``share``; the configured threshold of a distance
    stays a lower bound of its cut-off."""
    current = _frame(40_000, WINDOW, shift=0.3)
    ruled = _detector(profile, rule).check(current).column("x0")
    alone = DriftDetector(profile, dataset_rule="share", alpha=ALPHA / K, min_rows=100).check(
        current
    )
    assert ruled.method == "wasserstein" and ruled.drifted
    assert ruled.threshold == alone.column("x0").threshold
    shared = DriftDetector(profile, alpha=ALPHA, min_rows=100).check(current).column("x0")
    assert shared.threshold < ruled.threshold
    high = {"x0": ColumnDriftConfig(method="wasserstein", threshold=0.5)}
    configured = _detector(profile, rule, high).check(current).column("x0")
    assert configured.threshold == 0.5 and not configured.drifted


@pytest.mark.parametrize("rule", RULES)
def test_a_p_value_column_s_cut_off_counts_the_distance_columns(
    profile: ReferenceProfile, rule: str
) -> None:
    """Golden: with no column rejected, each KS column's cut-off is ``alpha / 10`` (ten
    columns tested, five of them distances), not ``alpha / 3``."""
    result = _detector(profile, rule, MIXED).check(_frame(50_000, WINDOW))
    assert not result.dataset_drift
    for name in NAMES[:3]:
        assert result.column(name).method == "ks"
        assert result.column(name).threshold == pytest.approx(ALPHA / K)


def test_fdr_counts_a_drifted_distance_among_its_rejections(profile: ReferenceProfile) -> None:
    """Golden: Benjamini-Hochberg over the ten columns counts a drifted distance column as
    a rejection. x0 (KS) shifted by 0.1 sd has p = 0.0055, over ``alpha / 10``: alone it
    does not drift under ``fdr``; with x5 (Wasserstein) shifted by 0.5 sd and drifting,
    x0 is the second rejection (``p <= 2 * alpha / 10``). Under ``bonferroni`` it does
    not drift either way."""
    current = _frame(60_000, WINDOW)
    current["x0"] += 0.1
    alone = _detector(profile, "fdr", MIXED).check(current)
    assert alone.column("x0").p_value == pytest.approx(0.0055, abs=5e-5)
    assert alone.drifted_columns == ()
    current["x5"] += 0.5
    fdr = _detector(profile, "fdr", MIXED).check(current)
    assert fdr.drifted_columns == ("x0", "x5")
    assert fdr.column("x0").threshold == pytest.approx(2 * ALPHA / K)
    bonferroni = _detector(profile, "bonferroni", MIXED).check(current)
    assert bonferroni.drifted_columns == ("x5",)
    assert bonferroni.column("x0").threshold == pytest.approx(ALPHA / K)


def test_the_share_rule_keeps_each_distance_at_alpha(profile: ReferenceProfile) -> None:
    """The default rule is unchanged: its A/A stays clean (no dataset drift in 50
    windows) with each column's floor at ``alpha``."""
    detector = DriftDetector(profile, alpha=ALPHA, min_rows=100)
    assert detector.dataset_rule == "share"
    results = [detector.check(_frame(10_000 + s, WINDOW)) for s in range(50)]
    assert not any(r.dataset_drift for r in results)
