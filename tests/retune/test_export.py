from __future__ import annotations

import copy
import dataclasses

import numpy as np
import onnx
import pytest
from retune_models import Fitted
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from retune import ExportError, ParityError, RetuneError, check_parity, to_onnx
from retune.space import fit_pipeline
from shadow import OnnxModel, Signature, TensorSpec

N_FEATURES = 5


class MajorityClassifier(ClassifierMixin, BaseEstimator):
    """A fitted classifier skl2onnx has no converter for."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> MajorityClassifier:
        self.classes_ = np.unique(y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.classes_[0])


def test_classifier_pipeline_exports_plain_probability_tensor(fitted: Fitted) -> None:
    model = OnnxModel.from_bytes(to_onnx(fitted.logistic, N_FEATURES))
    sig = model.signature
    assert sig.input.shape == (None, N_FEATURES) and sig.input.dtype == np.float32
    assert sig.output_names == ("label", "probabilities")  # no ZipMap sequence output
    assert sig.primary_output == "probabilities"


def test_regressor_exports_variable_output(fitted: Fitted) -> None:
    sig = OnnxModel.from_bytes(to_onnx(fitted.regression, N_FEATURES)).signature
    assert sig.primary_output == "variable"
    assert sig.output("variable").shape == (None, 1)


def test_name_and_target_opset_reach_the_graph(fitted: Fitted) -> None:
    proto = onnx.load_from_string(
        to_onnx(fitted.logistic, N_FEATURES, name="churn", target_opset=15)
    )
    assert proto.graph.name == "churn"
    assert {o.domain: o.version for o in proto.opset_import}[""] == 15


def test_unfitted_estimator_raises_export_error_from_converter() -> None:
    with pytest.raises(ExportError) as info:
        to_onnx(LogisticRegression(), N_FEATURES)
    assert info.value.__cause__ is not None
    assert "LogisticRegression" in str(info.value)


def test_estimator_without_converter_raises_export_error() -> None:
    est = MajorityClassifier().fit(np.zeros((4, N_FEATURES)), np.array([0, 1, 0, 1]))
    with pytest.raises(ExportError, match="MajorityClassifier"):
        to_onnx(est, N_FEATURES)


def test_n_features_must_be_positive(fitted: Fitted) -> None:
    with pytest.raises(ValueError, match="`n_features` must be >= 1, got 0"):
        to_onnx(fitted.logistic, 0)


@pytest.mark.parametrize("name", ["logistic", "boosting", "regression"])
def test_parity_passes_for_faithful_export(fitted: Fitted, name: str) -> None:
    estimator = getattr(fitted, name)
    diff = check_parity(to_onnx(estimator, N_FEATURES), estimator, fitted.x_holdout)
    assert 0.0 <= diff <= 1e-4


def test_parity_raises_for_onnx_of_another_model(fitted: Fitted) -> None:
    onnx_bytes = to_onnx(fitted.logistic, N_FEATURES)
    with pytest.raises(ParityError) as info:
        check_parity(onnx_bytes, fitted.boosting, fitted.x_holdout, tolerance=1e-4)
    error = info.value
    assert error.max_abs_diff > error.tolerance == 1e-4
    assert "differs from the estimator" in str(error)
    assert isinstance(error, ExportError) and isinstance(error, RetuneError)


@pytest.mark.parametrize("tolerance", [float("inf"), float("nan"), -1e-4])
def test_a_tolerance_that_would_pass_anything_or_nothing_is_refused(
    fitted: Fitted, tolerance: float
) -> None:
    """An infinite tolerance passed the ONNX of another model: the gate was off."""
    onnx_bytes = to_onnx(fitted.logistic, N_FEATURES)
    with pytest.raises(ValueError, match="`tolerance` must be a finite number >= 0"):
        check_parity(onnx_bytes, fitted.boosting, fitted.x_holdout, tolerance=tolerance)


def test_a_difference_that_is_not_a_number_fails_however_large_the_tolerance(
    fitted: Fitted,
) -> None:
    onnx_bytes = to_onnx(fitted.regression, N_FEATURES)
    broken = copy.deepcopy(fitted.regression)
    broken.coef_ = np.full_like(broken.coef_, np.nan)  # predicts NaN; the export does not
    with pytest.raises(ParityError) as info:
        check_parity(onnx_bytes, broken, fitted.x_holdout, tolerance=1e300)
    assert info.value.max_abs_diff == float("inf")


def test_parity_raises_when_output_shapes_differ(fitted: Fitted) -> None:
    onnx_bytes = to_onnx(fitted.logistic, N_FEATURES)
    with pytest.raises(ParityError, match="shape") as info:
        check_parity(onnx_bytes, fitted.regression, fitted.x_holdout)
    assert info.value.max_abs_diff == float("inf")


def test_parity_raises_when_holdout_does_not_fit_the_model(fitted: Fitted) -> None:
    onnx_bytes = to_onnx(fitted.logistic, N_FEATURES)
    with pytest.raises(ParityError, match="refused the holdout"):
        check_parity(onnx_bytes, fitted.logistic, fitted.x_holdout[:, :3])


def _signature(input_name: str, dtype: type, outputs: tuple[str, str]) -> Signature:
    return Signature(
        input=TensorSpec(name=input_name, dtype=np.dtype(dtype), shape=(None, N_FEATURES)),
        outputs=(
            TensorSpec(name=outputs[0], dtype=np.dtype(np.int64), shape=(None,)),
            TensorSpec(name=outputs[1], dtype=np.dtype(np.float32), shape=(None, 2)),
        ),
        primary_output=outputs[1],
    )


def test_an_export_like_a_float64_signature_takes_its_input_and_output_names(
    fitted: Fitted,
) -> None:
    like = _signature("float_input", np.float64, ("output_label", "output_probability"))
    onnx_bytes = to_onnx(fitted.logistic, N_FEATURES, like=like)
    sig = OnnxModel.from_bytes(onnx_bytes).signature
    assert (sig.input.name, sig.input.dtype) == ("float_input", np.dtype(np.float64))
    assert sig.output_names == ("output_label", "output_probability")
    assert sig.primary_output == "output_probability"
    # the float64 input is cast to the float32 model: parity holds through it
    assert check_parity(onnx_bytes, fitted.logistic, fitted.x_holdout) <= 1e-4


def test_an_export_like_a_signature_with_other_outputs_keeps_the_converter_s_names(
    fitted: Fitted,
) -> None:
    like = dataclasses.replace(
        _signature("x", np.float32, ("label", "probabilities")),
        outputs=(TensorSpec(name="score", dtype=np.dtype(np.float32), shape=(None, 1)),),
        primary_output="score",
    )
    sig = OnnxModel.from_bytes(to_onnx(fitted.regression, N_FEATURES, like=like)).signature
    assert sig.input.name == "x" and sig.output_names == ("score",)
    sig = OnnxModel.from_bytes(to_onnx(fitted.logistic, N_FEATURES, like=like)).signature
    assert sig.input.name == "x" and sig.output_names == ("label", "probabilities")


@pytest.mark.parametrize("shift", [-100.0, 100.0], ids=["onnx_lower", "onnx_higher"])
def test_parity_fails_for_a_regressor_whose_onnx_is_off_in_either_direction(
    fitted: Fitted, shift: float
) -> None:
    """The difference is absolute: an export predicting 100 lower on every row fails
    as one predicting 100 higher does (relative to the predictions' mean magnitude, on
    the rows predicted below it)."""
    shifted = copy.deepcopy(fitted.regression)
    shifted.intercept_ = shifted.intercept_ + shift
    expected = fitted.regression.predict(fitted.x_holdout)
    with pytest.raises(ParityError) as info:
        check_parity(to_onnx(shifted, N_FEATURES), fitted.regression, fitted.x_holdout)
    relative = 100.0 / float(np.abs(expected).mean())
    assert info.value.max_abs_diff == pytest.approx(relative, rel=1e-5)


def test_a_regressor_s_parity_at_a_target_scale_far_below_one_is_relative_to_it() -> None:
    """A conversion rate of ~1e-5: the differences were divided by max(1, largest
    prediction), an absolute tolerance of 1e-4, and the ONNX of a model trained on
    shuffled labels (predictions off by 65% of the largest) passed the gate."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, N_FEATURES)).astype(np.float32)
    rate = 2e-5 * (1 + np.tanh(x[:, 0] - x[:, 1]))
    params = {"estimator": "gradient_boosting_regressor", "gb_n_estimators": 30}
    right = fit_pipeline(params, x, rate, seed=0)
    wrong = fit_pipeline(params, x, rng.permutation(rate), seed=0)
    holdout = x[:80]
    assert check_parity(to_onnx(right, N_FEATURES), right, holdout) <= 1e-4  # float32 only
    with pytest.raises(ParityError, match="differs from the estimator") as info:
        check_parity(to_onnx(wrong, N_FEATURES), right, holdout)
    assert info.value.max_abs_diff > 0.1


