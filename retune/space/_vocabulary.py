"""The pipeline's parameter vocabulary: names, defaults and choices, and the checks
that need no scikit-learn (the config loader validates search spaces with them).

Absent names take the defaults below; unknown names are an error:

=================  ===============================================  ==============
name               values                                           default
=================  ===============================================  ==============
missing            ``none`` | ``indicator`` | ``drop_columns``      ``none``
drop_threshold     max share of missing values a column may have    0.5
imputer            ``mean`` | ``median`` | ``most_frequent``        ``median``
scaler             ``none`` | ``standard`` | ``robust``             ``none``
selector           ``none`` | ``k_best``                            ``none``
select_k           features kept by SelectKBest (capped at width)   10
class_weight       ``none`` | ``balanced``                          ``none``
estimator          classifiers: ``logistic`` | ``gradient_boosting``  ``logistic``
                   | ``random_forest`` | ``extra_trees``;
                   regressors: ``ridge`` |
                   ``gradient_boosting_regressor`` |
                   ``random_forest_regressor`` | ``extra_trees_regressor``
C                  logistic inverse regularisation                  1.0
alpha              ridge regularisation strength                    1.0
gb_n_estimators,   GradientBoosting{Classifier,Regressor}           50, 3, 0.1,
gb_max_depth,                                                       1.0
gb_learning_rate,
gb_subsample
forest_n_estimators, forest_max_depth,                              100, 8, 1
forest_min_samples_leaf  (forests; depth is always bounded)
=================  ===============================================  ==============

``class_weight=balanced`` reaches gradient boosting as balanced sample weights
(:func:`fit_pipeline` passes them), the other classifiers as ``class_weight``; it is an
error with a regressor. ``k_best`` ranks features by the F-test of the task
(``f_classif`` or ``f_regression``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from retune._errors import SearchSpaceError

DEFAULTS: dict[str, Any] = {
    "missing": "none",
    "drop_threshold": 0.5,
    "imputer": "median",
    "scaler": "none",
    "selector": "none",
    "select_k": 10,
    "class_weight": "none",
    "estimator": "logistic",
    "C": 1.0,
    "alpha": 1.0,
    "gb_n_estimators": 50,
    "gb_max_depth": 3,
    "gb_learning_rate": 0.1,
    "gb_subsample": 1.0,
    "forest_n_estimators": 100,
    "forest_max_depth": 8,
    "forest_min_samples_leaf": 1,
}
#: Each choice parameter's valid choices, as the pipeline builds them.
CHOICES: dict[str, tuple[str, ...]] = {
    "missing": ("none", "indicator", "drop_columns"),
    "imputer": ("mean", "median", "most_frequent"),
    "scaler": ("none", "standard", "robust"),
    "selector": ("none", "k_best"),
    "class_weight": ("none", "balanced"),
    "estimator": (
        "logistic",
        "gradient_boosting",
        "random_forest",
        "extra_trees",
        "ridge",
        "gradient_boosting_regressor",
        "random_forest_regressor",
        "extra_trees_regressor",
    ),
}
#: The estimator choices that predict a number rather than class probabilities.
REGRESSORS = frozenset(
    {"ridge", "gradient_boosting_regressor", "random_forest_regressor", "extra_trees_regressor"}
)
KNOWN_PARAMS = frozenset(DEFAULTS)


def _resolve(params: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - KNOWN_PARAMS)
    if unknown:
        raise SearchSpaceError(
            f"unknown pipeline parameter(s) {unknown}; known: {sorted(KNOWN_PARAMS)}"
        )
    p = {**DEFAULTS, **params}
    for name, choices in CHOICES.items():
        if p[name] not in choices:
            raise SearchSpaceError(
                f"`{name}` must be one of {list(choices)}, got {p[name]!r}", path=name
            )
    if p["estimator"] in REGRESSORS and p["class_weight"] != "none":
        raise SearchSpaceError(
            f"`class_weight` applies to classifiers, not to the regressor {p['estimator']!r}",
            path="class_weight",
        )
    return p


def is_regression(params: Mapping[str, Any]) -> bool:
    """Whether ``params`` builds a regressor (it predicts numbers, not probabilities)."""
    return _resolve(params)["estimator"] in REGRESSORS
