"""A hyperparameter set's identity is the pipeline it builds (``pipeline_parameters``):
every name the pipeline reads under the choices made, defaults filled in, none it does
not read, each number as the pipeline casts it. One pipeline had as many set ids as
spellings of it: a tuning of the demo space, of the tabular space and the demo's own
champion recorded three, and ``C: 1`` was another set than ``C: 1.0``."""

from __future__ import annotations

from retune.space import DEFAULTS, pipeline_parameters


def test_a_pipeline_is_one_set_however_its_record_spells_it() -> None:
    demo = {"estimator": "logistic", "C": 1.0}
    tuned_demo = {"scaler": "none", "estimator": "logistic", "C": 1.0}
    tuned_tabular = {**tuned_demo, "class_weight": "none", "selector": "none"}
    by_hand = {"estimator": "logistic", "C": 1}
    built = pipeline_parameters(demo)
    assert built is not None
    assert built == pipeline_parameters(tuned_demo) == pipeline_parameters(tuned_tabular)
    assert built == pipeline_parameters(by_hand)
    assert type(built["C"]) is float and built["estimator"] == "logistic"


def test_names_the_pipeline_does_not_read_are_not_part_of_it() -> None:
    boosted = {"estimator": "gradient_boosting", "gb_n_estimators": 60}
    built = pipeline_parameters({**boosted, "C": 1000.0, "select_k": 3})
    assert built == pipeline_parameters(boosted)
    assert built is not None and "C" not in built and "select_k" not in built
    assert built["gb_n_estimators"] == 60 and type(built["gb_n_estimators"]) is int
    assert pipeline_parameters({**boosted, "gb_n_estimators": 60.0}) == built


def test_numbers_are_cast_as_the_pipeline_casts_them() -> None:
    dropping = {"estimator": "ridge", "missing": "drop_columns"}
    negative_zero = pipeline_parameters({**dropping, "drop_threshold": -0.0})
    zero = pipeline_parameters({**dropping, "drop_threshold": 0})
    assert negative_zero == zero and negative_zero is not None
    assert str(negative_zero["drop_threshold"]) == "0.0"


def test_a_set_the_pipeline_would_not_build_as_recorded_has_no_pipeline_form() -> None:
    """Its own spelling is its identity: a name outside the vocabulary (a model trained
    elsewhere), a choice the pipeline does not take, a fraction of a count, a number
    written as text, or nothing recorded at all (``{}`` says nothing of how it was built)."""
    assert pipeline_parameters({"estimator": "logistic", "penalty": "l2"}) is None
    assert pipeline_parameters({"estimator": "svm"}) is None
    assert pipeline_parameters({"estimator": "random_forest", "forest_max_depth": 2.5}) is None
    assert pipeline_parameters({"estimator": "logistic", "C": "1.0"}) is None
    assert pipeline_parameters({"estimator": "logistic", "C": True}) is None
    assert pipeline_parameters({}) is None
    assert pipeline_parameters(dict(DEFAULTS)) is not None


def test_a_set_naming_no_estimator_is_known_by_its_spelling() -> None:
    """A record naming no estimator may be of any model (``{"alpha": 5000.0}`` registered
    by hand for a regressor): read as the pipeline's default logistic model, it was one
    set with ``{"alpha": 1.0}`` and with every logistic model at its defaults."""
    assert pipeline_parameters({"alpha": 5000.0}) is None
    assert pipeline_parameters({"C": 2.0, "scaler": "standard"}) is None


def test_an_integer_beyond_a_float_is_kept_or_leaves_the_spelling() -> None:
    """Registration took such an integer once: the migration re-keying stored sets raised
    ``OverflowError`` on it, and the store could not be opened."""
    huge = 10**400
    built = pipeline_parameters({"estimator": "logistic", "selector": "k_best", "select_k": huge})
    assert built is not None and built["select_k"] == huge
    assert pipeline_parameters({"estimator": "logistic", "C": huge}) is None