def test_a_regressor_s_parity_is_not_loosened_for_most_rows_by_a_few_huge_ones() -> None:
    """Most rows ~50, a few large accounts at 2e6: one scale for the whole holdout (its
    largest prediction) let rows around 50 be off by 30 and pass."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, N_FEATURES)).astype(np.float32)
    y = 50 + 20 * np.tanh(x[:, 0] - x[:, 1])
    y[x[:, 2] > 2.0] = 2e6
    small = y < 1000
    y_wrong = y.copy()
    y_wrong[small] = rng.permutation(y[small])  # the small rows learnt nothing
    params = {"estimator": "random_forest_regressor", "forest_n_estimators": 20}
    right = fit_pipeline(params, x, y, seed=0)
    wrong = fit_pipeline(params, x, y_wrong, seed=0)
    holdout = x[:120]
    assert (right.predict(holdout) > 1000).any()  # the holdout holds large accounts
    assert check_parity(to_onnx(right, N_FEATURES), right, holdout) <= 1e-4
    with pytest.raises(ParityError, match="differs from the estimator"):
        check_parity(to_onnx(wrong, N_FEATURES), right, holdout)
    boosted = fit_pipeline({"estimator": "gradient_boosting_regressor"}, x, y, seed=0)
    assert check_parity(to_onnx(boosted, N_FEATURES), boosted, holdout) <= 1e-4
