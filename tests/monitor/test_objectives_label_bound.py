"""A regression label so large that a squared error can pass ``MAX_LOSS`` is one RMSE
does not score, in monitoring, the comparisons and training alike: a label of 3.4e38 (a
common "missing" sentinel, inside float32's range) was left out of monitoring by its
loss, but a retune trained on it (``valid_labels`` accepted every label), its CV RMSE came
out 6e36 and a winner answering 4.6e37 was registered as a shadow."""

from __future__ import annotations

import numpy as np

from monitor.objectives import MAX_LOSS, OBJECTIVES, make_objective

#: the largest label RMSE scores: a prediction of ``-bound`` gives a squared error of
#: ``MAX_LOSS``
BOUND = float(np.sqrt(MAX_LOSS)) / 2


def test_rmse_refuses_a_label_whose_squared_error_can_pass_the_largest_loss() -> None:
    rmse = make_objective("rmse")
    labels = np.array([3.4e38, -1e30, 1e20, -1e20, 2.5])
    assert rmse.valid_labels(labels).tolist() == [False, False, True, True, True]
    # whatever the prediction: a perfect one has a loss of 0, and is still not scored
    assert rmse.valid_rows(labels, labels).tolist() == [False, False, True, True, True]
    assert rmse.valid_rows(labels, np.zeros(5)).tolist() == [False, False, True, True, True]


def test_rmse_s_label_bound_is_derived_from_the_largest_loss() -> None:
    rmse = make_objective("rmse")
    at = np.array([BOUND, -BOUND])
    past = np.array([np.nextafter(BOUND, np.inf), np.nextafter(-BOUND, -np.inf)])
    assert rmse.valid_labels(at).tolist() == [True, True]
    assert rmse.valid_labels(past).tolist() == [False, False]
    assert f"{BOUND:.3g}" in rmse.label_rule and f"{MAX_LOSS:.3g}" in rmse.label_rule


def test_rmse_refuses_a_label_that_is_not_a_number() -> None:
    rmse = make_objective("rmse")
    labels = np.array([np.nan, np.inf, -np.inf, 0.0])
    assert rmse.valid_labels(labels).tolist() == [False, False, False, True]


def test_mae_s_labels_are_all_scored_up_to_float32_s_range() -> None:
    """MAE's loss passes ``MAX_LOSS`` only for a label past 5e49, beyond float32's range
    (3.4e38), which the labels API and the training window refuse already."""
    mae = make_objective("mae")
    labels = np.array([3.4e38, -3.4e38, 1e20])
    assert mae.valid_labels(labels).tolist() == [True, True, True]
    assert mae.valid_rows(labels, labels).tolist() == [True, True, True]
    assert mae.label_rule == ""


def test_every_regression_objective_s_valid_rows_leave_out_what_valid_labels_refuses() -> None:
    """One rule: a row whose label ``valid_labels`` refuses is not one ``valid_rows``
    keeps, whatever the prediction (a perfect one included), so monitoring, the
    comparisons and training leave out the same labels."""
    labels = np.array([0.0, 1.0, -2.0, 1e20, 5e24, 6e24, 3.4e38, -1e30, 1e-160])
    regression = sorted(n for n, cls in OBJECTIVES.items() if "regression" in cls.tasks)
    assert regression == ["mae", "mape", "rmse"]
    for name in regression:
        objective = make_objective(name, task="regression")
        valid_labels = objective.valid_labels(labels)
        for predictions in (labels, np.zeros_like(labels), np.full_like(labels, 3.0)):
            rows = objective.valid_rows(labels, predictions)
            assert not (rows & ~valid_labels).any(), (name, predictions.tolist())
        # a perfect prediction is scored on every label the objective scores
        assert objective.valid_rows(labels, labels).tolist() == valid_labels.tolist(), name
