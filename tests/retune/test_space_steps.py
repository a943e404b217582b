"""A parameter's ``step`` against its range: a grid of two points or more, fine enough only
as far as float arithmetic keeps its points on it, dividing ``high - low`` (as Optuna
decides it), and a ``safe`` range holding a point of it; each refusal a ``SearchSpaceError``
naming the key path, the rule and the value."""

from __future__ import annotations

import warnings

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from retune import SearchSpaceError
from retune.space import FloatParam, IntParam, parse_search_space, read_yaml
from retune.space._params import MAX_GRID_INDEX

#: The choices that make the pipeline read the parameters these tests declare.
_READERS = (
    "  estimator: {type: categorical, choices: [gradient_boosting]}\n"
    "  missing: {type: categorical, choices: [drop_columns]}\n"
)


def _load(params: str, *, readers: str = _READERS) -> None:
    parse_search_space(read_yaml(f"name: t\nparams:\n{readers}{params}"))


def _refusal(params: str, *, readers: str = _READERS) -> SearchSpaceError:
    with pytest.raises(SearchSpaceError) as info:
        _load(params, readers=readers)
    return info.value


# -- two grid points or more ------------------------------------------------------------


def test_an_int_step_past_the_range_is_refused_not_made_a_constant() -> None:
    """[1, 3] step 5 loaded, and Optuna lowered `high` to 1: the constant `low < high`
    refuses when written directly, its `safe: [2, 3]` never drawn."""
    error = _refusal("  gb_max_depth: {type: int, low: 1, high: 3, step: 5, safe: [2, 3]}\n")
    assert error.path == "params.gb_max_depth.step"
    assert "`step` must be at most `high` - `low` = 2 (a grid of two points or more)" in str(error)
    assert "got 5" in str(error) and "only 1" in str(error)


def test_a_float_step_past_the_range_is_refused() -> None:
    error = _refusal("  gb_subsample: {type: float, low: 0.5, high: 1.0, step: 0.75}\n")
    assert error.path == "params.gb_subsample.step"
    assert "at most `high` - `low` = 0.5" in str(error) and "got 0.75" in str(error)


def test_a_step_spanning_the_range_exactly_loads_its_two_points() -> None:
    _load("  gb_max_depth: {type: int, low: 1, high: 3, step: 2}\n")
    _load("  gb_subsample: {type: float, low: 0.5, high: 1.0, step: 0.5}\n")


# -- a grid float arithmetic keeps ------------------------------------------------------


def test_a_float_step_tiny_against_the_range_is_refused_with_its_nested_path() -> None:
    """Step 1e-28 on [0.001, 10] loaded; every trial then raised decimal's
    DivisionImpossible inside Optuna's FloatDistribution and the job failed."""
    error = _refusal(
        "  estimator:\n"
        "    type: categorical\n"
        "    choices: [logistic]\n"
        "    when:\n"
        "      logistic:\n"
        "        C: {type: float, low: 0.001, high: 10.0, step: 1.0e-28}\n",
        readers="",
    )
    assert error.path == "params.estimator.when.logistic.C.step"
    message = str(error)
    assert "max(|low|, |high|) / 10000000 = 1e-06" in message
    assert "got 1e-28" in message


def test_the_finest_grid_allowed_keeps_every_drawn_value_on_it() -> None:
    """The bound keeps a margin below where float rounding starts to move Optuna's draws off
    the grid by more than 1e-8 of a step (its tolerance and ours): in seeded draws, 3e7 steps
    from zero lost one in 2,000, 1e8 steps one in 14 (here 147 of 2,000), 5e8 two in five."""
    finest = FloatParam(type="float", low=-2.0, high=8.0, step=8.0 / MAX_GRID_INDEX)
    distribution = FloatDistribution(finest.low, finest.high, step=finest.step)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(2000):
        trial = study.ask()
        value = trial.suggest_float("x", finest.low, finest.high, step=finest.step)
        study.tell(trial, 0.0)
        assert finest.contains(value) and distribution._contains(value), value
    _load(f"  gb_learning_rate: {{type: float, low: 0.5, high: 8.0, step: {finest.step!r}}}\n")
    error = _refusal("  gb_learning_rate: {type: float, low: 0.5, high: 8.0, step: 8.0e-8}\n")
    assert error.path == "params.gb_learning_rate.step"


# -- step divides the range, as Optuna decides it --------------------------------------


