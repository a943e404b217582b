"""Every objective parameter is checked for type and range when the objective is built,
and the refusal names the field, the rule and the value; a cost matrix under which no
decision changes the cost is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.objectives import CostWeightedError, ObjectiveError, make_objective
from tunewatch import ConfigError, load_config

UNIT_OPEN = "(0, 1)"
UNIT_HALF_OPEN = "(0, 1]"
BETA = "(0, 1e+100]"

# (objective, parameter, its rule)
PARAMETERS: dict[str, tuple[str, str, str]] = {
    "accuracy.threshold": ("accuracy", "threshold", UNIT_OPEN),
    "f_beta.threshold": ("f_beta", "threshold", UNIT_OPEN),
    "f_beta.beta": ("f_beta", "beta", BETA),
    "recall_at_precision.min_precision": (
        "recall_at_precision",
        "min_precision",
        UNIT_HALF_OPEN,
    ),
    "precision_at_recall.min_recall": ("precision_at_recall", "min_recall", UNIT_HALF_OPEN),
}

MALFORMED = {
    "a_nested_list": ([[0.9]], "[[0.9]]"),
    "a_list": ([0.9], "[0.9]"),
    "text": ("0.9", "'0.9'"),
    "none": (None, "None"),
    "true": (True, "True"),
    "false": (False, "False"),
    "numpy_true": (np.bool_(True), "True"),
    "nan": (float("nan"), "nan"),
    "infinity": (float("inf"), "inf"),
    "minus_infinity": (float("-inf"), "-inf"),
    "zero": (0, "0"),
    "negative": (-0.5, "-0.5"),
}


def _rule_message(field: str, rule: str, shown: str) -> str:
    number = "a finite number" if field == "beta" else "a number"
    return f"`{field}` must be {number} in {rule}, got {shown}"


@pytest.mark.parametrize("value, shown", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("objective, field, rule", PARAMETERS.values(), ids=PARAMETERS.keys())
def test_a_malformed_parameter_is_refused_naming_field_rule_and_value(
    objective: str, field: str, rule: str, value: object, shown: str
) -> None:
    """`min_precision: [[0.9]]` was refused with "'<' not supported between instances of
    'float' and 'list'", which names neither the field nor the rule; `beta: true` loaded
    as beta 1."""
    with pytest.raises(ObjectiveError) as info:
        make_objective(objective, task="binary", **{field: value})
    assert str(info.value) == _rule_message(field, rule, shown)
    assert info.value.param == field


@pytest.mark.parametrize(
    "objective, field, value, shown",
    [
        ("accuracy", "threshold", 1.0, "1.0"),
        ("f_beta", "threshold", 1, "1"),
        ("f_beta", "beta", 1e200, "1e+200"),
        ("recall_at_precision", "min_precision", 1.5, "1.5"),
        ("precision_at_recall", "min_recall", np.float64(1.0000001), "1.0000001"),
    ],
    ids=[
        "accuracy_threshold_one",
        "f_beta_threshold_one",
        "beta_too_large",
        "min_precision_past_one",
        "numpy_min_recall_past_one",
    ],
)
def test_a_number_past_the_upper_bound_is_refused(
    objective: str, field: str, value: Any, shown: str
) -> None:
    rule = dict((p[1], p[2]) for p in PARAMETERS.values())[field]
    with pytest.raises(ObjectiveError) as info:
        make_objective(objective, **{field: value})
    assert str(info.value) == _rule_message(field, rule, shown)


@pytest.mark.parametrize(
    "objective, params",
    [
        ("accuracy", {"threshold": 0.25}),
        ("accuracy", {"threshold": np.float32(0.75)}),
        ("f_beta", {"beta": 2, "threshold": 0.3}),
        ("f_beta", {"beta": 1e100}),
        ("recall_at_precision", {"min_precision": 1}),
        ("recall_at_precision", {"min_precision": np.float64(0.9)}),
        ("precision_at_recall", {"min_recall": 1e-9}),
    ],
    ids=[
        "accuracy",
        "accuracy_numpy_float",
        "f_beta",
        "f_beta_largest_beta",
        "min_precision_integer_one",
        "min_precision_numpy",
        "min_recall_tiny",
    ],
)
def test_valid_parameters_build_and_are_kept_as_floats(
    objective: str, params: dict[str, Any]
) -> None:
    built = make_objective(objective, task="binary", **params)
    for field, value in params.items():
        kept = getattr(built, field)
        assert type(kept) is float and kept == float(value)


def test_a_missing_required_parameter_is_named_with_its_rule() -> None:
    with pytest.raises(ObjectiveError) as info:
        make_objective("recall_at_precision", task="binary")
    assert str(info.value) == (
        "objective 'recall_at_precision' needs `min_precision`, a number in (0, 1]"
    )
    assert info.value.param == "min_precision"


@pytest.mark.parametrize(
    "objective, params, message",
    [
        (
            "log_loss",
            {"threshold": 0.5},
            "objective 'log_loss' takes no parameters, got `threshold`",
        ),
        ("f_beta", {"betta": 2.0}, "objective 'f_beta' takes `beta` or `threshold`, got `betta`"),
        (
            "cost",
            {"cost_matrix": [[0, 1], [1, 0]], "matrix": 1},
            "objective 'cost' takes `cost_matrix`, got `matrix`",
        ),
    ],
    ids=["none_taken", "misspelt", "one_extra"],
)
def test_an_unknown_parameter_is_refused_listing_the_valid_ones(
    objective: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ObjectiveError) as info:
        make_objective(objective, **params)
    assert str(info.value) == message


CONSTANT_ROWS = {
    "all_zero": [[0, 0], [0, 0]],
    "all_five": [[5, 5], [5, 5]],
    "a_constant_per_row": [[1, 1], [3, 3]],
    "three_classes": [[2, 2, 2], [0, 0, 0], [7, 7, 7]],
    "numpy": np.array([[0.5, 0.5], [4.0, 4.0]]),
}


@pytest.mark.parametrize("matrix", CONSTANT_ROWS.values(), ids=CONSTANT_ROWS.keys())
def test_a_cost_matrix_of_constant_rows_is_refused(matrix: object) -> None:
    """Under [[5, 5], [5, 5]] a perfect and a random model paired over 5,000 requests
    stayed at `continue`: no decision changes the cost, so a comparison or rollback
    watch on it never ends."""
    with pytest.raises(ObjectiveError) as info:
        make_objective("cost", cost_matrix=matrix)
    message = str(info.value)
    assert message.startswith(
        "`cost_matrix` must have a row (a true class) whose costs differ between the "
        "predicted classes: with every row constant no decision changes the cost, so no "
        "model scores better than another, got "
    )
    assert message.endswith(repr(matrix))
    assert info.value.param == "cost_matrix"


@pytest.mark.parametrize(
    "matrix",
    [
        [[0, 0], [1, 0]],
        [[0, 1], [5, 0]],
        [[3, 3, 3], [1, 0, 1], [2, 2, 2]],
        [[0.0, 2.5], [1e6, 0.0]],
    ],
    ids=["one_constant_row", "usual", "one_varying_row_of_three", "floats"],
)
def test_a_cost_matrix_with_a_varying_row_builds(matrix: list[list[float]]) -> None:
    cost = make_objective("cost", cost_matrix=matrix)
    assert isinstance(cost, CostWeightedError)
    np.testing.assert_array_equal(cost.cost_matrix, np.asarray(matrix, dtype=np.float64))


def test_a_matrix_with_one_constant_row_still_tells_a_good_model_from_a_bad_one() -> None:
    """Row 0 (a true negative) costs nothing whatever is decided, but missing a positive
    costs 1: the good model's mean loss is lower."""
    cost = make_objective("cost", task="binary", cost_matrix=[[0, 0], [1, 0]])
    y = np.array([1, 1, 0, 0])
    good = cost.value(y, np.array([0.9, 0.8, 0.1, 0.2]))
    bad = cost.value(y, np.array([0.0, 0.0, 0.1, 0.2]))
    assert (good, bad) == (0.0, 0.5)


