"""The serving-cost predictor a retune screens configurations with
(:func:`retune.warmstart.family_cost_predictor`): one served configuration of a family
stood for every configuration of it, and a family with none served was predicted to
cost nothing. Numbers are the reviewer's (/work/main, binary_tabular space): a served
gradient boosting of 200 trees x depth 5 at p99 1.82 ms, 14.87 MiB, against ceilings of
221 us and 14.6 MiB (1.2 x the logistic champion's p99, its memory x 1.5)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from retune.space import SearchSpace, load_search_space
from retune.warmstart import CostCeiling, CostSample, family_cost_predictor

CEILING = CostCeiling(max_latency_p99_s=2.21e-4, max_memory_bytes=15_323_136)
CHAMPION = CostSample(
    params={"estimator": "logistic", "C": 1.0}, latency_p99_s=1.84e-4, memory_bytes=10.2e6
)


def _gb(n: int, depth: int, **others: Any) -> dict[str, Any]:
    return {"estimator": "gradient_boosting", "gb_n_estimators": n, "gb_max_depth": depth, **others}


SLOW_GB = CostSample(params=_gb(200, 5), latency_p99_s=1.82e-3, memory_bytes=15.6e6)


def _space() -> SearchSpace:
    root = Path(__file__).resolve().parents[2]
    return load_search_space(root / "configs" / "search_spaces" / "binary_tabular.yaml")


def test_one_slow_gradient_boosting_sample_does_not_reject_a_small_one() -> None:
    predict = family_cost_predictor([CHAMPION, SLOW_GB], _space())
    assert CEILING.violation(*predict(_gb(10, 1))) is None  # measured bare: 0.65-1.2 x champion
    assert CEILING.violation(*predict(_gb(100, 3, gb_learning_rate=0.3))) is None


def test_a_configuration_at_least_as_big_as_a_measured_too_slow_one_is_rejected() -> None:
    predict = family_cost_predictor([CHAMPION, SLOW_GB], _space())
    assert CEILING.violation(*predict(_gb(200, 5))) is not None
    # the other parameters (scaler, learning rate) do not make the trees smaller
    bigger = _gb(200, 5, scaler="robust", gb_learning_rate=0.01, gb_subsample=0.5)
    assert CEILING.violation(*predict(bigger)) is not None
    small_too_slow = CostSample(params=_gb(20, 2), latency_p99_s=5e-2, memory_bytes=11e6)
    predict = family_cost_predictor([CHAMPION, small_too_slow], _space())
    assert "latency" in (CEILING.violation(*predict(_gb(150, 4))) or "")
    assert CEILING.violation(*predict(_gb(10, 2))) is None  # smaller: one sample says nothing


def test_a_family_with_no_sample_is_neither_predicted_nor_rejected() -> None:
    predict = family_cost_predictor([CHAMPION, SLOW_GB], _space())
    forest = {
        "estimator": "random_forest",
        "forest_n_estimators": 200,
        "forest_max_depth": 12,
        "forest_min_samples_leaf": 1,
    }
    latency, memory = predict(forest)
    assert (latency, memory) != (0.0, 0.0)
    assert math.isnan(latency) and math.isnan(memory)  # no prediction, not "costs nothing"
    assert CEILING.violation(latency, memory) is None
    assert predict.notes() == (
        "no serving-cost telemetry for family random_forest: not screened",
        "no serving-cost telemetry for family extra_trees: not screened",
        "family gradient_boosting: 1 served configuration, too few (< 3, of two sizes or "
        "more) to fit how its cost grows with its size: one at least as big as a served one "
        "is predicted to cost at least as much, one past the largest served size (trees x "
        "depth for latency, trees x 2**depth / leaf size for memory) in proportion to that "
        "size above the fixed part a served logistic or ridge measured; any other is not "
        "screened",
    )


def test_a_configuration_no_bigger_than_a_measured_one_that_passed_is_never_rejected() -> None:
    """Three samples fit a size curve; noise in them must not reject a configuration a
    served, passing one shows to be affordable."""
    samples = [
        CHAMPION,
        CostSample(params=_gb(10, 1), latency_p99_s=1.5e-4, memory_bytes=10.3e6),
        CostSample(params=_gb(50, 3), latency_p99_s=2.0e-4, memory_bytes=11e6),
        CostSample(params=_gb(200, 5), latency_p99_s=2e-3, memory_bytes=15.6e6),
    ]
    predict = family_cost_predictor(samples, _space())
    assert CEILING.violation(*predict(_gb(50, 3))) is None
    assert CEILING.violation(*predict(_gb(40, 2))) is None
    assert CEILING.violation(*predict(_gb(200, 5))) is not None
    # fitted on three sizes: a configuration between the passing and the failing ones
    # costs something in between, and a bigger one than the failing one more than it
    latency, _ = predict(_gb(100, 4))
    assert 2.0e-4 <= latency <= 2e-3
    assert predict(_gb(200, 5))[0] >= 2e-3
