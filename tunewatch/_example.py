"""A small, seeded example problem and its models: used by the demo, the tests and bench/.

Nothing is downloaded: the data is generated here and the models are trained and exported
to ONNX on the spot (a logistic pipeline as champion, gradient boosting as challenger).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retune import to_onnx
from tunewatch._reference import Reference
from tunewatch._version_metadata import VersionMetadata


@dataclass(frozen=True, slots=True, eq=False)
class ExampleModel:
    name: str
    onnx: bytes
    metadata: VersionMetadata
    reference: Reference | None = None


def feature_names(n_features: int) -> tuple[str, ...]:
    return tuple(f"x{i}" for i in range(n_features))


def example_data(
    n_rows: int, *, n_features: int = 8, seed: int = 0, shift: float = 0.0, concept: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a nonlinear binary target; ``shift`` moves the feature distribution and
    ``concept=1`` changes how the target depends on the features (a concept change)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=shift, size=(n_rows, n_features)).astype(np.float32)
    if concept == 0:
        logit = 1.5 * x[:, 0] - x[:, 1] + 0.8 * x[:, 2] * x[:, 3] + 0.5 * np.sin(3 * x[:, 4])
    else:
        logit = -1.0 * x[:, 0] + 1.5 * x[:, 5] + 1.2 * np.abs(x[:, 6]) - 1.0 + 0.6 * x[:, 1]
    y = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return x, y


def example_models(*, n_features: int = 8, seed: int = 0, n_rows: int = 4000) -> list[ExampleModel]:
    """Train the champion (logistic) and a challenger (gradient boosting) on seeded data."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = example_data(n_rows, n_features=n_features, seed=seed)
    names = feature_names(n_features)
    specs = [
        (
            "logistic",
            make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500)),
            {"estimator": "logistic", "C": 1.0},
        ),
        (
            "gbm",
            GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=seed),
            {  # in the pipeline's vocabulary, which the safe ranges read
                "estimator": "gradient_boosting",
                "gb_n_estimators": 60,
                "gb_max_depth": 3,
                "gb_learning_rate": 0.1,
            },
        ),
    ]
    models = []
    for name, estimator, params in specs:
        estimator.fit(x, y)
        models.append(
            ExampleModel(
                name=name,
                onnx=to_onnx(estimator, n_features, name=name),
                reference=Reference(features=x, labels=y.astype(np.float64)),
                metadata=VersionMetadata(
                    task="binary",
                    feature_names=names,
                    hyperparameters=params,
                    dataset_version=f"example-seed{seed}-n{n_rows}",
                ),
            )
        )
    return models
