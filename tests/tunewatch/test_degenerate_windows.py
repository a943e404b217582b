"""A re-tuning job refuses a training window no model can learn from, before any trial:
every feature constant (a feed broken to defaults) or a regression target of one value.
Tuned, such a window gave a constant predictor that the default triggers promoted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

from retune import to_onnx
from retune.space import fit_pipeline
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._tuning import TuningJobRunner
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import LabelItem, OutputRecord, RequestRecord

MODEL = "credit"
N = 400
SPACE = {
    "format_version": 1,
    "name": "test_small",
    "params": {
        "scaler": {"type": "categorical", "choices": ["none", "standard"]},
        "estimator": {
            "type": "categorical",
            "choices": ["logistic", "gradient_boosting"],
            "when": {
                "logistic": {"C": {"type": "float", "low": 0.01, "high": 10.0, "log": True}},
                "gradient_boosting": {
                    "gb_n_estimators": {"type": "int", "low": 10, "high": 30, "step": 10},
                    "gb_max_depth": {"type": "int", "low": 1, "high": 3},
                },
            },
        },
    },
}


def _config(tmp_path: Path, task: str) -> dict[str, object]:
    job: dict[str, object] = {
        "max_trials": 2,
        "cv_folds": 2,
        "patience": None,
        "wall_time_s": 120,
        "min_rows": 100,
        "include_reference": False,
    }
    if task != "regression":  # a regressor is tuned over the shipped regression space
        space = tmp_path / "space.yaml"
        space.write_text(yaml.safe_dump(SPACE))
        job["search_space"] = str(space)
    return {
        "data_dir": str(tmp_path / "data"),
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0, "max_concurrent_jobs": 10},
        "models": [
            {
                "name": MODEL,
                "task": task,
                "tuning": job,
                "triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 0}],
            }
        ],
    }


_Window = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _binary_with_zero_features(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((N, 4), np.float32), (rng.random(N) < 0.3).astype(np.float64)


def _regression_with_constant_target(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=(N, 4)).astype(np.float32), np.full(N, 3.0)


@pytest.mark.parametrize(
    ("task", "window", "reason"),
    [
        (
            "binary",
            _binary_with_zero_features,
            "every feature is constant in the training window (400 rows)",
        ),
        (
            "regression",
            _regression_with_constant_target,
            "the target is constant (3.0 on all 400 rows)",
        ),
    ],
    ids=["binary_all_zero_features", "regression_constant_target"],
)
def test_a_window_no_model_can_learn_from_fails_the_job_and_registers_nothing(
    tmp_path: Path, task: str, window: _Window, reason: str
) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N, 4)).astype(np.float32)
    if task == "regression":
        champion = fit_pipeline({"estimator": "ridge"}, x, 2.0 * x[:, 0] - x[:, 1], seed=0)
    else:
        champion = fit_pipeline(
            {"estimator": "logistic", "C": 1.0}, x, (x[:, 0] > 0).astype(np.float64), seed=0
        )
    x_window, y_window = window(rng)
    d = Daemon(build_config(_config(tmp_path, task), env={}), env={})
    try:
        d.registry.register(
            MODEL,
            to_onnx(champion, 4),
            VersionMetadata(task=task, feature_names=("a", "b", "c", "d")),
            actor="test",
            stage="champion",
        )
        at = datetime.now(UTC) - timedelta(hours=1)
        if task == "regression":
            served = champion.predict(x_window).astype(np.float32).reshape(-1, 1)
        else:
            served = champion.predict_proba(x_window).astype(np.float32)
        d.store.write_records(
            [
                RequestRecord(MODEL, f"q{i}", at, "infer", 1, 4, x_window[i : i + 1].tobytes())
                for i in range(N)
            ],
            [
                OutputRecord(
                    MODEL, f"q{i}", 1, "champion", 1e-4, 1, served.shape[1], served[i].tobytes()
                )
                for i in range(N)
            ],
        )
        d.store.add_labels(MODEL, [LabelItem(f"q{i}", float(y_window[i])) for i in range(N)])
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None
        job = TuningJobRunner(
            store=d.store, registry=d.registry, artefacts=d.artefacts, config=d.config, worker="t"
        ).run(outcome.job_id)
        assert job.status == "failed" and reason in (job.error or ""), job.error
        assert [v.version for v in d.store.list_versions(MODEL)] == [1]
    finally:
        d.close()