@pytest.mark.parametrize(
    "matrix, message",
    [
        (
            [[0, True], [1, 0]],
            "`cost_matrix` must be a square matrix of numbers, got [[0, True], [1, 0]]",
        ),
        (
            [["0", "1"], ["1", "0"]],
            "`cost_matrix` must be a square matrix of numbers, got [['0', '1'], ['1', '0']]",
        ),
        (
            np.array([[False, True], [True, False]]),
            "`cost_matrix` must be a square matrix of numbers, got "
            + repr(np.array([[False, True], [True, False]])),
        ),
        (0.5, "`cost_matrix` must be a square matrix of numbers, got 0.5"),
        (
            [[0, 1, 2], [1, 0, 2]],
            "`cost_matrix` must be square, at least 2x2, got 2 rows of 3: [[0, 1, 2], [1, 0, 2]]",
        ),
        ([[0]], "`cost_matrix` must be square, at least 2x2, got 1 row of 1: [[0]]"),
        (
            [[0, float("nan")], [1, 0]],
            "`cost_matrix` entries must be finite and non-negative, got [[0, nan], [1, 0]]",
        ),
        (
            [[0, -1], [1, 0]],
            "`cost_matrix` entries must be finite and non-negative, got [[0, -1], [1, 0]]",
        ),
        (
            [[0, float("inf")], [1, 0]],
            "`cost_matrix` entries must be finite and non-negative, got [[0, inf], [1, 0]]",
        ),
    ],
    ids=[
        "a_flag",
        "text_numbers",
        "numpy_flags",
        "a_number",
        "not_square",
        "one_by_one",
        "nan",
        "negative",
        "infinite",
    ],
)
def test_a_malformed_cost_matrix_is_refused_naming_the_rule_and_the_value(
    matrix: object, message: str
) -> None:
    with pytest.raises(ObjectiveError) as info:
        make_objective("cost", cost_matrix=matrix)
    assert str(info.value) == message
    assert info.value.param == "cost_matrix"


def _config(tmp_path: Path, objective: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"data_dir: {tmp_path}\nmodels:\n  - {{name: m, task: binary, objective: {objective}}}\n"
    )
    return path


@pytest.mark.parametrize(
    "objective, message",
    [
        (
            "{name: recall_at_precision, params: {min_precision: [[0.9]]}}",
            r"`min_precision` must be a number in \(0, 1\], got \[\[0\.9\]\]",
        ),
        (
            "{name: cost, params: {cost_matrix: [[5, 5], [5, 5]]}}",
            r"`cost_matrix` must have a row \(a true class\) whose costs differ",
        ),
        (
            "{name: cost, params: {cost_matrix: [[0, 0], [0, 0]]}}",
            r"`cost_matrix` must have a row \(a true class\) whose costs differ",
        ),
    ],
    ids=["nested_min_precision", "constant_five", "constant_zero"],
)
def test_a_config_with_a_malformed_objective_parameter_is_a_config_error(
    tmp_path: Path, objective: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=r"models\.0\b.*" + message):
        load_config(_config(tmp_path, objective), env={})
