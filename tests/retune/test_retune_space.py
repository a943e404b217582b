from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
from retune_data import SMALL_SPACE, binary, regression, small_space
from sklearn.feature_selection import SelectKBest, f_classif, f_regression

from retune import SearchSpaceError, check_parity, to_onnx
from retune.space import (
    CHOICES,
    KNOWN_PARAMS,
    CategoricalParam,
    build_pipeline,
    fit_pipeline,
    load_search_space,
    parse_search_space,
)

SPACES = Path(__file__).resolve().parents[2] / "configs" / "search_spaces"
EXAMPLE = SPACES / "binary_tabular.yaml"


class FixedSuggester:
    """Picks the first choice / the low end, and records what it was asked."""

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        self.overrides = overrides or {}
        self.asked: list[str] = []

    def suggest_int(self, name: str, low: int, high: int, *, step: int, log: bool) -> int:
        self.asked.append(name)
        return int(self.overrides.get(name, low))

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None, log: bool
    ) -> float:
        self.asked.append(name)
        return float(self.overrides.get(name, low))

    def suggest_categorical(self, name: str, choices: tuple[Any, ...]) -> Any:
        self.asked.append(name)
        return self.overrides.get(name, choices[0])


def test_example_space_loads_and_every_point_builds_a_pipeline() -> None:
    space = load_search_space(EXAMPLE)
    estimator = space.params["estimator"]
    assert isinstance(estimator, CategoricalParam)
    for choice in estimator.choices:
        params = space.sample(FixedSuggester({"estimator": choice, "selector": "k_best"}))
        space.check(params)
        build_pipeline(params, n_features=8, seed=0)


def test_conditional_params_exist_only_under_their_parent_choice() -> None:
    space = load_search_space(EXAMPLE)
    logistic = space.sample(FixedSuggester({"estimator": "logistic"}))
    forest = space.sample(FixedSuggester({"estimator": "extra_trees"}))
    assert "C" in logistic and "forest_max_depth" not in logistic
    assert "forest_max_depth" in forest and "C" not in forest


def test_misspelt_key_is_an_error_naming_the_key_path() -> None:
    data: dict[str, Any] = {**SMALL_SPACE, "params": {**SMALL_SPACE["params"]}}
    data["params"]["estimator"] = {
        **SMALL_SPACE["params"]["estimator"],
        "when": {"logistic": {"C": {"type": "float", "low": 1e-3, "hihg": 10.0}}},
    }
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(data)
    assert "params.estimator" in info.value.path and "when.logistic.C" in info.value.path


def test_bad_bounds_and_unknown_when_choice_name_the_rule() -> None:
    with pytest.raises(SearchSpaceError, match="`low` must be > 0 when `log` is true"):
        parse_search_space(
            {"name": "s", "params": {"C": {"type": "float", "low": 0, "high": 1, "log": True}}}
        )
    with pytest.raises(SearchSpaceError, match="'trees'.*not among the choices"):
        parse_search_space(
            {
                "name": "s",
                "params": {"e": {"type": "categorical", "choices": ["a"], "when": {"trees": {}}}},
            }
        )


def test_duplicate_names_across_conditional_blocks_are_rejected() -> None:
    data = {
        "name": "dup",
        "params": {
            "C": {"type": "float", "low": 1, "high": 2},
            "e": {
                "type": "categorical",
                "choices": ["a"],
                "when": {"a": {"C": {"type": "float", "low": 1, "high": 2}}},
            },
        },
    }
    with pytest.raises(
        SearchSpaceError, match="'C' is declared at params.C and at params.e.when.a.C"
    ):
        parse_search_space(data)


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_space_loads(path: Path) -> None:
    assert load_search_space(path).declarations()


def _space_with(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(SMALL_SPACE)
    change(data["params"])
    return data


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (
            lambda p: p.update(scalr={"type": "categorical", "choices": ["none", "standard"]}),
            "params.scalr",
            r"not a parameter of the pipeline \(did you mean 'scaler'\?\), one of \['C', ",
        ),
        (
            lambda p: p["estimator"]["when"]["gradient_boosting"].update(
                gb_max_dept={"type": "int", "low": 1, "high": 3}
            ),
            "params.estimator.when.gradient_boosting.gb_max_dept",
            r"not a parameter of the pipeline \(did you mean 'gb_max_depth'\?\)",
        ),
        (
            lambda p: p["scaler"].update(choices=["none", "standrd"], safe=None),
            "params.scaler.choices",
            r"`scaler` takes \['none', 'standard', 'robust'\], got \['standrd'\]",
        ),
        (
            lambda p: p.update(selector={"type": "int", "low": 0, "high": 1}),
            "params.selector",
            r"`selector` takes \['none', 'k_best'\]: declare it categorical, got type: int",
        ),
        (
            lambda p: p["estimator"]["when"]["logistic"].update(
                C={"type": "categorical", "choices": [0.1, "1"]}
            ),
            "params.estimator.when.logistic.C.choices",
            r"`C` takes a number, got \['1'\]",
        ),
    ],
    ids=[
        "unknown-name",
        "unknown-conditional-name",
        "unknown-choice",
        "not-categorical",
        "text-for-a-number",
    ],
)
def test_a_space_the_pipeline_cannot_build_is_refused_when_it_loads(
    change: Any, path: str, message: str
) -> None:
    """It loaded, and every trial then failed (an unknown name), or every trial that drew
    the misspelt choice, silently."""
    with pytest.raises(SearchSpaceError, match=message) as info:
        parse_search_space(_space_with(change))
    assert info.value.path == path


