"""A distance set per column in config on a continuous column must hold its level on
small windows (STYLE #18: A/A simulations and golden change points).

The default chooser picks distances only above 1000 rows, but a configured method skips
it: with a 1500-row reference and 100-row windows of unchanged traffic, a configured
Wasserstein drifted 73 % of columns (dataset drift in 97.5 % of windows), Jensen-Shannon
over Sturges bins 81 % and PSI over decile bins 43 %, since none had a sampling-noise
floor on continuous columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor.drift import (
    METHODS,
    ColumnDriftConfig,
    DriftDetector,
    NumericSummary,
    ReferenceProfile,
)

DISTANCES = ["wasserstein", "jensenshannon", "psi"]
COLUMNS = ("normal", "lognormal", "exponential", "uniform")
ALPHA = 0.05


def _frame(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> pd.DataFrame:
    """Four continuous columns of different shapes; ``shift`` moves ``normal`` by that many
    standard deviations."""
    return pd.DataFrame(
        {
            "normal": rng.normal(shift, 1.0, n),
            "lognormal": rng.lognormal(1.0, 0.5, n),
            "exponential": rng.exponential(2.0, n),
            "uniform": rng.uniform(0.0, 1.0, n),
        }
    )


def _detector(method: str, reference: pd.DataFrame) -> DriftDetector:
    return DriftDetector(
        ReferenceProfile.build(reference),
        columns={c: ColumnDriftConfig(method=method) for c in COLUMNS},  # type: ignore[arg-type]
        dataset_rule="share",
        alpha=ALPHA,
        min_rows=100,
    )


@pytest.mark.parametrize("method", DISTANCES)
def test_a_configured_distance_rarely_drifts_on_small_windows_of_unchanged_traffic(
    method: str,
) -> None:
    """A/A: 200 seeded 100-row windows against a 1500-row reference. Columns drift in at
    most 2 * alpha of the 800 column checks, the dataset in at most alpha of the windows,
    and a verdict whose distance reached 0.1 without drifting reports the raised cut-off
    (its noise floor) as its threshold. One column against one reference may sit further
    from alpha (the reference's own sampling noise moves it: KS ranged from 1.5 % to
    10.5 % over 40 references of this size), so each column is held to 3 * alpha."""
    rng = np.random.default_rng(20)
    detector = _detector(method, _frame(rng, 1500))
    results = [detector.check(_frame(rng, 100)) for _ in range(200)]
    rates = {
        column: float(np.mean([r.column(column).drifted for r in results])) for column in COLUMNS
    }
    assert float(np.mean(list(rates.values()))) <= 2 * ALPHA, rates
    assert all(rate <= 3 * ALPHA for rate in rates.values()), rates
    assert sum(r.dataset_drift for r in results) <= ALPHA * len(results)
    for verdict in (v for r in results for v in r.columns):
        assert verdict.statistic is not None and verdict.threshold >= 0.1
        assert verdict.drifted == (verdict.statistic >= verdict.threshold)
    assert any(v.threshold > 0.1 for r in results for v in r.columns)


@pytest.mark.parametrize("method", DISTANCES)
def test_a_configured_distance_still_sees_a_one_sd_shift_at_200_rows(method: str) -> None:
    """Golden: ``normal`` moves by one standard deviation in every one of 20 seeded 200-row
    windows; the other three columns do not move. The floor raises the cut-off at 200 rows
    but the shift is far over it: all 20 windows drift on ``normal``."""
    rng = np.random.default_rng(21)
    detector = _detector(method, _frame(rng, 1500))
    results = [detector.check(_frame(rng, 200, shift=1.0)) for _ in range(20)]
    verdicts = [r.column("normal") for r in results]
    assert all(v.drifted and v.status == "drift" for v in verdicts), [
        (v.statistic, v.threshold) for v in verdicts
    ]


@pytest.mark.parametrize("method", DISTANCES)
def test_the_noise_floor_shrinks_with_the_window_and_is_seeded(method: str) -> None:
    """The floor is the distance's ``1 - alpha`` quantile under resampling: the same for
    the same inputs (a seeded generator), and smaller for a larger window."""
    rng = np.random.default_rng(22)
    reference = rng.normal(size=1500)
    summary = ReferenceProfile.build(pd.DataFrame({"x": reference})).columns["x"]
    assert isinstance(summary, NumericSummary)
    distance = METHODS[method](threshold=1e-9, alpha=ALPHA)  # every distance asks the floor
    small = rng.normal(size=100)
    first = distance.test(summary, small, min_rows=30)
    again = distance.test(summary, small, min_rows=30)
    large = distance.test(summary, rng.normal(size=1000), min_rows=30)
    assert first.threshold == again.threshold
    assert first.threshold > large.threshold > 1e-9


@pytest.mark.parametrize("method", DISTANCES)
def test_large_windows_keep_evidently_s_threshold(method: str) -> None:
    """At the sizes evidently picks distances for (20,000-row windows, a 10,000-value
    reference sample) the floor is under 0.1: a 0.5 sd shift drifts at threshold 0.1."""
    rng = np.random.default_rng(23)
    summary = ReferenceProfile.build(pd.DataFrame({"x": rng.normal(size=20_000)})).columns["x"]
    result = METHODS[method]().test(summary, rng.normal(0.5, 1.0, 20_000))
    assert result.drifted and result.threshold == 0.1


def _ids(seed: int, n: int) -> np.ndarray:
    """``n`` distinct id-like strings."""
    rng = np.random.default_rng(seed)
    return rng.permutation(10**7)[:n].astype(str).astype(object)


@pytest.mark.parametrize("seed", range(5))
def test_an_id_column_split_at_random_is_not_drift(seed: int) -> None:
    """A/A on a column of distinct values (ids, free text), 5000 reference rows and a
    3000-row window from one set: every random split of the pooled counts is disjoint, so
    each draw and the observed distance are Jensen-Shannon's largest, sqrt(ln 2), and the
    floor equals the distance. Reaching the floor counted as drift: 29 of 30 seeds drifted
    (chi-square on a 900-row window of the same column: p = 1). A distance drifts only
    when it exceeds its floor."""
    ids = _ids(seed, 8000)
    profile = ReferenceProfile.build(pd.DataFrame({"x": ids[:5000]}))
    verdict = DriftDetector(profile).check(pd.DataFrame({"x": ids[5000:]})).column("x")
    assert verdict.method == "jensenshannon" and verdict.statistic is not None
    assert verdict.statistic == pytest.approx(np.sqrt(np.log(2)))
    assert verdict.threshold == pytest.approx(verdict.statistic)
    assert not verdict.drifted and verdict.status == "ok"


def test_a_configured_psi_on_an_id_column_split_at_random_is_not_drift() -> None:
    """The same tie for PSI: every split of distinct values gives one PSI, the floor."""
    ids = _ids(5, 8000)
    profile = ReferenceProfile.build(pd.DataFrame({"x": ids[:5000]}))
    detector = DriftDetector(profile, columns={"x": ColumnDriftConfig(method="psi")})
    verdict = detector.check(pd.DataFrame({"x": ids[5000:]})).column("x")
    assert verdict.statistic is not None and verdict.statistic > 0.1
    assert not verdict.drifted


def test_an_id_column_whose_window_repeats_one_value_is_drift() -> None:
    """The floor is no blind spot: a window of 3000 rows holding one new id 1000 times
    is far from every random split."""
    ids = _ids(6, 7000)
    profile = ReferenceProfile.build(pd.DataFrame({"x": ids[:5000]}))
    window = np.r_[ids[5000:7000], np.array(["same"] * 1000, dtype=object)]
    verdict = DriftDetector(profile).check(pd.DataFrame({"x": window})).column("x")
    assert verdict.method == "jensenshannon" and verdict.drifted
