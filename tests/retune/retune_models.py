"""Seeded scikit-learn models for the export tests (a uniquely named module so tests
can import its types; the fixture lives in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class Fitted:
    x_holdout: np.ndarray
    logistic: Any
    boosting: Any
    regression: Any


def make_fitted(seed: int) -> Fitted:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(500, 5))
    y_class = (x[:, 0] - 0.8 * x[:, 1] + rng.normal(scale=0.5, size=500) > 0).astype(np.int64)
    y_reg = 3.0 * x[:, 0] - x[:, 4] + rng.normal(size=500)
    train, holdout = slice(0, 400), slice(400, None)
    return Fitted(
        x_holdout=x[holdout],
        logistic=make_pipeline(StandardScaler(), LogisticRegression(random_state=0)).fit(
            x[train], y_class[train]
        ),
        boosting=GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0).fit(
            x[train], y_class[train]
        ),
        regression=LinearRegression().fit(x[train], y_reg[train]),
    )