def _forest_space(**declared: Any) -> dict[str, Any]:
    """A space of one random forest with ``declared`` parameters under it."""
    estimator = {"type": "categorical", "choices": ["random_forest"]}
    return {
        "name": "f",
        "params": {"estimator": {**estimator, "when": {"random_forest": declared}}},
    }


@pytest.mark.parametrize(
    ("name", "decl", "message"),
    [
        (
            "forest_n_estimators",
            {"type": "float", "low": 3.0, "high": 6.0},
            r"`forest_n_estimators` is built as an integer: declare it type: int, got type: "
            r"float",
        ),
        (
            "forest_max_depth",
            {"type": "categorical", "choices": [2, 4.5]},
            r"`forest_max_depth` is built as an integer: its choices must be integers, "
            r"got \[4\.5\]",
        ),
    ],
    ids=["float-range", "float-choice"],
)
def test_an_integer_parameter_declared_with_fractions_is_refused(
    name: str, decl: dict[str, Any], message: str
) -> None:
    """`forest_n_estimators: {type: float}` loaded: a trial recorded 4.25 while int() built
    4 trees, so the hyperparameters, their hash and the safe ranges described a model
    nobody trained."""
    with pytest.raises(SearchSpaceError, match=message) as info:
        parse_search_space(_forest_space(**{name: decl}))
    choices = ".choices" if decl["type"] == "categorical" else ""
    assert info.value.path == f"params.estimator.when.random_forest.{name}{choices}"


def _declared(name: str, decl: dict[str, Any]) -> dict[str, Any]:
    return {"name": "d", "params": {name: decl}}


@pytest.mark.parametrize(
    ("name", "decl", "field", "message"),
    [
        ("forest_max_depth", {"type": "int", "low": 0, "high": 2}, "low", ">= 1, got 0"),
        ("forest_n_estimators", {"type": "int", "low": 0, "high": 5}, "low", ">= 1, got 0"),
        ("forest_min_samples_leaf", {"type": "int", "low": 0, "high": 5}, "low", ">= 1, got 0"),
        ("gb_n_estimators", {"type": "int", "low": -10, "high": 5}, "low", ">= 1, got -10"),
        ("gb_max_depth", {"type": "int", "low": 0, "high": 3}, "low", ">= 1, got 0"),
        ("gb_subsample", {"type": "float", "low": 0.5, "high": 1.5}, "high", "<= 1, got 1.5"),
        ("gb_subsample", {"type": "float", "low": 0.0, "high": 1.0}, "low", "> 0, got 0.0"),
        ("gb_subsample", {"type": "float", "low": 1.2, "high": 1.5}, "low", "<= 1, got 1.2"),
        ("gb_learning_rate", {"type": "float", "low": -0.1, "high": 0.5}, "low", ">= 0, got -0.1"),
        ("drop_threshold", {"type": "float", "low": 0.5, "high": 2.0}, "high", "<= 1, got 2.0"),
        ("drop_threshold", {"type": "float", "low": -0.5, "high": 0.5}, "low", ">= 0, got -0.5"),
        ("select_k", {"type": "int", "low": 0, "high": 3}, "low", ">= 1, got 0"),
        ("C", {"type": "float", "low": 0.0, "high": 1.0}, "low", "> 0, got 0.0"),
        ("alpha", {"type": "float", "low": -1.0, "high": 1.0}, "low", ">= 0, got -1.0"),
    ],
    ids=[
        "forest-depth-0",
        "forest-trees-0",
        "forest-leaf-0",
        "gb-trees-negative",
        "gb-depth-0",
        "subsample-over-1",
        "subsample-0",
        "subsample-all-over-1",
        "learning-rate-negative",
        "drop-threshold-over-1",
        "drop-threshold-negative",
        "select-k-0",
        "C-0",
        "alpha-negative",
    ],
)
def test_a_bound_outside_the_pipeline_s_domain_is_refused(
    name: str, decl: dict[str, Any], field: str, message: str
) -> None:
    """It loaded, and every trial that drew a value past the domain failed (scikit-learn's
    parameter validation, the column dropper's share, SelectKBest's k)."""
    with pytest.raises(SearchSpaceError, match=f"`{name}` {field} must be {message}$") as info:
        parse_search_space(_declared(name, decl))
    assert info.value.path == f"params.{name}.{field}"


