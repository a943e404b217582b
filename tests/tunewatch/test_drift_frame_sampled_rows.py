"""A drift evaluation builds its frame of the rows its detector tests only: the
detector's sample (``drift.sample_size`` rows, the same rows of the same seed), not the
whole window widened to float64 and sampled after.

A 3,000-feature model's evaluation of a 50,000-request window went from 475 MB to a
3,819 MB peak: the window as a float64 frame, and a second copy of it (``reindex``),
before 20,000 of its rows were taken."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitor import ColumnDriftConfig, DriftDetector, ReferenceProfile, ServingMetrics
from tunewatch._config import ModelConfig, build_config
from tunewatch._drift_frame import LABEL, PREDICTION, column_types, prediction_column
from tunewatch._evaluation_baseline import Baseline
from tunewatch._evaluation_drift import drift_verdict
from tunewatch._reference import Reference
from tunewatch.store import ModelRow, Window

N_FEATURES = 200
SAMPLE_SIZE = 2000
VERSION = 1
CLASSES = {"binary": 2, "multiclass": 3}


def _model(task: str) -> ModelRow:
    names = tuple(f"x{j}" for j in range(N_FEATURES))
    return ModelRow("m", task, names, False, datetime(2024, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]


def _config(tmp_path: Path, task: str) -> ModelConfig:
    drift = {"sample_size": SAMPLE_SIZE, "min_rows": 100}
    raw = {
        "data_dir": str(tmp_path),
        "scheduler": {"enabled": False},
        "models": [{"name": "m", "task": task, "evaluation": {"drift": drift}}],
    }
    return build_config(raw, env={}).models[0]


def _outputs(x: np.ndarray, k: int) -> np.ndarray:
    """Class probabilities (float32, as the store keeps outputs) of a logistic of ``x``."""
    logits = np.stack([x[:, j] * (j + 1) for j in range(k)], axis=1).astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _rows(n: int, seed: int, *, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    x[:, :10] += np.float32(shift)  # ten features drift by ``shift`` standard deviations
    y = (x[:, 0] + rng.normal(size=n) > 0).astype(np.float64)
    return x, y


def _window(n: int, seed: int, k: int, *, shift: float = 0.0) -> Window:
    x, y = _rows(n, seed, shift=shift)
    versions = np.full(n, VERSION, dtype=np.int64)
    versions[::7] = -1  # a request another version answered: no champion prediction
    at = 1.7e9 + np.arange(n, dtype=np.float64)
    return Window(
        model="m",
        request_ids=tuple(f"r{seed}-{i}" for i in range(n)),
        received_at=at,
        features=x,
        outputs=_outputs(x, k),
        versions=versions,
        labels=y,
        label_received_at=at + 1.0,
    )


def _baseline(model: ModelRow, k: int) -> Baseline:
    x, y = _rows(3000, seed=1)
    scores = _outputs(x, k)
    columns: dict[str, Any] = {name: x[:, j] for j, name in enumerate(model.feature_names)}
    columns[PREDICTION] = prediction_column(model, scores, len(x))
    columns[LABEL] = y
    profile = ReferenceProfile.from_columns(
        columns, column_types=column_types(model, labelled=True)
    )
    return Baseline(
        profile=profile,
        scores=scores,
        has_labels=True,
        cbpe=None,
        reference_accuracy=None,
        no_estimate="not estimated here",
        rows=lambda: Reference(features=x, labels=y),
    )


def _whole_frame(
    model: ModelRow, features: np.ndarray, outputs: np.ndarray, labels: np.ndarray
) -> pd.DataFrame:
    """The frame of the whole window, as evaluations built it before they built only the
    rows their detector tests: the verdict's golden."""
    frame = pd.DataFrame(np.asarray(features, dtype=np.float64), columns=list(model.feature_names))
    frame[PREDICTION] = prediction_column(model, outputs, len(frame))
    label = pd.Series(np.asarray(labels, dtype=np.float64))
    frame = frame.reindex(range(max(len(frame), len(label))))
    frame[LABEL] = label.reindex(frame.index)
    return frame


