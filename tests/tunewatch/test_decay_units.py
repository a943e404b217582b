"""The default decay threshold of a regression error does not depend on the target's unit.

Without ``decay.threshold`` the threshold was 5 ``tolerance`` (0.05) worse than where the
horizon began, in the objective's units: for RMSE and MAE that is the target's unit, so
one stream's RMSE tripling from 0.10 to 0.30 alarmed with the target in metres and not in
kilometres (a threshold 50 times the starting RMSE), and at large scales (millimetres)
any significant slope crossed 0.05 at once. RMSE and MAE now move their default
threshold 5 ``tolerance`` *of the starting level* (5 % by default); objectives whose
values have their own scale — bounded ones (accuracy, ROC AUC) and unit-free ones (log
loss, MAPE) — keep the absolute distance, and an explicit ``decay.threshold`` is read in
the objective's units as before.

Streams are written straight to a real SQLite store (the champion's outputs and labels;
decay scores what was recorded, so the champion needs no artefact) and judged by the
daemon's evaluator: hourly windows, labels matured at once, a 24-window horizon and a
crossing within a day, as in ``test_evaluation``'s tiny-first-window test.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.tunewatch.conftest import MODEL, champion_answered
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch.store import LabelItem

HOURS = 23
PER_HOUR = 300
DECAY = {"window_s": 3600, "maturity_s": 0, "horizon_windows": 24, "horizon_days": 1}
TOLERANCE = 0.01  # decay.tolerance's default


def _daemon(
    tmp_path: Path, *, task: str, objective: str, decay: dict[str, Any] | None = None
) -> Daemon:
    """A daemon whose model ``MODEL`` has a champion (v1) and only decay evaluated."""
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "models": [
                {
                    "name": MODEL,
                    "task": task,
                    "objective": {"name": objective},
                    "evaluation": {
                        "window_rows": 100,
                        "drift": {"enabled": False},
                        "estimate": {"enabled": False},
                        "decay": {**DECAY, **(decay or {})},
                    },
                }
            ],
        },
        env={},
    )
    d = Daemon(config, env={})
    d.store.ensure_model(name=MODEL, task=task, feature_names=["a"])
    d.store.add_version(
        model=MODEL,
        artefact_sha256="1" * 64,
        hyperparameters={},
        size_bytes=1,
        actor="test",
        stage="champion",
    )
    return d


# One hour's champion outputs ``[n, columns]`` and labels ``[n]``.
Hour = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _decay(d: Daemon, hour_of: Hour, *, seed: int) -> dict[str, Any]:
    """Write ``HOURS`` hourly windows of ``PER_HOUR`` labelled requests (hour 1 on) and
    return the decay verdict's payload an hour after the last."""
    rng = np.random.default_rng(seed)
    # labels are stamped with the database's time: requests after it have every label
    # matured with maturity_s = 0. From the next hour's start: decay's windows lie on
    # hourly edges, and an hour's requests (10 s to 310 s past it) started from any time
    # spanned two windows for a few minutes of each hour, differently in each unit's run
    # (a verdict's figures then differed in the fifth digit between units).
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for hour in range(1, HOURS + 1):
        outputs, labels = hour_of(rng, hour)
        written = [
            champion_answered(
                f"h{hour}-{i}",
                t0 + timedelta(hours=hour, seconds=10 + i),
                np.zeros((1, 1), np.float32),
                outputs[i : i + 1],
                version=1,
            )
            for i in range(PER_HOUR)
        ]
        d.store.write_records([r for r, _ in written], [o for _, o in written])
        d.store.add_labels(
            MODEL,
            [LabelItem(request_id=f"h{hour}-{i}", value=float(labels[i])) for i in range(PER_HOUR)],
        )
    d.evaluator.clock = lambda: t0 + timedelta(hours=HOURS + 1)
    payload: dict[str, Any] = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["decay"].payload
    return payload


def _regression(scale: float, *, growth: float) -> Hour:
    """Predictions of sd 1 and errors of sd 0.1 growing ``growth`` times over the hours,
    all in a unit ``scale`` of the base one (1e-3: metres written as kilometres)."""

    def hour_of(rng: np.random.Generator, hour: int) -> tuple[np.ndarray, np.ndarray]:
        predicted = rng.normal(size=PER_HOUR)
        error = rng.normal(scale=0.1 * (1 + (growth - 1) * (hour - 1) / (HOURS - 1)), size=PER_HOUR)
        outputs = (predicted * scale).astype(np.float32).reshape(-1, 1)
        return outputs, outputs[:, 0].astype(np.float64) + error * scale

    return hour_of


