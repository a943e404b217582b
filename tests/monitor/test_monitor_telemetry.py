"""Serving-cost model on synthetic telemetry where p99 latency grows with
``n_estimators * max_depth`` (times 1.3 for the ``dart`` booster) and memory with
``n_estimators * 2**max_depth``; ``learning_rate`` costs nothing. Tolerance: median
relative error of held-out predictions below 15 %."""

from __future__ import annotations

import numpy as np
import pytest

from monitor import (
    EstimationError,
    HyperparameterTelemetry,
    HyperparameterValue,
    LatencySummary,
    ServingCostModel,
)


def _telemetry(rng: np.random.Generator, n: int) -> list[HyperparameterTelemetry]:
    rows = []
    for _ in range(n):
        n_est, depth = int(rng.integers(10, 500)), int(rng.integers(2, 12))
        booster = str(rng.choice(["gbtree", "dart"]))
        lr = float(rng.uniform(0.01, 0.3))
        noise = rng.lognormal(0, 0.08)
        latency = 2e-6 * n_est * depth * (1.3 if booster == "dart" else 1.0) * noise
        memory = 4e6 + 300.0 * n_est * 2**depth * rng.lognormal(0, 0.05)
        hp: dict[str, HyperparameterValue] = {
            "n_estimators": n_est,
            "max_depth": depth,
            "learning_rate": lr,
            "booster": booster,
        }
        rows.append(
            HyperparameterTelemetry(hyperparameters=hp, latency_p99_s=latency, memory_bytes=memory)
        )
    return rows


def test_latency_summary_matches_numpy_percentiles() -> None:
    samples = np.random.default_rng(0).exponential(0.01, 5000)
    summary = LatencySummary.from_samples(np.r_[samples, np.nan, -1.0])
    assert summary.n == 5000
    assert summary.p50 == pytest.approx(np.quantile(samples, 0.5))
    assert summary.p99 == pytest.approx(np.quantile(samples, 0.99))
    assert LatencySummary.from_samples([]) == LatencySummary(p50=None, p90=None, p99=None, n=0)


def test_cost_model_ranks_and_predicts_latency_and_memory() -> None:
    rng = np.random.default_rng(1)
    model = ServingCostModel.fit(_telemetry(rng, 80))
    report = model.report
    assert report.get("n_estimators").latency_rho > 0.4  # type: ignore[operator]
    assert report.get("max_depth").latency_rho > 0.3  # type: ignore[operator]
    assert abs(report.get("learning_rate").latency_rho or 0.0) < 0.3
    assert {c.name for c in report.correlations} == {"n_estimators", "max_depth", "learning_rate"}

    held_out = _telemetry(rng, 40)
    lat_err = [
        abs(model.predict(r.hyperparameters).latency_p99_s / r.latency_p99_s - 1) for r in held_out
    ]
    mem_err = [
        abs(model.predict(r.hyperparameters).memory_bytes / r.memory_bytes - 1) for r in held_out
    ]
    assert np.median(lat_err) < 0.15
    assert np.median(mem_err) < 0.15


def test_cost_model_rejects_configs_over_the_latency_ceiling() -> None:
    model = ServingCostModel.fit(_telemetry(np.random.default_rng(2), 80))
    small: dict[str, HyperparameterValue] = {
        "n_estimators": 50,
        "max_depth": 3,
        "learning_rate": 0.1,
        "booster": "gbtree",
    }
    large: dict[str, HyperparameterValue] = {
        "n_estimators": 480,
        "max_depth": 11,
        "learning_rate": 0.1,
        "booster": "dart",
    }
    ceiling = 2e-6 * 200 * 6  # a 200-tree, depth-6 gbtree model
    assert model.within_limits(small, latency_ceiling_s=ceiling)
    assert not model.within_limits(large, latency_ceiling_s=ceiling)
    assert model.predict(large).latency_p99_s > model.predict(small).latency_p99_s


def test_cost_model_needs_enough_rows() -> None:
    with pytest.raises(EstimationError, match="min_rows=5"):
        ServingCostModel.fit(_telemetry(np.random.default_rng(3), 3))


def _rows_with_c(values: list[float]) -> list[HyperparameterTelemetry]:
    return [
        HyperparameterTelemetry(
            hyperparameters={"C": v, "depth": i + 1},
            latency_p99_s=0.01 * (i + 1),
            memory_bytes=1e6 * (i + 1),
        )
        for i, v in enumerate(values)
    ]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_hyperparameter_is_refused_by_name_and_value(bad: float) -> None:
    """NaN or inf in one row reached ridge regression, which raised scikit-learn's raw
    "Input X contains NaN" ValueError."""
    with pytest.raises(EstimationError) as info:
        ServingCostModel.fit(_rows_with_c([1.0, 2.0, bad, 4.0, 5.0]))
    assert str(info.value) == (
        f"hyperparameter 'C' must be a finite number, got {bad!r} in telemetry row 2"
    )
    model = ServingCostModel.fit(_rows_with_c([1.0, 2.0, 3.0, 4.0, 5.0]))
    with pytest.raises(EstimationError, match=r"hyperparameter 'C' must be a finite number"):
        model.predict({"C": bad, "depth": 2})


def test_hyperparameters_near_the_float_limit_are_fitted() -> None:
    """Values of 1e308 overflowed the column means to inf (and the standardised features
    to NaN); the features are standardised in units of a power of two per column."""
    model = ServingCostModel.fit(_rows_with_c([1e308, 1e308, 1.0, 2.0, 3.0]))
    cost = model.predict({"C": 1.0, "depth": 2})
    assert np.isfinite(cost.latency_p99_s) and np.isfinite(cost.memory_bytes)
    assert model.report.get("C").n == 5
    for c in (1e308, -1e308, 0.0):
        far = model.predict({"C": c, "depth": 5})
        assert np.isfinite(far.latency_p99_s) and np.isfinite(far.memory_bytes)
