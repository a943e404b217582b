"""The label-free estimate measures the decisions the objective makes: accuracy at the
objective's decision threshold, as the realised figures beside it.

Traffic is stationary: ``WINDOW`` rows of the example generator (the champion's own
population), scored by the real champion session and labelled with the generator's labels,
all matured. Every objective here decides "positive" at a positive-class probability of
0.2 (an accuracy or F-beta threshold; the cost matrix ``[[0, 1], [4, 0]]``, whose Bayes
decision is positive above 1 / (1 + 4)). The estimate at 0.5 read 0.744 of a window whose
accuracy at 0.2 is 0.656.

Tolerance: the estimate's interval is the normal interval of the Poisson-binomial
accuracy of ``WINDOW`` calibrated decisions (half-width 0.015 here), the sampling noise of
the realised accuracy around the estimate; it leaves out the calibration's own error
(:mod:`monitor._cbpe`), and the calibration rests on the reference's 1,500 labels, whose
accuracy is known to about ``sqrt(a (1 - a) / 1500)`` (0.012). The realised accuracy must
be within z = 1.96 of both sampling errors combined (0.027) of the estimate. The estimate
at 0.5 of the same window must not be (it is 0.09 away: the check tells the two
thresholds apart). Seeded: at 0.2 the estimate reads 0.641, the realised accuracy 0.656.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from monitor import CBPE
from monitor.objectives import decision_threshold, make_objective, positive_proba
from shadow import OnnxModel
from tests.tunewatch.conftest import MODEL, champion_answered
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data
from tunewatch._reference import Reference
from tunewatch.store import LabelItem

WINDOW = 3000
COST = [[0.0, 1.0], [4.0, 0.0]]  # a missed positive costs four false alarms


def _at_02(proba: np.ndarray) -> np.ndarray:
    return positive_proba(proba) >= 0.2


def _cost_decision(proba: np.ndarray) -> np.ndarray:
    """The cost objective's own decision: the class of least expected cost."""
    two = np.column_stack([1.0 - positive_proba(proba), positive_proba(proba)])
    return np.asarray((two @ np.asarray(COST)).argmin(axis=1) == 1)


OBJECTIVES: dict[str, tuple[dict[str, object], Callable[[np.ndarray], np.ndarray]]] = {
    "accuracy_at_0_2": ({"name": "accuracy", "params": {"threshold": 0.2}}, _at_02),
    "f_beta_at_0_2": ({"name": "f_beta", "params": {"threshold": 0.2}}, _at_02),
    "cost_four_to_one": ({"name": "cost", "params": {"cost_matrix": COST}}, _cost_decision),
}


def _serve(tmp_path: Path, champion: ExampleModel, objective: dict[str, object]) -> Daemon:
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "objective": objective,
                    "evaluation": {"window_rows": WINDOW, "drift": {"enabled": False}},
                }
            ],
        },
        env={},
    )
    d = Daemon(config, env={})
    d.registry.register(
        MODEL,
        champion.onnx,
        champion.metadata,
        actor="test",
        stage="champion",
        reference=champion.reference,
    )
    return d


def _traffic(d: Daemon, now: datetime) -> tuple[np.ndarray, np.ndarray]:
    """``WINDOW`` stationary requests received over the hour before ``now``, answered by
    the champion and labelled with their true labels; returns its outputs and the labels."""
    champion = d.store.champion(MODEL)
    assert champion is not None
    session = OnnxModel.from_bytes(d.artefacts.get(champion.artefact_sha256))
    x, y = example_data(WINDOW, seed=11)
    probs = session.primary(session.run(x))
    requests, outputs = [], []
    for i in range(WINDOW):
        at = now - timedelta(hours=1) + timedelta(seconds=i)
        request, output = champion_answered(
            f"r{i}", at, x[i : i + 1], probs[i : i + 1], version=champion.version
        )
        requests.append(request)
        outputs.append(output)
    d.store.write_records(requests, outputs)
    d.store.add_labels(
        MODEL, [LabelItem(request_id=f"r{i}", value=float(y[i])) for i in range(WINDOW)]
    )
    return probs, y


