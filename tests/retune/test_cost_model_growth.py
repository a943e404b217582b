"""How the serving-cost predictor (:func:`retune.warmstart.family_cost_predictor`) grows
a family's cost past its served configurations. Every load memory the registry measures
holds onnxruntime's one-time start-up (about 8 MiB) and every p99 a fixed per-call
overhead; a power law fitted to such near-constant totals came out with an exponent of
about 0.02, and configurations the promotion memory guardrail refuses were proposed and
trained. The reviewer's figures (shadow.inspect_candidate): logistic champion 8.16 MiB
(ceiling x 1.5: 12.23 MiB); gradient boosting 200 x 5 predicted 10.10 MiB, measured
13.86 MiB; random forest 200 x 12 predicted 13.64 MiB, measured 60.55 MiB."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from retune.warmstart import CostCeiling, CostSample
from retune.warmstart._cost_model import FamilyCostPredictor

MiB = 2**20
START_UP = 8 * MiB  # onnxruntime's, in every load memory
PER_NODE = 2000.0  # bytes per stored node (trees x 2**depth)
PER_CALL = 60e-6  # seconds of every p99, whatever the model
PER_VISIT = 1.5e-6  # seconds per node a row visits (trees x depth)
FAMILIES = ("gradient_boosting", "random_forest")


def _gb(n: int, depth: int) -> dict[str, Any]:
    return {"estimator": "gradient_boosting", "gb_n_estimators": n, "gb_max_depth": depth}


def _rf(n: int, depth: int, leaf: int = 1) -> dict[str, Any]:
    return {
        "estimator": "random_forest",
        "forest_n_estimators": n,
        "forest_max_depth": depth,
        "forest_min_samples_leaf": leaf,
    }


def _linear_gb(n: int, depth: int) -> CostSample:
    """A gradient boosting costing a fixed amount plus so much per node."""
    return CostSample(
        params=_gb(n, depth),
        latency_p99_s=PER_CALL + PER_VISIT * n * depth,
        memory_bytes=START_UP + PER_NODE * n * 2**depth,
    )


def test_a_configuration_ten_times_the_largest_served_costs_at_least_what_it_measures() -> None:
    served = [_linear_gb(10, 2), _linear_gb(20, 2), _linear_gb(40, 3)]  # 40, 80, 320 nodes
    predict = FamilyCostPredictor(served, FAMILIES)
    bigger = _linear_gb(100, 5)  # 3,200 nodes, 10 x the largest served
    latency, memory = predict(bigger.params)
    assert memory >= bigger.memory_bytes * (1 - 1e-9)
    assert latency >= bigger.latency_p99_s * (1 - 1e-9)
    # as the guardrail would next to a champion of the start-up alone (x 1.5): refused
    ceiling = CostCeiling(max_memory_bytes=int(1.5 * START_UP))
    assert bigger.memory_bytes > ceiling.max_memory_bytes  # type: ignore[operator]
    assert "memory" in (ceiling.violation(latency, memory) or "")


def test_past_the_largest_served_size_a_concave_cost_is_not_under_predicted() -> None:
    """Cost that grows slower than the size (trees that do not fill 2**depth) is
    extrapolated as if it grew in proportion: too high rather than too low."""

    def concave(n: int, depth: int) -> CostSample:
        return CostSample(
            params=_rf(n, depth),
            latency_p99_s=PER_CALL + PER_VISIT * (n * depth) ** 0.7,
            memory_bytes=START_UP + PER_NODE * (n * 2**depth) ** 0.7,
        )

    predict = FamilyCostPredictor([concave(20, 3), concave(40, 4), concave(60, 5)], FAMILIES)
    for n, depth in ((120, 10), (200, 12)):
        truth = concave(n, depth)
        latency, memory = predict(truth.params)
        assert memory >= truth.memory_bytes
        assert latency >= truth.latency_p99_s


def test_within_the_served_sizes_the_cost_stays_between_its_neighbours() -> None:
    served = [_linear_gb(10, 2), _linear_gb(20, 2), _linear_gb(40, 3), _linear_gb(80, 4)]
    predict = FamilyCostPredictor(served, FAMILIES)
    latency, memory = predict(_gb(30, 3))  # 240 nodes, between 80 and 320
    assert served[1].memory_bytes <= memory <= served[2].memory_bytes
    assert memory == pytest.approx(_linear_gb(30, 3).memory_bytes, rel=1e-6)
    assert served[1].latency_p99_s <= latency <= served[3].latency_p99_s


def test_served_costs_that_do_not_grow_predict_no_growth() -> None:
    """The fixed part alone (sizes the measurement cannot tell apart) is no reason to
    refuse a bigger configuration: nothing in the samples says it costs more."""
    flat = [
        CostSample(params=_gb(n, d), latency_p99_s=PER_CALL, memory_bytes=START_UP)
        for n, d in ((10, 2), (20, 2), (40, 3))
    ]
    latency, memory = FamilyCostPredictor(flat, FAMILIES)(_gb(100, 5))
    assert memory == pytest.approx(START_UP)
    assert latency == pytest.approx(PER_CALL)


@pytest.mark.slow
def test_real_gradient_boosting_memory_ten_times_the_largest_served_is_not_under_predicted() -> (
    None
):
    """Load memory as every registration measures it (shadow.inspect_candidate: a probe
    process, onnxruntime's start-up included) of three small served gradient boostings
    and of one 10 x the largest."""
    from sklearn.ensemble import GradientBoostingClassifier

    from retune import to_onnx
    from shadow import inspect_candidate
    from tunewatch._example import example_data

    x, y = example_data(1000, n_features=8, seed=0)

    def measured(n: int, depth: int) -> CostSample:
        model = GradientBoostingClassifier(n_estimators=n, max_depth=depth, random_state=0)
        data = to_onnx(model.fit(x, y), 8, name=f"gb_{n}_{depth}")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "model.onnx")
            path.write_bytes(data)
            memory = inspect_candidate(path).load_memory_bytes
        return CostSample(params=_gb(n, depth), latency_p99_s=0.0, memory_bytes=memory)

    served = [measured(10, 2), measured(20, 2), measured(40, 3)]
    bigger = measured(100, 5)
    assert bigger.memory_bytes > max(s.memory_bytes for s in served)  # it does grow
    _, memory = FamilyCostPredictor(served, FAMILIES)(bigger.params)
    assert memory >= bigger.memory_bytes
