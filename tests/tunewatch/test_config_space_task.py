"""A model's search space and safe ranges must fit its task: every estimator a point of
the space builds (the default one where a branch declares none), and every safe range's
name and choices, or the config is refused naming the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tunewatch import ConfigError, build_config

CLASSIFIERS = ["logistic", "gradient_boosting", "random_forest", "extra_trees"]
REGRESSORS = [
    "ridge",
    "gradient_boosting_regressor",
    "random_forest_regressor",
    "extra_trees_regressor",
]


def _space(tmp_path: Path, params: dict[str, Any]) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"format_version": 1, "name": "s", "params": params}))
    return str(path)


def _selector_with(
    branches: dict[str, list[str]], choices: tuple[str, ...] = ("none", "k_best")
) -> dict[str, Any]:
    """A space whose `selector` ``choices`` declare the estimators ``branches`` give."""
    when = {
        choice: {"estimator": {"type": "categorical", "choices": estimators}}
        for choice, estimators in branches.items()
    }
    return {"selector": {"type": "categorical", "choices": list(choices), "when": when}}


def _model(task: str, **settings: Any) -> dict[str, Any]:
    return {"models": [{"name": "m", "task": task, **settings}]}


def _refused(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        build_config(raw, env={})
    return info.value.message


def test_regressors_declared_under_one_branch_only_are_refused_for_the_default_classifier(
    tmp_path: Path,
) -> None:
    """`estimator: [ridge]` only under `selector: k_best` loaded: every point with
    `selector: none` built the default `logistic` on continuous labels, and half the
    trials failed ("Unknown label type: continuous")."""
    space = _space(tmp_path, _selector_with({"k_best": ["ridge"]}))
    message = _refused(_model("regression", tuning={"search_space": space}))
    assert "models.0: " in message and "`tuning.search_space`" in message
    assert "['logistic']" in message and "task 'regression'" in message
    assert "no `estimator`" in message  # says where the default comes from


def test_regressors_every_point_reaches_fit_a_regression_model(tmp_path: Path) -> None:
    """The branch declaring the estimators is the only choice: no point falls back to
    the default `logistic`."""
    space = _space(tmp_path, _selector_with({"k_best": REGRESSORS}, choices=("k_best",)))
    model = build_config(_model("regression", tuning={"search_space": space}), env={}).models[0]
    assert model.tuning.search_space == space


def test_a_regressor_under_one_branch_of_a_classifiers_space_is_refused(tmp_path: Path) -> None:
    space = _space(tmp_path, _selector_with({"k_best": ["gradient_boosting", "ridge"]}))
    message = _refused(_model("binary", tuning={"search_space": space}))
    assert "`tuning.search_space`" in message and "['ridge']" in message
    assert "task 'binary'" in message


def test_a_classifier_branch_falling_back_to_the_default_estimator_fits_a_classifier(
    tmp_path: Path,
) -> None:
    space = _space(tmp_path, _selector_with({"k_best": ["gradient_boosting"]}))
    model = build_config(_model("multiclass", tuning={"search_space": space}), env={}).models[0]
    assert model.tuning.search_space == space


@pytest.mark.parametrize(
    ("task", "name", "rule", "read_by"),
    [
        ("regression", "C", {"low": 0.1, "high": 10.0}, "['logistic']"),
        ("regression", "class_weight", {"choices": ["none"]}, str(CLASSIFIERS)),
        ("binary", "alpha", {"high": 100.0}, "['ridge']"),
        ("multiclass", "alpha", {"high": 100.0}, "['ridge']"),
    ],
    ids=["C-regression", "class_weight-regression", "alpha-binary", "alpha-multiclass"],
)
def test_a_safe_range_no_estimator_of_the_task_reads_is_a_config_error(
    task: str, name: str, rule: dict[str, Any], read_by: str
) -> None:
    """A regression model's `C` range loaded and guarded nothing: a regressor never
    builds `C`, so a version with alpha=500 was promoted without an approver."""
    message = _refused(_model(task, safe_ranges={name: rule}))
    assert f"models.0.safe_ranges.{name}: " in message
    assert read_by in message and f"task {task!r}" in message
    assert "would guard nothing" in message


@pytest.mark.parametrize(
    ("task", "names"),
    [
        ("regression", ["alpha", "gb_max_depth", "forest_max_depth", "select_k", "scaler"]),
        ("binary", ["C", "class_weight", "gb_max_depth", "forest_max_depth", "drop_threshold"]),
    ],
    ids=["regression", "binary"],
)
def test_safe_ranges_an_estimator_of_the_task_reads_load(task: str, names: list[str]) -> None:
    ranges: dict[str, Any] = {
        name: {"choices": ["none", "balanced"]}
        if name == "class_weight"
        else {"choices": ["none", "standard"]}
        if name == "scaler"
        else {"low": 0.1, "high": 10.0}
        for name in names
    }
    loaded = build_config(_model(task, safe_ranges=ranges), env={}).models[0].safe_ranges
    assert sorted(loaded) == sorted(names)


@pytest.mark.parametrize(
    ("task", "choices", "valid", "wrong"),
    [
        ("binary", ["logistic", "logistc"], CLASSIFIERS, "['logistc']"),
        ("binary", ["gradient_boosting", "ridge"], CLASSIFIERS, "['ridge']"),
        ("regression", ["ridge", "logistic"], REGRESSORS, "['logistic']"),
    ],
    ids=["misspelt", "regressor-for-binary", "classifier-for-regression"],
)
def test_a_safe_estimator_choice_the_task_cannot_build_is_a_config_error(
    task: str, choices: list[str], valid: list[str], wrong: str
) -> None:
    """`estimator: {choices: [logistc]}` loaded, and then every promotion waited: no
    version is ever built with that estimator."""
    message = _refused(_model(task, safe_ranges={"estimator": {"choices": choices}}))
    assert "models.0.safe_ranges.estimator.choices: " in message
    assert str(valid) in message and f"got {wrong}" in message


def test_safe_estimator_choices_of_the_task_load() -> None:
    for task, choices in (("binary", CLASSIFIERS[:2]), ("regression", REGRESSORS[1:])):
        raw = _model(task, safe_ranges={"estimator": {"choices": choices}})
        loaded = build_config(raw, env={}).models[0].safe_ranges["estimator"]
        assert loaded.choices == tuple(choices)


def test_a_safe_choice_a_step_does_not_take_is_a_config_error() -> None:
    message = _refused(_model("binary", safe_ranges={"scaler": {"choices": ["standrd", 1]}}))
    assert "models.0.safe_ranges.scaler.choices: " in message
    assert "['none', 'standard', 'robust']" in message and "got ['standrd', 1]" in message


def test_a_numeric_range_of_a_choice_parameter_is_a_config_error() -> None:
    """`estimator: {low: 0, high: 1}` loaded: an estimator is never a number, so every
    promotion waited."""
    message = _refused(_model("binary", safe_ranges={"estimator": {"low": 0, "high": 1}}))
    assert "models.0.safe_ranges.estimator: " in message and "`choices`" in message


def test_a_choice_of_a_numeric_parameter_that_is_not_a_number_is_a_config_error() -> None:
    message = _refused(_model("binary", safe_ranges={"C": {"choices": [1.0, "a", True]}}))
    assert "models.0.safe_ranges.C.choices: " in message and "got ['a', True]" in message
    raw = _model("binary", safe_ranges={"gb_max_depth": {"choices": [2, 3]}})
    assert build_config(raw, env={}).models[0].safe_ranges["gb_max_depth"].choices == (2, 3)
