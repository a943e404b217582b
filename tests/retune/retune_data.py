"""Seeded tiny datasets and spaces for the retune tests (bare-name helper module)."""

from __future__ import annotations

from typing import Any

import numpy as np

from retune.space import SearchSpace, parse_search_space


def binary(
    seed: int, n: int = 240, n_features: int = 6, missing: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features))
    y = (x[:, 0] - 0.7 * x[:, 1] + rng.normal(scale=0.8, size=n) > 0).astype(np.int64)
    if missing:
        x[rng.random(x.shape) < missing] = np.nan
    return x, y


SMALL_SPACE: dict[str, Any] = {
    "name": "small",
    "params": {
        "scaler": {"type": "categorical", "choices": ["none", "standard"], "safe": ["standard"]},
        "estimator": {
            "type": "categorical",
            "choices": ["logistic", "gradient_boosting"],
            "when": {
                "logistic": {
                    "C": {
                        "type": "float",
                        "low": 1e-3,
                        "high": 10.0,
                        "log": True,
                        "safe": [0.01, 5.0],
                    }
                },
                "gradient_boosting": {
                    "gb_n_estimators": {"type": "int", "low": 5, "high": 20, "step": 5},
                    "gb_max_depth": {"type": "int", "low": 1, "high": 3},
                },
            },
        },
    },
}


def small_space(**changes: Any) -> SearchSpace:
    data = {**SMALL_SPACE, **changes}
    return parse_search_space(data)


def regression(
    seed: int, n: int = 240, n_features: int = 6, missing: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features))
    y = 2.0 * x[:, 0] - x[:, 1] ** 2 + rng.normal(scale=0.3, size=n)
    if missing:
        x[rng.random(x.shape) < missing] = np.nan
    return x, y
