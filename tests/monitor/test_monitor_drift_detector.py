"""Golden and degenerate-window tests for the drift detector.

Golden constants: windows of ``WINDOW = 500`` rows; reference of ``REFERENCE_ROWS =
5000`` rows from the pre-change distribution (the smaller sample has at most 1000 rows,
so p-value tests apply: KS / chi-square at 0.05); dataset rule ``"share"`` with
threshold 0.5. The change happens at window ``CHANGE_AT = 10`` of ``N_WINDOWS = 20``,
in 5 of 8 columns (shifts of about half a standard deviation). Expected: no alarm
before the change, an alarm in every window from the change on (detection delay
``N = 0`` windows: the first changed window alarms), and none on a stationary stream.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitor.drift import (
    ColumnDriftConfig,
    DriftDetector,
    DriftError,
    ReferenceProfile,
    benjamini_hochberg,
)
from tests.monitor._streams import COLUMN_TYPES, DRIFTING, stream, window

WINDOW = 500
REFERENCE_ROWS = 5000
N_WINDOWS = 20
CHANGE_AT = 10
DETECTION_DELAY = 0


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    reference = window(REFERENCE_ROWS, rng=np.random.default_rng(100))
    return ReferenceProfile.build(reference, column_types=COLUMN_TYPES)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_abrupt_change_alarms_at_the_change_and_never_before(
    profile: ReferenceProfile, seed: int
) -> None:
    detector = DriftDetector(profile)
    alarms = [
        detector.check(w).dataset_drift
        for w in stream(N_WINDOWS, WINDOW, change_at=CHANGE_AT, seed=seed)
    ]
    assert alarms == [False] * CHANGE_AT + [True] * (N_WINDOWS - CHANGE_AT)
    assert alarms.index(True) == CHANGE_AT + DETECTION_DELAY


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stationary_stream_never_alarms(profile: ReferenceProfile, seed: int) -> None:
    detector = DriftDetector(profile)
    results = [detector.check(w) for w in stream(N_WINDOWS, WINDOW, change_at=None, seed=seed)]
    assert not any(r.dataset_drift for r in results)


def test_changed_window_names_the_drifting_columns(profile: ReferenceProfile) -> None:
    result = DriftDetector(profile).check(
        window(WINDOW, rng=np.random.default_rng(9), changed=True)
    )
    assert set(result.drifted_columns) == set(DRIFTING)
    assert result.drifted_share == pytest.approx(len(DRIFTING) / len(COLUMN_TYPES))
    assert result.column("age").method == "ks"
    assert result.column("region").method == "chisquare"


@pytest.mark.parametrize("rule", ["fdr", "bonferroni"])
def test_multiple_testing_rules_hold_their_false_alarm_rate(rule: str) -> None:
    """A/A: 200 stationary windows against a 1000-row reference (p-value tests: KS and
    chi-square) alarm at most alpha=0.05 plus three binomial standard errors."""
    reference = window(1000, rng=np.random.default_rng(7))
    detector = DriftDetector(
        ReferenceProfile.build(reference, column_types=COLUMN_TYPES),  # type: ignore[arg-type]
        dataset_rule=rule,  # type: ignore[arg-type]
        alpha=0.05,
    )
    windows = stream(200, 300, change_at=None, seed=11)
    rate = np.mean([detector.check(w).dataset_drift for w in windows])
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 200)
    changed = detector.check(window(300, rng=np.random.default_rng(12), changed=True))
    assert changed.dataset_drift and changed.column("age").method == "ks"


@pytest.mark.parametrize("rule", ["fdr", "bonferroni"])
@pytest.mark.parametrize("seed", range(6))
def test_under_a_multiple_testing_rule_each_column_s_verdict_is_the_rule_s(
    rule: str, seed: int
) -> None:
    """Each column kept its own uncorrected verdict (p < its threshold) while the rule
    decided the dataset: a stored verdict said drift on columns the rule did not reject,
    and none on one it did. A column's verdict is now the rule's, with the rule's cut-off
    as its threshold."""
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame({f"f{i}": rng.normal(size=800) for i in range(10)})
    current = pd.DataFrame({f"f{i}": rng.normal(size=300) for i in range(10)})
    current["f0"] += 0.2  # a mild shift in one column
    result = DriftDetector(
        ReferenceProfile.build(reference),
        dataset_rule=rule,  # type: ignore[arg-type]
        columns={"f1": ColumnDriftConfig(method="ks", threshold=0.5)},
    ).check(current)
    drifted = {c.column for c in result.columns if c.drifted}
    assert drifted == set(result.drifted_columns)
    assert {c.column for c in result.columns if c.status == "drift"} == drifted
    for c in result.columns:
        assert c.p_value is not None and c.drifted == (c.p_value <= c.threshold)
        assert c.threshold <= 0.05  # the rule's cut-off, not f1's 0.5


def test_degenerate_windows_are_insufficient_and_never_raise(profile: ReferenceProfile) -> None:
    detector = DriftDetector(profile)
    empty = detector.check(pd.DataFrame(columns=list(COLUMN_TYPES)))
    assert set(empty.insufficient) == set(COLUMN_TYPES) and not empty.dataset_drift
    assert empty.drifted_share == 0.0 and empty.n_current == 0

    one_row = detector.check(window(1, rng=np.random.default_rng(1)))
    assert set(one_row.insufficient) == set(COLUMN_TYPES)
    assert all("min_rows=30" in (c.reason or "") for c in one_row.columns)

    frame = window(WINDOW, rng=np.random.default_rng(2))
    frame["age"] = np.nan
    frame = frame.drop(columns=["channel"])
    result = detector.check(frame)
    assert result.column("age").status == "insufficient_data"
    assert result.column("channel").reason == "column missing from the current window"
    assert set(result.insufficient) == {"age", "channel"}
    assert not result.dataset_drift


def test_constant_column_is_insufficient() -> None:
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"flag": np.ones(2000), "x": rng.normal(size=2000)})
    detector = DriftDetector(ReferenceProfile.build(reference))
    result = detector.check(pd.DataFrame({"flag": np.ones(600), "x": rng.normal(size=600)}))
    assert result.column("flag").status == "insufficient_data"
    assert "constant" in (result.column("flag").reason or "")
    assert result.column("x").status == "ok"


def test_configured_method_and_threshold_override_the_default(profile: ReferenceProfile) -> None:
    detector = DriftDetector(
        profile,
        columns={
            "age": ColumnDriftConfig(method="psi", threshold=0.2),
            "region": ColumnDriftConfig(method="chisquare"),
        },
    )
    result = detector.check(window(WINDOW, rng=np.random.default_rng(4)))
    assert (result.column("age").method, result.column("age").threshold) == ("psi", 0.2)
    assert (result.column("region").method, result.column("region").threshold) == (
        "chisquare",
        0.05,
    )


def test_invalid_configuration_is_refused_with_the_field_named(profile: ReferenceProfile) -> None:
    with pytest.raises(DriftError, match="`method` must be one of"):
        ColumnDriftConfig(method="energy")  # type: ignore[arg-type]
    with pytest.raises(DriftError, match="`dataset_rule` must be one of"):
        DriftDetector(profile, dataset_rule="any")  # type: ignore[arg-type]
    with pytest.raises(DriftError, match=r"`columns\['age'\]`: `threshold` of a p-value test"):
        DriftDetector(profile, columns={"age": ColumnDriftConfig(method="ks", threshold=2)})
    # a setting only the reference refuses leaves that column untested, the others not
    # (tests/monitor/test_drift_column_misfit.py)


def test_large_windows_are_sampled(profile: ReferenceProfile) -> None:
    big = window(30_000, rng=np.random.default_rng(5))
    result = DriftDetector(profile, sample_size=10_000).check(big)
    assert result.n_current == 30_000
    assert {c.n_cur for c in result.columns if c.column == "tenure"} == {10_000}


def test_small_reference_uses_evidently_small_sample_defaults() -> None:
    rng = np.random.default_rng(6)
    reference = pd.DataFrame(
        {
            "x": rng.normal(size=800),
            "few": rng.integers(0, 4, 800).astype(float),
            "flag": rng.choice(np.array(["y", "n"], dtype=object), 800),
            "cat": rng.choice(np.array(["a", "b", "c"], dtype=object), 800),
        }
    )
    result = DriftDetector(ReferenceProfile.build(reference)).check(reference.iloc[:400])
    methods = {c.column: c.method for c in result.columns}
    assert methods == {"x": "ks", "few": "chisquare", "flag": "z", "cat": "chisquare"}


def test_benjamini_hochberg_matches_the_step_up_rule() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.5, 0.002])
    # sorted: 0.002, 0.01, 0.03, 0.04, 0.5 vs 0.01, 0.02, 0.03, 0.04, 0.05
    assert benjamini_hochberg(p, 0.05).tolist() == [True, True, True, False, True]
    assert benjamini_hochberg(np.array([]), 0.05).tolist() == []


def test_benjamini_hochberg_steps_up_past_a_p_value_over_its_own_cut_off() -> None:
    """The vector above rejects the same under step-down; these do not. [0.03, 0.04] at
    0.05: the smallest p is over its cut-off 0.025, the largest is under its 0.05, so the
    step-up rule rejects both (step-down and Bonferroni's 0.025 reject neither)."""
    assert benjamini_hochberg(np.array([0.03, 0.04]), 0.05).tolist() == [True, True]
    assert benjamini_hochberg(np.array([0.04, 0.03]), 0.05).tolist() == [True, True]
    # cut-offs 0.0167, 0.0333, 0.05: 0.04 misses its own but 0.045 passes the last
    assert benjamini_hochberg(np.array([0.045, 0.01, 0.04]), 0.05).tolist() == [True] * 3
    assert benjamini_hochberg(np.array([0.03, 0.06]), 0.05).tolist() == [False, False]


def test_fdr_and_bonferroni_differ_on_a_golden_pair_of_binary_columns() -> None:
    """Two binary columns (400 reference rows each: the z-test), shifted from a 50 % "b"
    share to 230/400 and 229/400: two-sided p = 0.03339 and 0.03978 (scipy's 2x2
    chi-square test without correction agrees). With m = 2 and alpha = 0.05,
    Bonferroni's cut-off 0.025 rejects neither; Benjamini-Hochberg rejects both (the
    larger p is under 2/2 * 0.05), so its cut-off is 0.05."""
    reference = pd.DataFrame(
        {"u": ["a"] * 200 + ["b"] * 200, "v": ["a"] * 200 + ["b"] * 200}, dtype=object
    )
    current = pd.DataFrame(
        {"u": ["a"] * 170 + ["b"] * 230, "v": ["a"] * 171 + ["b"] * 229}, dtype=object
    )
    profile = ReferenceProfile.build(reference)
    expected = {
        "u": stats.chi2_contingency([[200, 200], [170, 230]], correction=False).pvalue,
        "v": stats.chi2_contingency([[200, 200], [171, 229]], correction=False).pvalue,
    }
    assert expected == pytest.approx({"u": 0.03339418118368212, "v": 0.039780563112074736})

    fdr = DriftDetector(profile, dataset_rule="fdr", alpha=0.05).check(current)
    assert {c.column: c.method for c in fdr.columns} == {"u": "z", "v": "z"}
    assert {c.column: c.p_value for c in fdr.columns} == pytest.approx(expected)
    assert fdr.drifted_columns == ("u", "v") and fdr.dataset_drift
    assert [(c.threshold, c.status) for c in fdr.columns] == [(0.05, "drift")] * 2

    bonferroni = DriftDetector(profile, dataset_rule="bonferroni", alpha=0.05).check(current)
    assert {c.column: c.p_value for c in bonferroni.columns} == pytest.approx(expected)
    assert bonferroni.drifted_columns == () and not bonferroni.dataset_drift
    assert [(c.threshold, c.status) for c in bonferroni.columns] == [(0.025, "ok")] * 2


@pytest.mark.parametrize("rows", [100, 300])
def test_a_small_window_of_unchanged_traffic_rarely_drifts(rows: int) -> None:
    """evidently picks distances (threshold 0.1) by the reference's size alone; their
    sampling noise at a few hundred current rows is about that threshold, and 94 % of
    100-row windows of unchanged traffic raised dataset drift (71 % of columns). The
    smaller of the two samples picks the method: p-value tests under 1000 rows."""
    rng = np.random.default_rng(1)
    reference = pd.DataFrame(rng.normal(size=(5000, 4)), columns=list("abcd"))
    profile = ReferenceProfile.build(reference)
    detector = DriftDetector(profile, min_rows=100)
    alarms = [
        detector.check(pd.DataFrame(rng.normal(size=(rows, 4)), columns=list("abcd")))
        for _ in range(100)
    ]
    assert {c.method for c in alarms[0].columns} == {"ks"}
    assert sum(a.dataset_drift for a in alarms) <= 5
    big = detector.check(pd.DataFrame(rng.normal(size=(2000, 4)), columns=list("abcd")))
    assert {c.method for c in big.columns} == {"wasserstein"}


def _classes(rng: np.random.Generator, shares: np.ndarray, n: int) -> pd.DataFrame:
    """A numeric feature and a multiclass model's ``__prediction__`` column."""
    labels = np.array([f"class{k}" for k in range(shares.size)], dtype=object)
    return pd.DataFrame(
        {"x": rng.normal(size=n), "__prediction__": rng.choice(labels, n, p=shares)}
    )


@pytest.mark.parametrize(
    ("classes", "rows"), [(100, 1100), (300, 5000)], ids=["100-classes", "300-classes"]
)
def test_a_column_with_many_categories_rarely_drifts_on_unchanged_traffic(
    classes: int, rows: int
) -> None:
    """A/A: above 1000 rows a categorical column gets Jensen-Shannon, whose sampling noise
    grows with the number of categories: 100 classes at 1100 rows measured a median
    distance of 0.119 on unchanged traffic, over the fixed 0.1, and 98 % of windows drifted
    (every one under "fdr", where distances skip the correction). The distance must also
    exceed its (1 - alpha) quantile under resampling: about alpha of 40 windows drift."""
    rng = np.random.default_rng(classes)
    shares = rng.dirichlet(np.full(classes, 2.0))
    reference = _classes(rng, shares, 5000)
    profile = ReferenceProfile.build(reference, column_types={"x": "num", "__prediction__": "cat"})
    detector = DriftDetector(profile, dataset_rule="fdr")
    results = [detector.check(_classes(rng, shares, rows)) for _ in range(40)]
    assert {r.column("__prediction__").method for r in results} == {"jensenshannon"}
    assert sum(r.dataset_drift for r in results) <= 5
    for verdict in (r.column("__prediction__") for r in results):
        assert verdict.statistic is not None
        assert verdict.drifted == (verdict.statistic >= verdict.threshold)
        assert verdict.threshold >= 0.1


def test_a_column_with_many_categories_still_drifts_when_its_shares_change() -> None:
    """100 classes at 1100 rows, the 50 rarer classes losing half their traffic to the 50
    commoner ones: a distance well over the sampling noise's quantile."""
    rng = np.random.default_rng(3)
    shares = np.sort(rng.dirichlet(np.full(100, 2.0)))
    profile = ReferenceProfile.build(
        _classes(rng, shares, 5000), column_types={"x": "num", "__prediction__": "cat"}
    )
    moved = shares.copy()
    moved[:50] *= 0.5
    moved[50:] *= (1 - moved[:50].sum()) / moved[50:].sum()
    detector = DriftDetector(profile, dataset_rule="fdr")
    results = [detector.check(_classes(rng, moved, 1100)) for _ in range(10)]
    assert all(r.column("__prediction__").drifted for r in results)