def test_a_numeric_choice_outside_the_pipeline_s_domain_is_refused() -> None:
    data = _declared("gb_subsample", {"type": "categorical", "choices": [0.5, 1.0, 1.5]})
    with pytest.raises(
        SearchSpaceError, match=r"`gb_subsample` choices must be <= 1, got \[1\.5\]"
    ):
        parse_search_space(data)
    data = _declared("select_k", {"type": "categorical", "choices": [0, 2]})
    with pytest.raises(
        SearchSpaceError, match=r"`select_k` choices must be >= 1, got \[0\]"
    ) as info:
        parse_search_space(data)
    assert info.value.path == "params.select_k.choices"


def test_every_numeric_pipeline_parameter_has_a_domain() -> None:
    from retune.space._space import _DOMAINS
    from retune.space._vocabulary import CHOICES, KNOWN_PARAMS

    assert set(_DOMAINS) == KNOWN_PARAMS - set(CHOICES)


def _counted(name: str, decl: dict[str, Any]) -> dict[str, Any]:
    """A space of the one estimator family that reads ``name``, declared beside it."""
    family = "random_forest" if name.startswith("forest_") else "gradient_boosting"
    estimator = {"type": "categorical", "choices": [family]}
    return {"name": "n", "params": {"estimator": estimator, name: decl}}


@pytest.mark.parametrize(
    ("name", "bound"),
    [
        ("gb_n_estimators", 2000),
        ("gb_max_depth", 32),
        ("forest_n_estimators", 1000),
        ("forest_max_depth", 32),
    ],
)
def test_a_tree_count_or_depth_past_its_upper_bound_is_refused(name: str, bound: int) -> None:
    """`gb_n_estimators: [1e6, 2e6]` loaded: its first trial ran far past `wall_time_s: 10`
    (the budget is checked between trials), and a forest of 2**52 trees held its worker
    until it ran out of memory. The bound itself loads."""
    parse_search_space(_counted(name, {"type": "int", "low": 1, "high": bound}))
    with pytest.raises(
        SearchSpaceError, match=f"`{name}` high must be <= {bound}, got {bound + 1}$"
    ) as info:
        parse_search_space(_counted(name, {"type": "int", "low": 1, "high": bound + 1}))
    assert info.value.path == f"params.{name}.high"
    with pytest.raises(
        SearchSpaceError, match=rf"`{name}` choices must be <= {bound}, got \[{bound + 1}\]"
    ) as info:
        parse_search_space(_counted(name, {"type": "categorical", "choices": [2, bound + 1]}))
    assert info.value.path == f"params.{name}.choices"


def test_a_forest_of_2_to_the_53_trees_is_refused_naming_the_key_and_the_rule() -> None:
    huge = {"type": "int", "low": 1, "high": 2**53}
    with pytest.raises(
        SearchSpaceError, match=r"`forest_n_estimators` high must be <= 1000, got 9007199254740992$"
    ) as info:
        parse_search_space(_counted("forest_n_estimators", huge))
    assert info.value.path == "params.forest_n_estimators.high"


def test_a_space_at_the_edges_of_every_domain_loads_and_builds_there() -> None:
    """The checks refuse only what the pipeline cannot build: the closed ends of each
    domain (a subsample of 1, a drop threshold of 0 or 1, one tree of depth 1) load, and
    a point there fits."""
    space = parse_search_space(
        {
            "name": "edges",
            "params": {
                "missing": {
                    "type": "categorical",
                    "choices": ["drop_columns"],
                    "when": {
                        "drop_columns": {"drop_threshold": {"type": "float", "low": 0, "high": 1}}
                    },
                },
                "selector": {
                    "type": "categorical",
                    "choices": ["k_best"],
                    "when": {"k_best": {"select_k": {"type": "int", "low": 1, "high": 3}}},
                },
                "estimator": {
                    "type": "categorical",
                    "choices": ["gradient_boosting", "random_forest", "logistic"],
                    "when": {
                        "gradient_boosting": {
                            "gb_n_estimators": {"type": "int", "low": 1, "high": 3},
                            "gb_max_depth": {"type": "int", "low": 1, "high": 2},
                            "gb_learning_rate": {"type": "float", "low": 0.0, "high": 0.5},
                            "gb_subsample": {"type": "categorical", "choices": [0.5, 1.0]},
                        },
                        "random_forest": {
                            "forest_n_estimators": {"type": "categorical", "choices": [1, 2]},
                            "forest_max_depth": {"type": "int", "low": 1, "high": 2},
                            "forest_min_samples_leaf": {"type": "int", "low": 1, "high": 2},
                        },
                        "logistic": {"C": {"type": "int", "low": 1, "high": 10}},
                    },
                },
            },
        }
    )
    x, y = binary(seed=3, n=60)
    for estimator in ("gradient_boosting", "random_forest", "logistic"):
        for at_high in (False, True):
            params = space.sample(_EdgeSuggester(estimator, at_high))
            space.check(params)
            assert fit_pipeline(params, x, y, seed=0).predict_proba(x[:2]).shape == (2, 2)


