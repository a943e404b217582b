"""Log loss reads a class's probability as its share of the row: a model whose rows do
not sum to one cannot score better by it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.objectives import make_objective


def test_rows_of_ones_score_log_two_not_zero() -> None:
    """A challenger answering [1, 1] for every row had loss 0 on every request, was
    decided better than a good champion and promoted."""
    loss = make_objective("log_loss", task="binary").per_request_loss(
        np.array([0, 1]), np.array([[1.0, 1.0], [1.0, 1.0]])
    )
    np.testing.assert_allclose(loss, [math.log(2), math.log(2)])


def test_a_multiclass_row_is_read_as_its_share_of_the_row_sum() -> None:
    loss = make_objective("log_loss", task="multiclass").per_request_loss(
        np.array([2]), np.array([[0.5, 0.5, 1.0]])
    )
    np.testing.assert_allclose(loss, [math.log(2)])


@pytest.mark.parametrize(
    ("y_pred", "expected"),
    [
        ([[0.2, 0.8], [0.9, 0.1]], [-math.log(0.8), -math.log(0.9)]),
        ([0.8, 0.1], [-math.log(0.8), -math.log(0.9)]),
    ],
    ids=["two-columns", "one-column"],
)
def test_normalised_rows_score_as_before(y_pred: list[object], expected: list[float]) -> None:
    loss = make_objective("log_loss", task="binary").per_request_loss(
        np.array([1, 0]), np.array(y_pred)
    )
    np.testing.assert_allclose(loss, expected)


def test_a_sure_wrong_class_is_still_clipped_not_infinite() -> None:
    loss = make_objective("log_loss", task="binary").per_request_loss(
        np.array([0]), np.array([[0.0, 1.0]])
    )
    assert np.isfinite(loss).all()
    assert loss[0] == pytest.approx(-math.log(1e-15))