def _golden(
    model: ModelRow, cfg: ModelConfig, baseline: Baseline, window: Window, matured: Window
) -> list[dict[str, Any]]:
    d = cfg.evaluation.drift
    detector = DriftDetector(
        baseline.profile,
        columns={
            k: ColumnDriftConfig(method=v.method, threshold=v.threshold)
            for k, v in d.columns.items()
        },
        dataset_rule=d.dataset_rule,
        share_threshold=d.share_threshold,
        alpha=d.alpha,
        min_rows=d.min_rows,
        sample_size=d.sample_size,
    )
    outputs = np.where((window.versions == VERSION)[:, None], window.outputs, np.nan)
    result = detector.check(_whole_frame(model, window.features, outputs, matured.labels))
    assert result.n_current == max(window.n_rows, matured.n_rows)
    return [
        {
            "column": c.column,
            "method": c.method,
            "statistic": c.statistic,
            "p_value": c.p_value,
            "drifted": c.drifted,
            "status": c.status,
            "n_cur": c.n_cur,
        }
        for c in result.columns
    ]


def _judged(payload: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("column", "method", "statistic", "p_value", "drifted", "status", "n_cur")
    return [{k: c[k] for k in keys} for c in payload["columns"]]


@pytest.mark.parametrize(
    ("task", "n_window", "n_matured"),
    [
        ("binary", 30_000, 30_000),
        ("binary", 30_000, 32_000),
        ("binary", 30_000, 20_000),
        ("multiclass", 30_000, 31_000),
        ("binary", 1_500, 1_800),
    ],
    ids=[
        "labels-as-long",
        "labels-longer",
        "labels-shorter",
        "multiclass-labels-longer",
        "window-under-the-sample-size",
    ],
)
def test_the_verdict_is_the_one_the_whole_frame_gave(
    tmp_path: Path, task: str, n_window: int, n_matured: int
) -> None:
    model, cfg = _model(task), _config(tmp_path, task)
    baseline = _baseline(model, CLASSES[task])
    window = _window(n_window, seed=2, k=CLASSES[task], shift=0.3)
    matured = _window(n_matured, seed=3, k=CLASSES[task])
    status, payload = drift_verdict(ServingMetrics(), model, cfg, window, matured, baseline, 1)
    assert status == "ok"
    assert payload["n_current"] == n_window
    assert _judged(payload) == _golden(model, cfg, baseline, window, matured)
    assert any(c["drifted"] for c in payload["columns"])


def test_a_wide_window_s_evaluation_holds_its_sample_not_the_window(tmp_path: Path) -> None:
    """The window's float32 features are in memory already; past them, the evaluation
    holds the detector's sample as a float64 frame (2,000 rows of 203 columns: 3.2 MB)
    and what the tests read of its columns, a column at a time. The whole window as a
    float64 frame is 48 MB, and was held twice: a peak of 193 MB.

    The window is unchanged: no distance reaches its threshold, so no Wasserstein noise
    floor is drawn, whose bootstrap holds 29 MB whatever the window
    (:mod:`monitor.drift._continuous_noise`), not the frame."""
    model, cfg = _model("binary"), _config(tmp_path, "binary")
    baseline = _baseline(model, 2)
    window = _window(30_000, seed=2, k=2)
    matured = _window(30_000, seed=3, k=2)
    metrics = ServingMetrics()
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        status, payload = drift_verdict(metrics, model, cfg, window, matured, baseline, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == "ok" and not payload["alarm"]
    sample_frame = SAMPLE_SIZE * (N_FEATURES + 3) * 8
    assert peak - before <= 4 * sample_frame, f"peak {(peak - before) / sample_frame:.1f}x"