class _EdgeSuggester(FixedSuggester):
    """Picks ``estimator`` and the low (or high) end of every range and list of choices."""

    def __init__(self, estimator: str, at_high: bool) -> None:
        super().__init__({"estimator": estimator})
        self.at_high = at_high

    def suggest_int(self, name: str, low: int, high: int, *, step: int, log: bool) -> int:
        return high if self.at_high else low

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None, log: bool
    ) -> float:
        return high if self.at_high else low

    def suggest_categorical(self, name: str, choices: tuple[Any, ...]) -> Any:
        if name in self.overrides:
            return self.overrides[name]
        return choices[-1] if self.at_high else choices[0]


_REGRESSORS_WITH_CLASS_WEIGHT: dict[str, Any] = {
    "name": "r",
    "params": {
        "class_weight": {"type": "categorical", "choices": ["none", "balanced"]},
        "estimator": {"type": "categorical", "choices": ["ridge", "gradient_boosting_regressor"]},
    },
}


def test_class_weight_beside_regressor_choices_is_refused() -> None:
    """Every trial that drew `balanced` with a regressor raised: a regression space that
    declared `class_weight` loaded and lost those trials."""
    with pytest.raises(
        SearchSpaceError,
        match=r"`class_weight` applies to classifiers only, but the space can pair 'balanced' "
        r"with the regressor\(s\) \['gradient_boosting_regressor', 'ridge'\]",
    ) as info:
        parse_search_space(_REGRESSORS_WITH_CLASS_WEIGHT)
    assert info.value.path == "params.class_weight"
    # nested under a choice that opens the regressors, it pairs with them all the same
    nested = {
        "name": "n",
        "params": {
            "scaler": {
                "type": "categorical",
                "choices": ["none", "standard"],
                "when": {
                    "standard": {"class_weight": {"type": "categorical", "choices": ["balanced"]}}
                },
            },
            "estimator": {"type": "categorical", "choices": ["logistic", "ridge"]},
        },
    }
    with pytest.raises(SearchSpaceError, match=r"with the regressor\(s\) \['ridge'\]") as info:
        parse_search_space(nested)
    assert info.value.path == "params.scaler.when.standard.class_weight"


def test_class_weight_that_never_meets_a_regressor_loads() -> None:
    only_none = copy.deepcopy(_REGRESSORS_WITH_CLASS_WEIGHT)
    only_none["params"]["class_weight"]["choices"] = ["none"]
    only_none["params"]["estimator"]["choices"] = ["logistic", "ridge"]  # logistic reads it
    parse_search_space(only_none)
    under_the_classifier = {
        "name": "m",
        "params": {
            "estimator": {
                "type": "categorical",
                "choices": ["logistic", "ridge"],
                "when": {
                    "logistic": {
                        "class_weight": {"type": "categorical", "choices": ["none", "balanced"]}
                    }
                },
            }
        },
    }
    parse_search_space(under_the_classifier)
    no_estimator = {  # the pipeline's default estimator is the logistic classifier
        "name": "d",
        "params": {"class_weight": {"type": "categorical", "choices": ["none", "balanced"]}},
    }
    parse_search_space(no_estimator)


_ESTIMATOR_GB: dict[str, Any] = {"type": "categorical", "choices": ["gradient_boosting"]}
_DROP_COLUMNS: dict[str, Any] = {"type": "categorical", "choices": ["drop_columns"]}


@pytest.mark.parametrize(
    ("params", "path", "message"),
    [
        (
            {"estimator": _ESTIMATOR_GB, "C": {"type": "float", "low": 20.0, "high": 50.0}},
            "params.C",
            r"`C` is read only where estimator is one of \['logistic'\], which no point "
            r"drawing it picks \(they build estimator \['gradient_boosting'\]\); declare it "
            r"under `estimator.when` of one of them, or leave it out$",
        ),
        (
            {"estimator": _ESTIMATOR_GB, "select_k": {"type": "int", "low": 1, "high": 2}},
            "params.select_k",
            r"`select_k` is read only where selector is one of \['k_best'\], which no point "
            r"drawing it picks \(they build selector \['none'\]\)",
        ),
        (
            {"drop_threshold": {"type": "float", "low": 0.1, "high": 0.5}},
            "params.drop_threshold",
            r"`drop_threshold` is read only where missing is one of \['drop_columns'\]",
        ),
        (
            {
                "estimator": {
                    "type": "categorical",
                    "choices": ["logistic", "gradient_boosting"],
                    "when": {"gradient_boosting": {"C": {"type": "float", "low": 1, "high": 2}}},
                }
            },
            "params.estimator.when.gradient_boosting.C",
            r"they build estimator \['gradient_boosting'\]",
        ),
        (
            {
                "estimator": {
                    "type": "categorical",
                    "choices": ["logistic", "gradient_boosting"],
                    "when": {
                        "logistic": {"selector": {"type": "categorical", "choices": ["k_best"]}},
                        "gradient_boosting": {"select_k": {"type": "int", "low": 1, "high": 3}},
                    },
                }
            },
            "params.estimator.when.gradient_boosting.select_k",
            r"they build selector \['none'\]",
        ),
        (
            {
                "class_weight": {"type": "categorical", "choices": ["none"]},
                "estimator": {"type": "categorical", "choices": ["ridge"]},
            },
            "params.class_weight",
            r"`class_weight` is read only where estimator is one of \['extra_trees', "
            r"'gradient_boosting', 'logistic', 'random_forest'\]",
        ),
    ],
    ids=[
        "C-beside-gradient-boosting",
        "select_k-without-k_best",
        "drop_threshold-without-drop_columns",
        "C-under-gradient-boosting",
        "select_k-in-a-branch-without-k_best",
        "class_weight-beside-regressors-only",
    ],
)
def test_a_parameter_no_point_of_its_branch_reads_is_refused(
    params: dict[str, Any], path: str, message: str
) -> None:
    """`C` beside `estimator: [gradient_boosting]` loaded: every trial drew and recorded a
    `C` the model did not have, and promotion waited for an approver because that `C` was
    outside its safe range."""
    assert {"C", "select_k", "drop_threshold", "class_weight"} <= KNOWN_PARAMS
    assert "k_best" in CHOICES["selector"] and "drop_columns" in CHOICES["missing"]
    with pytest.raises(SearchSpaceError, match=message) as info:
        parse_search_space({"name": "dead", "params": params})
    assert info.value.path == path


