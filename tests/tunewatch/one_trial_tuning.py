"""A daemon whose retunes are one cheap trial (a logistic regression on 2 folds), for
tests about what a job reads and registers, not about its study: v1 registered by hand
as champion, with the example model's own (fully labelled) reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.tunewatch.conftest import MODEL
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel

SPACE = {  # one cheap configuration: the study is not what these tests are about
    "format_version": 1,
    "name": "logistic_only",
    "params": {
        "scaler": {"type": "categorical", "choices": ["standard"]},
        "estimator": {
            "type": "categorical",
            "choices": ["logistic"],
            "when": {"logistic": {"C": {"type": "float", "low": 0.5, "high": 2.0}}},
        },
    },
}


def one_trial_daemon(
    tmp_path: Path,
    trained: list[ExampleModel],
    *,
    window_rows: int | None = None,
    evaluation: dict[str, Any] | None = None,
    objective: dict[str, Any] | None = None,
) -> Daemon:
    """A daemon (no scheduler, no workers) whose model retunes on a manual trigger over
    ``window_rows`` rows (the default window without), with ``evaluation`` as its
    evaluation section and ``objective`` as its objective if given. v1 is registered as
    champion unless the store in ``tmp_path`` has one (a daemon opened again over it)."""
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    model: dict[str, Any] = {
        "name": MODEL,
        "task": "binary",
        "tuning": {
            "search_space": str(space),
            "min_rows": 100,
            "max_trials": 1,
            "cv_folds": 2,
            "patience": None,
            "wall_time_s": 120,
        },
        "triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 0}],
    }
    if window_rows is not None:
        model["tuning"]["window_rows"] = window_rows
    if evaluation is not None:
        model["evaluation"] = evaluation
    if objective is not None:
        model["objective"] = objective
    raw = {
        "data_dir": str(tmp_path / "data"),
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0, "max_concurrent_jobs": 10},
        "models": [model],
    }
    d = Daemon(build_config(raw, env={}), env={})
    if d.store.champion(MODEL) is None:
        d.registry.register(
            MODEL,
            trained[0].onnx,
            trained[0].metadata,
            actor="test",
            stage="champion",
            reference=trained[0].reference,
        )
    return d