def _binary(rng: np.random.Generator, hour: int) -> tuple[np.ndarray, np.ndarray]:
    """A calibrated binary model whose labels drift from it: right 90 % of the time at
    first, 80 % by the last hour."""
    p1 = rng.uniform(0.0, 1.0, PER_HOUR).astype(np.float32)
    predicted = (p1 >= 0.5).astype(np.float64)
    right = rng.random(PER_HOUR) < 0.90 - 0.10 * (hour - 1) / (HOURS - 1)
    return np.column_stack([1 - p1, p1]), np.where(right, predicted, 1.0 - predicted)


@pytest.mark.parametrize("objective", ["rmse", "mae"])
@pytest.mark.parametrize("growth", [3.0, 1.0], ids=["error-tripling", "stationary"])
def test_regression_decay_verdict_is_invariant_to_the_target_unit(
    tmp_path: Path, objective: str, growth: float
) -> None:
    """The same stream in metres, kilometres and millimetres: one verdict and alarm, the
    threshold and its anchor in each unit. The tripling error alarmed in metres (threshold
    0.10 + 0.05) and millimetres (100 + 0.05: any significant slope) but not in
    kilometres (0.0001 + 0.05)."""
    verdicts = {}
    for unit, scale in (("m", 1.0), ("km", 1e-3), ("mm", 1e3)):
        d = _daemon(tmp_path / unit, task="regression", objective=objective)
        try:
            verdicts[unit] = _decay(d, _regression(scale, growth=growth), seed=7)
        finally:
            d.close()
    metres = verdicts["m"]
    assert metres["alarm"] is (growth > 1), metres["status"]
    assert metres["status"] == ("decaying" if growth > 1 else "stable")
    for unit, scale in (("km", 1e-3), ("mm", 1e3)):
        other = verdicts[unit]
        assert (other["status"], other["alarm"]) == (metres["status"], metres["alarm"]), unit
        assert other["threshold_anchor"] / scale == pytest.approx(metres["threshold_anchor"])
        assert other["threshold"] / scale == pytest.approx(metres["threshold"])
        # and the advice: `tolerance / |slope|` read the tolerance in the target's unit
        # (an error tripling: every 1 day in m and mm, every 46.6 days in km)
        key = "recommended_retune_interval_days"
        assert other.get(key) == pytest.approx(metres.get(key)), unit
    # 5 tolerances of the starting level worse than it
    anchor = metres["threshold_anchor"]
    assert metres["threshold"] == pytest.approx(anchor * (1 + 5 * TOLERANCE))


@pytest.mark.parametrize(
    ("task", "objective"),
    [
        ("binary", "accuracy"),
        ("binary", "roc_auc"),
        ("binary", "log_loss"),
        ("regression", "mape"),
    ],
)
def test_a_bounded_or_unit_free_objective_keeps_the_absolute_default_threshold(
    tmp_path: Path, task: str, objective: str
) -> None:
    """Accuracy and ROC AUC are bounded, log loss and MAPE carry no unit of the target:
    their default threshold stays 5 ``tolerance`` (0.05) from the anchor in their own
    units."""
    d = _daemon(tmp_path, task=task, objective=objective)
    try:
        hour_of = _binary if task == "binary" else _regression(10.0, growth=1.0)
        decay = _decay(d, hour_of, seed=3)
    finally:
        d.close()
    anchor = decay["threshold_anchor"]
    assert anchor is not None
    worse = 5 * TOLERANCE
    expected = anchor - worse if objective in {"accuracy", "roc_auc"} else anchor + worse
    assert decay["threshold"] == expected


def test_an_explicit_threshold_of_a_regression_error_is_in_the_target_unit(
    tmp_path: Path,
) -> None:
    """A configured ``decay.threshold`` is an RMSE in the target's unit, no anchor."""
    d = _daemon(tmp_path, task="regression", objective="rmse", decay={"threshold": 0.2})
    try:
        decay = _decay(d, _regression(1.0, growth=3.0), seed=7)
    finally:
        d.close()
    assert decay["threshold"] == 0.2 and decay["threshold_anchor"] is None
    assert decay["status"] == "decaying" and decay["alarm"]


def test_the_retune_interval_is_invariant_to_the_target_unit_with_an_explicit_threshold(
    tmp_path: Path,
) -> None:
    """The threshold given in each unit (0.2 m, 0.0002 km): the advice read `tolerance`
    in the target's unit, every 1 day in metres and every 46.6 in kilometres."""
    intervals = {}
    for unit, scale in (("m", 1.0), ("km", 1e-3)):
        d = _daemon(
            tmp_path / unit, task="regression", objective="rmse", decay={"threshold": 0.2 * scale}
        )
        try:
            intervals[unit] = _decay(d, _regression(scale, growth=3.0), seed=7)[
                "recommended_retune_interval_days"
            ]
        finally:
            d.close()
    assert intervals["km"] == pytest.approx(intervals["m"])