def test_a_parameter_some_point_of_its_branch_reads_loads() -> None:
    """A parameter is read if one point drawing it builds the choice that reads it: a
    sibling choice, a choice of another branch the point also takes, or the pipeline's
    default for a parent the space leaves out."""
    beside_both = {
        "estimator": {"type": "categorical", "choices": ["logistic", "gradient_boosting"]},
        "C": {"type": "float", "low": 1.0, "high": 2.0},
    }
    selector_elsewhere = {
        "estimator": {
            "type": "categorical",
            "choices": ["logistic"],
            "when": {"logistic": {"selector": {"type": "categorical", "choices": ["k_best"]}}},
        },
        "missing": {
            "type": "categorical",
            "choices": ["none", "drop_columns"],
            "when": {"drop_columns": {"select_k": {"type": "int", "low": 1, "high": 3}}},
        },
    }
    default_estimator = {"C": {"type": "float", "low": 1.0, "high": 2.0}}  # logistic
    for params in (beside_both, selector_elsewhere, default_estimator):
        parse_search_space({"name": "read", "params": params})


@pytest.mark.parametrize(
    ("bounds", "field"),
    [
        ({"high": float("inf")}, "high"),
        ({"low": float("-inf")}, "low"),
        ({"step": float("inf")}, "step"),
        ({"low": float("nan")}, "low"),
    ],
    ids=["high-inf", "low-minus-inf", "step-inf", "low-nan"],
)
def test_a_bound_that_is_not_finite_is_refused(bounds: dict[str, float], field: str) -> None:
    """`high: .inf` loaded, and Optuna then raised a bare OverflowError at the first
    trial."""
    c = {"type": "float", "low": 0.001, "high": 10.0, **bounds}
    data = _space_with(lambda p: p["estimator"]["when"]["logistic"].update(C=c))
    with pytest.raises(SearchSpaceError, match=f"`{field}` must be a finite number") as info:
        parse_search_space(data)
    assert info.value.path == "params.estimator.when.logistic.C"


def test_an_error_path_is_the_key_path_of_the_file() -> None:
    """The path held pydantic's tags: `...estimator.categorical.when...gb_max_depth.int.low`."""
    data = _space_with(
        lambda p: p["estimator"]["when"]["gradient_boosting"]["gb_max_depth"].update(low=1.5)
    )
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(data)
    assert info.value.path == "params.estimator.when.gradient_boosting.gb_max_depth.low"
    no_choices = _space_with(lambda p: p["scaler"].update(choices=[]))
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(no_choices)
    assert info.value.path == "params.scaler"


def test_newer_format_version_is_refused_with_the_reason() -> None:
    with pytest.raises(SearchSpaceError, match="newer than this tunewatch understands"):
        parse_search_space({**SMALL_SPACE, "format_version": 2})


def test_outside_safe_ranges_names_each_offending_param() -> None:
    space = small_space()
    assert (
        space.outside_safe_ranges({"scaler": "standard", "estimator": "logistic", "C": 1.0}) == []
    )
    problems = space.outside_safe_ranges({"scaler": "none", "estimator": "logistic", "C": 8.0})
    assert len(problems) == 2
    assert "`scaler` = 'none' is not a safe choice" in problems[0]
    assert "`C` = 8.0 is outside its safe range [0.01, 5.0]" in problems[1]


