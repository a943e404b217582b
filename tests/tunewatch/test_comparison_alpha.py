"""The error rate of a family of DeLong tests: each test of ``k`` challengers starts at
Bonferroni's ``alpha / k``, and every look reports its p-value adjusted for the family."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats as sps

from monitor.objectives import LogLoss, RocAuc
from shadow.stats import GroupSequentialDeLong
from tests.tunewatch.conftest import MODEL
from tests.tunewatch.test_comparison_loop import (
    auc_daemon,  # noqa: F401  (fixture)
    oracle,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
    write,
)
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.comparison import ComparisonConfig
from tunewatch.comparison._looks import new_state


def test_a_test_started_beside_two_other_challengers_is_planned_at_alpha_over_three() -> None:
    """Three challengers at alpha 0.05: each DeLong test spends 0.05 / 3 over its five
    looks, O'Brien-Fleming bounds 5.784, 4.011, 3.217, 2.751, 2.441 (at 0.05 the last was
    2.031, and three such tests together could err at up to 0.15)."""
    settings = ComparisonConfig()
    state = new_state("delong", settings, RocAuc(), 3, 2)
    assert state["alpha"] == pytest.approx(0.05 / 3, rel=1e-12)
    assert state["planned_looks"] == 5
    bounds = GroupSequentialDeLong(
        alpha=state["alpha"], planned_looks=state["planned_looks"]
    ).critical_values()
    assert bounds == pytest.approx((5.784, 4.011, 3.217, 2.751, 2.441), abs=1e-3)
    # the first look spends 4 P(Z >= z_{alpha/16} / sqrt(0.2)), half on each side
    first = sps.norm.isf(2 * sps.norm.sf(sps.norm.isf(0.05 / 12) / np.sqrt(0.2)))
    assert bounds[0] == pytest.approx(first, rel=1e-9)
    paired = new_state("paired", settings, LogLoss(), 3, 2)
    assert paired["config"]["alpha"] == pytest.approx(0.05 / 3, rel=1e-12)


def test_delong_looks_of_three_challengers_report_bonferroni_adjusted_p_values(
    auc_daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    """v2 (the true probabilities), v3 (gradient boosting) and v4 (the champion's own
    answers) against v1: each test is stored at alpha / 3 before it looks, and each look
    reports ``min(1, 3 p)`` for a family of three (one look of 300 requests each)."""
    d = auc_daemon
    for i in range(2):  # v3 and v4 join v2 in shadow, each of its own dataset (not a retry)
        again = dataclasses.replace(trained[1].metadata, dataset_version=f"copy-{i}")
        d.registry.register(MODEL, trained[1].onnx, again, actor="t")
    loop = runner(d, delong_look_every=300, delong_looks=5)
    assert all(r.look is None for r in loop.run(MODEL))  # nothing labelled: no look yet
    tests = loop.comparisons.list_tests(MODEL, kind="delong")
    assert sorted(t.challenger_version for t in tests) == [2, 3, 4]
    assert [t.state["alpha"] for t in tests] == pytest.approx([0.05 / 3] * 3, rel=1e-12)
    t = traffic(trained, 300, seed=11)
    answers = {1: t.logistic, 2: oracle(t.x), 3: t.gbm, 4: t.logistic}
    write(d.store, ids=range(300), x=t.x, y=t.y, answers=answers)
    results = [r for r in loop.run(MODEL) if r.kind == "delong"]
    looks = {r.challenger_version: r.look for r in results if r.look is not None}
    assert sorted(looks) == [2, 3, 4]
    for version, look in looks.items():
        assert look.family_size == 3, version
        assert look.adjusted_p_value == pytest.approx(min(1.0, 3 * look.p_value), rel=1e-12)
    assert looks[4].p_value == 1.0  # the champion's own answers: z = 0
    assert 0 < looks[2].p_value < 1 / 3  # tripled
    assert looks[3].p_value > 1 / 3 and looks[3].adjusted_p_value == 1.0  # capped at 1
