"""A configured safe range is read at the value the pipeline builds: a hyperparameter the
version does not record is built at the pipeline's default, which may lie outside the
range, when the recorded (or default) choices build it at all."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from retune import SearchSpaceError
from retune.space import CHOICES, KNOWN_PARAMS, build_pipeline
from retune.space._space import built_parameters
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch import _approval_rules as approval_rules
from tunewatch import _governance as governance
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel

SAFE_RANGES = {
    "gb_subsample": {"low": 0.5, "high": 0.9},  # the pipeline's default is 1.0
    "class_weight": {"choices": ["balanced"]},  # the pipeline's default is "none"
}


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    """credit: v1 logistic champion, v2 gradient boosting (recording neither
    `gb_subsample` nor `class_weight`)."""
    d, _ = make_daemon(
        tmp_path,
        trained,
        extra={"models": [{"name": MODEL, "task": "binary", "safe_ranges": SAFE_RANGES}]},
    )
    yield d
    d.close()


def _rules(d: Daemon, version: int, **hyperparameters: object) -> list[str]:
    row = d.store.get_version(MODEL, version)
    if hyperparameters:
        row = replace(row, hyperparameters=hyperparameters)
    return approval_rules.promotion_rules(d.store.get_model(MODEL), row, d.config)


def test_a_range_on_a_parameter_the_version_does_not_record_reads_its_default(
    daemon: Daemon,
) -> None:
    """v2 is built with subsample=1.0 and unweighted classes, both outside the ranges,
    and was promoted at once."""
    assert "gb_subsample" not in daemon.store.get_version(MODEL, 2).hyperparameters
    rules = _rules(daemon, 2)
    assert rules == [
        "outside safe range: class_weight='none' (not recorded: the pipeline's default) "
        "not in ['balanced']",
        "outside safe range: gb_subsample=1.0 (not recorded: the pipeline's default) "
        "not in [0.5, 0.9]",
    ]
    outcome = governance.promote(daemon.store, daemon.config, MODEL, 2, actor="a", reason="won")
    assert outcome.status == "pending_approval"
    assert outcome.approval is not None and list(outcome.approval.rules) == rules
    assert daemon.store.champion(MODEL).version == 1  # type: ignore[union-attr]


def test_a_range_on_a_parameter_the_estimator_does_not_build_is_not_read(
    daemon: Daemon,
) -> None:
    """A logistic model has no `gb_subsample`; its classes are weighted, so
    `class_weight` is read at its default."""
    assert _rules(daemon, 1, estimator="logistic", C=1.0) == [
        "outside safe range: class_weight='none' (not recorded: the pipeline's default) "
        "not in ['balanced']"
    ]
    # no estimator recorded: the pipeline builds its default, logistic
    assert _rules(daemon, 1, C=1.0, class_weight="balanced") == []
    # a regressor takes no class weights (the binary search space does not take it)
    assert _rules(daemon, 1, estimator="ridge", alpha=1.0) == [
        "outside safe range: `estimator` = 'ridge' is not a safe choice "
        "['logistic', 'gradient_boosting', 'random_forest']"
    ]


def test_a_recorded_value_is_read_as_recorded(daemon: Daemon) -> None:
    assert _rules(daemon, 2, estimator="gradient_boosting", gb_subsample=0.8) == [
        "outside safe range: class_weight='none' (not recorded: the pipeline's default) "
        "not in ['balanced']"
    ]
    assert (
        _rules(daemon, 2, estimator="gradient_boosting", gb_subsample=0.8, class_weight="balanced")
        == []
    )
    # recorded under another estimator: read as recorded, as before
    assert _rules(daemon, 1, estimator="logistic", gb_subsample=0.95, class_weight="balanced") == [
        "outside safe range: gb_subsample=0.95 not in [0.5, 0.9]"
    ]


def test_a_version_recording_nothing_is_not_read_at_the_defaults(daemon: Daemon) -> None:
    """``{}`` says nothing about how the version was built (one registered by hand, a
    regression model whose ``{}`` the pipeline would read as logistic)."""
    row = replace(daemon.store.get_version(MODEL, 1), hyperparameters={})
    assert approval_rules.promotion_rules(daemon.store.get_model(MODEL), row, daemon.config) == []


#: Another value the pipeline takes for each name a choice below does not set.
OTHER = {
    "drop_threshold": 0.3,
    "imputer": "mean",
    "scaler": "standard",
    "select_k": 5,
    "class_weight": "balanced",
    "C": 2.0,
    "alpha": 2.0,
    "gb_n_estimators": 20,
    "gb_max_depth": 2,
    "gb_learning_rate": 0.2,
    "gb_subsample": 0.7,
    "forest_n_estimators": 30,
    "forest_max_depth": 4,
    "forest_min_samples_leaf": 2,
}


@pytest.mark.parametrize("estimator", list(CHOICES["estimator"]))
def test_the_defaults_added_are_those_the_pipeline_builder_reads(estimator: str) -> None:
    """A name is added at its default exactly when another value of it changes the
    pipeline built for those choices (``class_weight`` reaches gradient boosting as
    sample weights, when it is fitted)."""
    assert set(OTHER) == set(KNOWN_PARAMS) - {"missing", "selector", "estimator"}
    for missing, selector in itertools.product(CHOICES["missing"], CHOICES["selector"]):
        choices = {"missing": missing, "selector": selector, "estimator": estimator}
        built = repr(build_pipeline(choices, n_features=20, seed=0))
        added = set(built_parameters(choices)) - set(choices)
        read = set()
        for name, value in OTHER.items():
            try:
                other = repr(build_pipeline({**choices, name: value}, n_features=20, seed=0))
            except SearchSpaceError:  # a class weight with a regressor: never built
                continue
            if other != built or (name, estimator) == ("class_weight", "gradient_boosting"):
                read.add(name)
        assert added == read, choices