def test_outside_safe_ranges_names_a_value_that_is_not_a_number() -> None:
    space = small_space()
    problems = space.outside_safe_ranges({"scaler": "standard", "estimator": "logistic", "C": "8"})
    assert problems == ["`C` = '8' is not a number, so not in its safe range [0.01, 5.0]"]
    assert space.outside_safe_ranges(
        {"scaler": "standard", "estimator": "logistic", "C": float("nan")}
    ) == ["`C` = nan is outside its safe range [0.01, 5.0]"]


def test_project_drops_removed_params_and_rejects_removed_choices() -> None:
    space = small_space()
    old = {"scaler": "robust", "estimator": "logistic", "C": 0.1}
    assert space.project(old) is None
    kept = space.project({"scaler": "none", "estimator": "logistic", "C": 0.1, "selector": "none"})
    assert kept == {"scaler": "none", "estimator": "logistic", "C": 0.1}


def test_unknown_pipeline_parameter_is_an_error() -> None:
    with pytest.raises(
        SearchSpaceError, match=r"unknown pipeline parameter\(s\) \['n_neighbours'\]"
    ):
        build_pipeline({"n_neighbours": 3}, n_features=4, seed=0)


FAMILIES: list[dict[str, Any]] = [
    {
        "estimator": "logistic",
        "missing": "indicator",
        "scaler": "standard",
        "class_weight": "balanced",
    },
    {
        "estimator": "gradient_boosting",
        "missing": "drop_columns",
        "drop_threshold": 0.3,
        "class_weight": "balanced",
        "gb_n_estimators": 10,
    },
    {
        "estimator": "random_forest",
        "selector": "k_best",
        "select_k": 3,
        "scaler": "robust",
        "forest_n_estimators": 10,
        "forest_max_depth": 4,
    },
    {
        "estimator": "extra_trees",
        "missing": "indicator",
        "imputer": "most_frequent",
        "forest_n_estimators": 10,
        "forest_max_depth": 4,
    },
]


@pytest.mark.parametrize("params", FAMILIES, ids=[p["estimator"] for p in FAMILIES])
def test_every_estimator_family_exports_to_onnx_with_parity(params: dict[str, Any]) -> None:
    x, y = binary(seed=3, missing=0.1)
    x[:150, 5] = np.nan  # a mostly-missing column for the dropper
    pipeline = fit_pipeline(params, x, y, seed=0)
    assert check_parity(to_onnx(pipeline, x.shape[1]), pipeline, x) <= 1e-4


REGRESSORS: list[dict[str, Any]] = [
    {"estimator": "ridge", "alpha": 3.0, "scaler": "standard", "missing": "indicator"},
    {
        "estimator": "gradient_boosting_regressor",
        "selector": "k_best",
        "select_k": 3,
        "gb_n_estimators": 10,
    },
    {
        "estimator": "random_forest_regressor",
        "missing": "drop_columns",
        "drop_threshold": 0.3,
        "forest_n_estimators": 10,
        "forest_max_depth": 4,
    },
    {"estimator": "extra_trees_regressor", "forest_n_estimators": 10, "forest_max_depth": 4},
]


@pytest.mark.parametrize("params", REGRESSORS, ids=[p["estimator"] for p in REGRESSORS])
def test_every_regressor_family_exports_to_onnx_with_parity(params: dict[str, Any]) -> None:
    """The pipeline built classifiers only: a regression model's every trial failed."""
    x, y = regression(seed=3, missing=0.1)
    x[:150, 5] = np.nan
    pipeline = fit_pipeline(params, x, y, seed=0)
    assert check_parity(to_onnx(pipeline, x.shape[1]), pipeline, x) <= 1e-4


def test_the_regression_space_builds_a_regressor_at_every_point() -> None:
    space = load_search_space(SPACES / "regression_tabular.yaml")
    estimator = space.params["estimator"]
    assert isinstance(estimator, CategoricalParam)
    x, y = regression(seed=4)
    for choice in estimator.choices:
        params = space.sample(FixedSuggester({"estimator": choice, "selector": "k_best"}))
        space.check(params)
        assert fit_pipeline(params, x, y, seed=0).predict(x[:3]).shape == (3,)


def test_class_weighting_a_regressor_is_an_error() -> None:
    with pytest.raises(SearchSpaceError, match="class_weight.*classifiers"):
        build_pipeline({"estimator": "ridge", "class_weight": "balanced"}, n_features=3, seed=0)