def test_an_int_step_not_dividing_the_range_is_refused_naming_the_high_it_would_become() -> None:
    error = _refusal("  gb_n_estimators: {type: int, low: 10, high: 25, step: 10}\n")
    assert error.path == "params.gb_n_estimators.step"
    assert "`step` must divide `high` - `low` = 15, got 10" in str(error)
    assert "lower `high` to 20" in str(error)


def test_a_float_step_not_dividing_the_range_is_refused_naming_the_high_it_would_become() -> None:
    error = _refusal("  drop_threshold: {type: float, low: 0.05, high: 0.6, step: 0.1}\n")
    assert error.path == "params.drop_threshold.step"
    assert "`step` must divide `high` - `low` = 0.55, got 0.1" in str(error)
    assert "lower `high` to 0.55" in str(error)


@pytest.mark.parametrize(
    ("low", "high", "step"),
    [
        (0.1, 0.7, 0.1),  # 0.6 / 0.1 is 5.999... in binary floats
        (0.0, 0.3, 0.1),
        (0.5, 1.0, 0.25),
        (1e-5, 3e-4, 1e-5),
        (0.05, 0.6, 0.1),
        (0.1, 0.55, 0.1),
        (0.0, 1.0, 0.3333333333333333),
        (-1.5, 2.5, 0.4),
        (-1.5, 2.6, 0.4),
        (1.0, 10.0, 3.0),
    ],
    ids=["tenths-to-0.7", "tenths-to-0.3", "quarters", "fine", "0.05-to-0.6", "0.1-to-0.55",
         "thirds", "negative-low", "negative-low-off", "threes"],
)  # fmt: skip
def test_a_float_grid_loads_exactly_when_optuna_keeps_its_high(
    low: float, high: float, step: float
) -> None:
    """Optuna reads the bounds as the decimals they print as: a grid it would cut short
    (with a warning every trial) is refused, one it keeps loads, float rounding or not."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = FloatDistribution(low, high, step=step).high == high
    assert kept == (not caught)
    if kept:
        FloatParam(type="float", low=low, high=high, step=step)
    else:
        with pytest.raises(ValueError, match="must divide"):
            FloatParam(type="float", low=low, high=high, step=step)


@pytest.mark.parametrize(
    ("low", "high", "step"),
    [(10, 200, 10), (10, 205, 10), (-7, 8, 5), (-7, 9, 5), (0, 2**53, 2**52), (1, 2**53, 3)],
    ids=["divides", "off-by-5", "negative-low", "negative-low-off", "huge", "huge-off"],
)
def test_an_int_grid_loads_exactly_when_optuna_keeps_its_high(
    low: int, high: int, step: int
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = IntDistribution(low, high, step=step).high == high
    assert kept == (not caught)
    if kept:
        IntParam(type="int", low=low, high=high, step=step)
    else:
        with pytest.raises(ValueError, match="must divide"):
            IntParam(type="int", low=low, high=high, step=step)


# -- a safe range holding a grid point --------------------------------------------------


def test_an_int_safe_range_between_grid_points_is_refused() -> None:
    """No draw could lie in it, so every promotion waited for an approver."""
    error = _refusal(
        "  gb_n_estimators: {type: int, low: 10, high: 200, step: 10, safe: [12, 18]}\n"
    )
    assert error.path == "params.gb_n_estimators.safe"
    assert "`safe` must hold a point of the grid from 10 in steps of 10, got [12, 18]" in str(error)


def test_a_float_safe_range_between_grid_points_is_refused() -> None:
    error = _refusal(
        "  drop_threshold: {type: float, low: 0.1, high: 0.5, step: 0.1, safe: [0.22, 0.28]}\n"
    )
    assert error.path == "params.drop_threshold.safe"
    assert "from 0.1 in steps of 0.1, got [0.22, 0.28]" in str(error)


def test_a_safe_range_holding_one_grid_point_loads() -> None:
    """0.1 + 2 * 0.1 is 0.30000000000000004: the point is counted up to float rounding."""
    _load("  drop_threshold: {type: float, low: 0.1, high: 0.5, step: 0.1, safe: [0.3, 0.3]}\n")
    _load("  gb_n_estimators: {type: int, low: 10, high: 200, step: 10, safe: [15, 20]}\n")
    _load("  gb_max_depth: {type: int, low: 1, high: 5, safe: [3, 3]}\n")
