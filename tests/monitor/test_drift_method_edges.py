"""Edges of single drift methods: a configured Z-test meeting a third value, and
Wasserstein's verdict on columns whose values are small (STYLE #18: seeded streams with
the expected verdict, shifted and unchanged)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitor.drift import (
    ChiSquare,
    ColumnDriftConfig,
    ColumnSummary,
    DriftDetector,
    ReferenceProfile,
    Wasserstein,
    ZTest,
)


def _summary(values: np.ndarray, kind: str) -> ColumnSummary:
    frame = pd.DataFrame({"x": values})
    return ReferenceProfile.build(frame, column_types={"x": kind}).columns["x"]  # type: ignore[dict-item]


# --- Z-test: two values only ---------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        (  # a 0/1 flag whose 1s all become 2s (the share of 0 does not move)
            (np.random.default_rng(0).random(2000) < 0.3).astype(float),
            np.where(np.random.default_rng(1).random(500) < 0.3, 2.0, 0.0),
        ),
        (  # a two-level category that gains a third level on a quarter of the rows
            np.random.default_rng(0).choice(np.array(["a", "b"], dtype=object), 2000),
            np.random.default_rng(1).choice(
                np.array(["a", "b", "c"], dtype=object), 500, p=[0.375, 0.375, 0.25]
            ),
        ),
    ],
    ids=["flag-1-becomes-2", "category-gains-level"],
)
def test_a_configured_z_test_meeting_a_third_value_is_chi_square_and_drifts(
    reference: np.ndarray, current: np.ndarray
) -> None:
    """The Z-test compared the first value (sorted as text) against all others: the flag
    whose every 1 became a 2 was p = 0.86, no drift. With a third value the column is
    tested by chi-square, and the verdict says so in ``method``."""
    kind = "cat" if reference.dtype == object else "num"
    profile = ReferenceProfile.build(pd.DataFrame({"x": reference}), column_types={"x": kind})
    detector = DriftDetector(profile, columns={"x": ColumnDriftConfig(method="z")})
    verdict = detector.check(pd.DataFrame({"x": current})).column("x")
    expected = ChiSquare().test(profile.columns["x"], current)
    assert verdict.method == "chisquare"
    assert verdict.status == "drift" and verdict.drifted
    assert verdict.statistic == expected.statistic and verdict.p_value == expected.p_value
    assert verdict.p_value is not None and verdict.p_value < 1e-20


def test_z_test_on_two_values_is_the_two_proportion_test() -> None:
    """Reference 600 a / 400 b, window 500 / 500: the share of ``b`` moves from 0.4 to
    0.5, ``z = -0.1 / sqrt(0.45 * 0.55 * 2 / 1000) = -4.4947``."""
    reference = np.array(["a"] * 600 + ["b"] * 400, dtype=object)
    current = np.array(["a"] * 500 + ["b"] * 500, dtype=object)
    result = ZTest().test(_summary(reference, "cat"), current)
    z = -0.1 / np.sqrt(0.45 * 0.55 * 2 / 1000)
    assert z == pytest.approx(-4.4947, abs=1e-4)
    assert result.method == "z" and result.status == "drift"
    assert result.statistic == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)


def test_z_test_on_a_flag_that_takes_only_one_of_its_two_values_stays_z() -> None:
    """Two values over reference and window (the window holding one of them) are still
    the Z-test's."""
    rng = np.random.default_rng(2)
    summary = _summary((rng.random(2000) < 0.3).astype(float), "num")
    result = ZTest().test(summary, np.zeros(500))
    assert result.method == "z" and result.status == "drift"
    unchanged = ZTest().test(summary, (rng.random(500) < 0.3).astype(float))
    assert unchanged.method == "z" and unchanged.status == "ok"


# --- Wasserstein: the verdict does not depend on the column's unit --------------------


def _normal_streams(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 5,000-row reference, a window shifted by half a standard deviation and an
    unchanged window, all standard normal and seeded."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, 5000), rng.normal(0.5, 1, n), rng.normal(0, 1, n)


@pytest.mark.parametrize("n", [200, 5000], ids=["200-rows", "5000-rows"])
def test_wasserstein_verdicts_are_the_same_in_any_unit(n: int) -> None:
    """The same seeded streams times 1 and times 1e-5 (a rate, a probability). Divided by
    ``max(std, 0.001)``, a column of std 1e-5 scored 1 % of its distance: half a standard
    deviation was 0.005, under 0.1, at any window size."""
    reference, shifted, stationary = _normal_streams(7, n)
    verdicts = {}
    for unit in (1.0, 1e-5):
        summary = _summary(reference * unit, "num")
        verdicts[unit] = (
            Wasserstein().test(summary, shifted * unit),
            Wasserstein().test(summary, stationary * unit),
        )
    for unit, (moved, unchanged) in verdicts.items():
        assert moved.status == "drift", (unit, moved)
        assert unchanged.status == "ok", (unit, unchanged)
    for one, small in zip(verdicts[1.0], verdicts[1e-5], strict=True):
        assert small.statistic == pytest.approx(one.statistic, rel=1e-9)
        assert small.threshold == pytest.approx(one.threshold, rel=1e-9)


def test_detector_sees_a_rare_event_score_rise_at_5000_rows() -> None:
    """A rare-event classifier's probability (about 1e-4, log-normal): every score x 1.6.
    KS saw it at 800 rows; the default Wasserstein at 5,000 scored 0.069 and did not."""
    rng = np.random.default_rng(3)
    reference = np.exp(rng.normal(np.log(1e-4), 0.5, 5000))
    detector = DriftDetector(ReferenceProfile.build(pd.DataFrame({"p": reference})))
    moved = detector.check(pd.DataFrame({"p": 1.6 * np.exp(rng.normal(np.log(1e-4), 0.5, 5000))}))
    same = detector.check(pd.DataFrame({"p": np.exp(rng.normal(np.log(1e-4), 0.5, 5000))}))
    assert moved.column("p").method == "wasserstein" and moved.column("p").drifted
    assert same.column("p").method == "wasserstein" and not same.column("p").drifted


def test_a_constant_reference_keeps_evidently_s_unit() -> None:
    """5,000 rows of 0.1 have a standard deviation of 1.4e-17 (rounding): the distance is
    then in evidently's unit of 0.001, not in units of that noise. Half the window moves
    by 1e-5: a distance of 5e-6, 0.005 units."""
    reference = np.full(5000, 0.1)
    assert 0.0 < float(np.std(reference)) < 1e-15
    current = np.r_[np.full(1000, 0.1), 0.1 + np.linspace(1e-5, 1.1e-5, 1000)]
    result = Wasserstein().test(_summary(reference, "num"), current)
    expected = stats.wasserstein_distance(reference, current) / 0.001
    assert result.statistic == pytest.approx(expected, rel=1e-9)
    assert result.status == "ok"
