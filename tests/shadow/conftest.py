"""Small seeded scikit-learn models exported with retune.to_onnx (session-scoped).

Every test here runs real onnxruntime sessions of real exported models.
"""

from __future__ import annotations

import pytest
from shadow_models import Data, Exported, export, make_data
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="session")
def data() -> Data:
    return make_data(seed=7)


@pytest.fixture(scope="session")
def logistic(data: Data) -> Exported:
    pipe = make_pipeline(StandardScaler(), LogisticRegression(random_state=0))
    return export(pipe.fit(data.x_train, data.y_class))


@pytest.fixture(scope="session")
def boosting(data: Data) -> Exported:
    gbc = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0)
    return export(gbc.fit(data.x_train, data.y_class))


@pytest.fixture(scope="session")
def regression(data: Data) -> Exported:
    return export(LinearRegression().fit(data.x_train, data.y_reg))