def test_a_search_space_file_that_is_not_utf8_is_a_search_space_error(tmp_path: Path) -> None:
    """It escaped as a UnicodeDecodeError: a 500 where governance reads the safe ranges."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes("params: {C: {type: float, low: 0.1, high: 1.0}}  # café\n".encode("latin-1"))
    with pytest.raises(SearchSpaceError, match="cannot read search space"):
        load_search_space(path)


def test_a_float_with_a_step_contains_only_its_grid() -> None:
    """`contains` ignored `step`: a value between grid points passed `check` and
    `project`, and warm start enqueued it (Optuna warned and trained it off the grid)."""
    space = parse_search_space(
        {
            "name": "s",
            "params": {
                "estimator": _ESTIMATOR_GB,
                "gb_subsample": {"type": "float", "low": 0.5, "high": 1.0, "step": 0.25},
            },
        }
    )
    decl = space.declarations()["gb_subsample"]
    assert decl.contains(0.75) and decl.contains(1.0)
    assert not decl.contains(0.7185)
    tenths = parse_search_space(
        {
            "name": "t",
            "params": {
                "missing": _DROP_COLUMNS,
                "drop_threshold": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.1},
            },
        }
    ).declarations()["drop_threshold"]
    assert tenths.contains(0.1 * 3)  # 0.30000000000000004: on the grid, up to rounding
    with pytest.raises(SearchSpaceError, match="gb_subsample"):
        space.check({"estimator": "gradient_boosting", "gb_subsample": 0.7185})


def test_project_moves_a_value_between_grid_points_to_the_nearest_one() -> None:
    """A parameter that gained a step since a history trial ran: the trial's value moves
    to the nearest grid point (it stays in range), so warm start still learns from it."""
    space = parse_search_space(
        {
            "name": "s",
            "params": {
                "estimator": _ESTIMATOR_GB,
                "gb_subsample": {"type": "float", "low": 0.5, "high": 1.0, "step": 0.25},
                "gb_n_estimators": {"type": "int", "low": 10, "high": 30, "step": 10},
            },
        }
    )
    gb = {"estimator": "gradient_boosting"}
    assert space.project({**gb, "gb_subsample": 0.7185, "gb_n_estimators": 14}) == {
        **gb,
        "gb_subsample": 0.75,
        "gb_n_estimators": 10,
    }
    assert space.project({**gb, "gb_subsample": 0.99, "gb_n_estimators": 30}) == {
        **gb,
        "gb_subsample": 1.0,
        "gb_n_estimators": 30,
    }
    assert space.project({**gb, "gb_subsample": 1.2, "gb_n_estimators": 30}) is None  # range
    assert space.project({**gb, "gb_subsample": 0.5, "gb_n_estimators": 31}) is None


def test_snapping_to_the_top_of_a_grid_stays_in_range() -> None:
    """``low + k * step`` overshot ``high`` by float rounding: 0.29 on [0, 0.3] step 0.1
    snapped to 0.30000000000000004, a point outside the space (`check` refused it, Optuna
    warned "out of range" and trained it)."""
    space = parse_search_space(
        {
            "name": "s",
            "params": {
                "missing": _DROP_COLUMNS,
                "drop_threshold": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1},
            },
        }
    )
    decl = space.declarations()["drop_threshold"]
    drop = {"missing": "drop_columns"}
    assert decl.snap(0.29) == 0.3
    assert space.project({**drop, "drop_threshold": 0.29}) == {**drop, "drop_threshold": 0.3}
    space.check({**drop, "drop_threshold": 0.3})
    # a value that overshoots a bound by rounding is that bound, not a value out of range
    assert decl.contains(0.1 * 3) and decl.snap(0.1 * 3) == 0.3
    assert space.project({**drop, "drop_threshold": 0.1 * 3}) == {**drop, "drop_threshold": 0.3}
    assert space.project({**drop, "drop_threshold": 0.31}) is None
    # grid values come back as the grid's decimals, not accumulated rounding
    tenths = parse_search_space(
        {
            "name": "t",
            "params": {
                "missing": _DROP_COLUMNS,
                "drop_threshold": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.1},
            },
        }
    ).declarations()["drop_threshold"]
    assert tenths.snap(0.68) == 0.7 and tenths.snap(0.29) == 0.3


def _one_column_windows() -> dict[str, tuple[dict[str, Any], np.ndarray, np.ndarray]]:
    x, y = binary(seed=7)  # the label follows columns 0 and 1: k_best keeps column 0 first
    sparse = x.copy()
    sparse[:180, 1:] = np.nan  # columns 1.. are 75% missing: the dropper keeps column 0 only
    one = x[:, :1].copy()
    logistic: dict[str, Any] = {"estimator": "logistic", "selector": "k_best"}
    return {
        "select_k_1": ({**logistic, "select_k": 1}, x, y),
        "one_feature_model": ({**logistic, "select_k": 3}, one, y),
        "drop_columns_leaves_one": (
            {**logistic, "select_k": 2, "missing": "drop_columns", "drop_threshold": 0.5},
            sparse,
            y,
        ),
        "forest_select_k_1": (
            {
                "estimator": "random_forest",
                "selector": "k_best",
                "select_k": 1,
                "forest_n_estimators": 10,
                "forest_max_depth": 4,
            },
            x,
            y,
        ),
    }


@pytest.mark.parametrize("case", list(_one_column_windows()))
def test_a_k_best_selector_keeping_one_column_exports_with_parity(case: str) -> None:
    """skl2onnx's selector converter wrote `ConstantOfShape` (an invalid graph onnxruntime
    refuses to load) when the kept column indices were all zero — one kept column, the
    first: `select_k: 1`, a one-feature model, or `drop_columns` leaving one column. CV
    scored such a configuration normally, so a job it won failed at export."""
    params, x, y = _one_column_windows()[case]
    train, held_out = np.arange(200), np.arange(200, len(x))
    pipeline = fit_pipeline(params, x[train], y[train], seed=0)
    assert pipeline.named_steps["select"].get_support(indices=True).tolist() == [0]
    session = onnxruntime.InferenceSession(
        to_onnx(pipeline, x.shape[1]), providers=["CPUExecutionProvider"]
    )
    _, probabilities = session.run(None, {"input": x[held_out].astype(np.float32)})
    np.testing.assert_allclose(probabilities, pipeline.predict_proba(x[held_out]), atol=1e-4)


def test_the_k_best_selector_keeps_the_columns_select_k_best_keeps() -> None:
    """The selector has its own ONNX converter, not its own ranking: CV results stand."""
    x, y = binary(seed=8, n_features=8)
    r, t = regression(seed=8, n_features=8)
    for params, xx, yy, score in (
        ({"estimator": "logistic"}, x, y, f_classif),
        ({"estimator": "ridge"}, r, t, f_regression),
    ):
        for k in (1, 3, 8):
            pipeline = fit_pipeline({**params, "selector": "k_best", "select_k": k}, xx, yy, seed=0)
            selector = pipeline.named_steps["select"]
            reference = SelectKBest(score, k=k).fit(xx, yy)
            np.testing.assert_array_equal(selector.get_support(), reference.get_support())
            np.testing.assert_array_equal(selector.scores_, reference.scores_)


def test_a_key_given_twice_is_a_search_space_error_naming_its_path_and_lines(
    tmp_path: Path,
) -> None:
    """The last one won silently: a bound written twice searched the other range."""
    path = tmp_path / "space.yaml"
    path.write_text(
        "name: s\n"
        "params:\n"
        "  C: {type: float, low: 0.1, high: 1.0}\n"
        "  estimator:\n"
        "    type: categorical\n"
        "    choices: [logistic]\n"
        "    choices: [logistic, extra_trees]\n"
    )
    with pytest.raises(SearchSpaceError) as info:
        load_search_space(path)
    assert info.value.path == "params.estimator.choices"
    assert str(info.value) == (
        "params.estimator.choices: a key may be given once in a mapping, got it at lines 6 "
        "and 7 (YAML readers keep one of them silently)"
    )
    path.write_text(
        "name: s\n"
        "shared: &shared {type: float, low: 0.1, high: 1.0}\n"
        "params:\n"
        "  C: {<<: *shared, high: 10.0}\n"
    )
    with pytest.raises(SearchSpaceError, match="shared"):  # past the merge: the schema's
        load_search_space(path)


def test_a_search_space_nested_too_deeply_is_refused_with_the_reason(tmp_path: Path) -> None:
    """PyYAML recurses once per level: 5000 `[` escaped as a RecursionError traceback from
    the config that named the file."""
    path = tmp_path / "space.yaml"
    path.write_text("name: s\nparams: " + "[" * 5000 + "]" * 5000 + "\n")
    deeper = r"space\.yaml': nested deeper than the YAML reader can follow"
    with pytest.raises(SearchSpaceError, match=deeper):
        load_search_space(path)


def test_project_fills_a_parent_the_space_gained_with_the_pipeline_s_default() -> None:
    """History tuned C with no `estimator` (the pipeline built its default, logistic); the
    space gained `estimator` with C under `logistic`. C was dropped with its missing
    parent, and warm start re-scored `{"scaler": "none"}` as the best configuration."""
    space = small_space()
    assert space.project({"scaler": "none", "C": 1.3}) == {
        "scaler": "none",
        "estimator": "logistic",
        "C": 1.3,
    }
    # the default family is not a choice of the space: history's configuration is not in it
    boosting = small_space(
        params={
            **SMALL_SPACE["params"],
            "estimator": {
                **SMALL_SPACE["params"]["estimator"],
                "choices": ["gradient_boosting"],
                "when": {
                    "gradient_boosting": SMALL_SPACE["params"]["estimator"]["when"][
                        "gradient_boosting"
                    ]
                },
            },
        }
    )
    assert boosting.project({"scaler": "none", "C": 1.3}) is None


def test_project_skips_a_configuration_whose_dropped_choice_the_space_builds_otherwise() -> None:
    """The space dropped `estimator`: its pipeline always builds logistic. A gradient
    boosting configuration was projected to `{"scaler": "none"}` and re-scored as the
    best historical configuration; a logistic one (the default) is still that."""
    space = parse_search_space(
        {
            "name": "v1",
            "params": {
                "scaler": {"type": "categorical", "choices": ["none", "standard"]},
                "C": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
            },
        }
    )
    assert (
        space.project({"scaler": "none", "estimator": "gradient_boosting", "gb_n_estimators": 20})
        is None
    )
    assert space.project({"scaler": "none", "estimator": "logistic", "C": 0.05}) == {
        "scaler": "none",
        "C": 0.05,
    }