@pytest.mark.parametrize("case", sorted(OBJECTIVES))
def test_the_estimate_is_of_the_objectives_decisions(
    trained: list[ExampleModel], tmp_path: Path, case: str
) -> None:
    objective, decide = OBJECTIVES[case]
    reference = trained[0].reference
    assert isinstance(reference, Reference) and reference.labels is not None
    d = _serve(tmp_path, trained[0], objective)
    try:
        now = datetime.now(UTC)
        probs, y = _traffic(d, now)
        d.evaluator.clock = lambda: now + timedelta(days=2)  # every label has matured
        row = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["estimate"]
        champion = d.store.champion(MODEL)
        assert champion is not None
        session = OnnxModel.from_bytes(d.artefacts.get(champion.artefact_sha256))
        ref_probs = session.primary(session.run(np.asarray(reference.features, np.float32)))
        gauge = d.metrics.registry.get_sample_value(
            "tunewatch_objective_estimated",
            {"model": MODEL, "version": str(champion.version), "objective": "accuracy"},
        )
        named = {
            sample.labels["objective"]
            for metric in d.metrics.objective_estimated.collect()
            for sample in metric.samples
        }
    finally:
        d.close()
    p = row.payload
    realised = float((decide(probs) == (y == 1)).mean())
    ref_labels = np.asarray(reference.labels) == 1
    assert row.status == "ok", p
    assert p["realised"] == pytest.approx(realised) and p["n_labelled"] == WINDOW
    assert p["reference"] == pytest.approx(float((decide(ref_probs) == ref_labels).mean()))
    assert abs(p["estimated"] - realised) <= _tolerance(p["ci"], p["reference"], ref_labels.size)
    assert gauge == pytest.approx(p["estimated"])
    assert named == {"accuracy"}  # what it estimates, not the objective's name
    assert p["metric"] == "accuracy"
    # the estimate at 0.5 (what was exported) is not within it of the realised accuracy
    at_half = CBPE(seed=0).fit(positive_proba(ref_probs), ref_labels.astype(int))
    wrong = at_half.estimate(positive_proba(probs))
    ci = [wrong.ci_lo, wrong.ci_hi]
    assert abs(wrong.value - realised) > _tolerance(ci, p["reference"], ref_labels.size)


def _tolerance(ci: list[float], reference: float, n_reference: int) -> float:
    """z times the combined sampling error of the window's accuracy (the interval's half
    width over z) and of the reference's, on which the calibration rests."""
    z = 1.959963984540054
    window = (ci[1] - ci[0]) / 2 / z
    return z * float(np.sqrt(window**2 + reference * (1 - reference) / n_reference))


@pytest.mark.parametrize(
    "cost",
    [
        [[0, 1], [4, 0]],  # above 0.2
        [[0, 1], [1, 0]],  # above 0.5: at exactly 0.5 the tie decides negative
        [[0, 3], [1, 0]],  # above 0.75
        [[1, 0], [5, 0]],  # a positive decision never costs more: always positive
        [[1, 0], [1, 0]],  # the positive decision is free, whatever the label
        [[0, 2], [1, 3]],  # the negative decision always costs less
    ],
    ids=["fn4", "even", "fp3", "pos_dominates", "pos_free", "neg_dominates"],
)
def test_a_cost_matrix_is_estimated_at_the_threshold_its_decisions_follow(
    cost: list[list[float]],
) -> None:
    """The decisions at the derived threshold are the cost objective's own, its class of
    least expected cost (``CostWeightedError.per_request_loss``), at every probability of a
    float32 grid and at the exact thresholds."""
    threshold = decision_threshold(make_objective("cost", task="binary", cost_matrix=cost))
    assert threshold is not None
    p = np.r_[np.linspace(0.0, 1.0, 1001, dtype=np.float32).astype(np.float64), 0.2, 0.5, 0.75]
    least_cost = (np.column_stack([1.0 - p, p]) @ np.asarray(cost, dtype=np.float64)).argmin(1)
    np.testing.assert_array_equal(p >= threshold, least_cost == 1)


def test_a_cost_matrix_that_decides_positive_below_a_threshold_has_no_estimate() -> None:
    """Right decisions costing more than errors: positive below 2/3, no threshold above
    which the objective decides positive."""
    objective = make_objective("cost", task="binary", cost_matrix=[[2, 0], [0, 1]])
    assert decision_threshold(objective) is None


def test_objectives_without_a_decision_are_read_at_one_half() -> None:
    for name, params in (
        ("log_loss", {}),
        ("roc_auc", {}),
        ("recall_at_precision", {"min_precision": 0.9}),
    ):
        assert decision_threshold(make_objective(name, task="binary", **params)) == 0.5
