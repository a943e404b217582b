"""A process that takes the scheduler lease exports each model's stored drift figures
with work that does not grow with the features: each feature's stale series were
forgotten one feature and drift method at a time, each time reading every model's series,
and the export held the lease lock (and the daemon's start) for over a minute at 100
models of 30 features, long enough for the lease to lapse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor import ServingMetrics
from tests.monitor.test_metrics_forget_cost import Passes
from tunewatch._config import build_config
from tunewatch._scheduler import Scheduler
from tunewatch.store import Store

MODELS = ("a", "b", "c")
FEATURES = [f"f{j}" for j in range(30)]


def _drift(store: Store, model: str, method: str, *, end: datetime) -> None:
    """A stored drift verdict testing every feature but the last under ``method``."""
    columns = [
        {"column": f, "method": method, "statistic": 0.01 * j, "drifted": j < 10, "status": "ok"}
        for j, f in enumerate(FEATURES[:-1])
    ]
    columns.append(
        {"column": FEATURES[-1], "method": method, "statistic": None, "drifted": False,
         "status": "insufficient_data"}
    )  # fmt: skip
    store.add_evaluation(
        model=model,
        version=1,
        kind="drift",
        status="ok",
        window_start=end - timedelta(minutes=10),
        window_end=end,
        payload={"alarm": True, "drifted_share": 0.35, "columns": columns},
    )


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    """Three models of 30 features, each with a champion and two drift verdicts stored:
    ks, then psi."""
    s = Store.open(sqlite_url)
    end = datetime.now(UTC) - timedelta(hours=1)
    for name in MODELS:
        s.ensure_model(name=name, task="binary", feature_names=FEATURES)
        s.add_version(
            model=name,
            artefact_sha256="0" * 64,
            hyperparameters={},
            size_bytes=1,
            actor="test",
            stage="champion",
        )
        _drift(s, name, "ks", end=end - timedelta(minutes=10))
        _drift(s, name, "psi", end=end)
    yield s
    s.close()


def _take_over(store: Store, tmp_path: Path, metrics: ServingMetrics) -> None:
    config = build_config({"data_dir": str(tmp_path)}, env={})
    scheduler = Scheduler(store=store, config=config, jobs=[], metrics=metrics)
    scheduler.start()
    try:
        assert scheduler.leader and metrics.exports_evaluation
    finally:
        scheduler.shutdown()


def test_a_takeover_reads_the_feature_gauges_a_bounded_number_of_times_a_model(
    store: Store, tmp_path: Path
) -> None:
    metrics = ServingMetrics()
    passes = Passes(metrics.feature_drift, metrics.feature_drifted)
    _take_over(store, tmp_path, metrics)
    # at most one pass a gauge a model, not one a feature and drift method (183 a model)
    assert passes.count <= 2 * len(MODELS)


def test_a_takeover_exports_the_newest_stored_method_only(store: Store, tmp_path: Path) -> None:
    metrics = ServingMetrics()
    for name in MODELS:  # what this process exported when it led before, under ks
        metrics.set_feature_drift(name, {f: ("ks", 0.5, False) for f in FEATURES})
    _take_over(store, tmp_path, metrics)
    value = metrics.registry.get_sample_value
    for name in MODELS:
        scores = {
            (s.labels["feature"], s.labels["method"]): s.value
            for metric in metrics.feature_drift.collect()
            for s in metric.samples
            if s.labels["model"] == name
        }
        # one series a tested feature, under psi; the untested feature has none
        assert scores == {(f, "psi"): pytest.approx(0.01 * j) for j, f in enumerate(FEATURES[:-1])}
        assert value("tunewatch_feature_drifted", {"model": name, "feature": "f0"}) == 1.0
        assert value("tunewatch_feature_drifted", {"model": name, "feature": "f10"}) == 0.0
        assert value("tunewatch_feature_drifted", {"model": name, "feature": FEATURES[-1]}) is None
        assert value("tunewatch_drift_share", {"model": name}) == 0.35
