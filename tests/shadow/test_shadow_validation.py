from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest
from shadow_models import N_FEATURES, Data, Exported

from shadow import (
    FeatureRange,
    InvalidInputError,
    OnnxModel,
    ShadowError,
    Signature,
    TensorSpec,
    check_output,
    validate_batch,
)


def codes_of(
    x: np.ndarray,
    signature: Signature,
    *,
    max_rows: int = 100,
    ranges: Sequence[FeatureRange | None] | None = None,
) -> str:
    with pytest.raises(InvalidInputError) as info:
        validate_batch(x, signature, max_rows=max_rows, ranges=ranges)
    return info.value.code


@pytest.fixture
def sig(logistic: Exported) -> Signature:
    return logistic.model.signature


def row(value: float = 0.0, n: int = N_FEATURES) -> np.ndarray:
    return np.full((1, n), value)


@pytest.mark.parametrize(
    "x",
    [
        pytest.param(np.ones((1, N_FEATURES), dtype=bool), id="bool"),
        pytest.param(np.full((1, N_FEATURES), "1.0"), id="str"),
        pytest.param(np.full((1, N_FEATURES), 1.0, dtype=object), id="object"),
        pytest.param(np.ones((1, N_FEATURES), dtype=complex), id="complex"),
    ],
)
def test_non_numeric_dtype_is_dtype_mismatch(x: np.ndarray, sig: Signature) -> None:
    assert codes_of(x, sig) == "dtype_mismatch"


def test_wrong_feature_count_is_shape_mismatch_naming_both_shapes(sig: Signature) -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_batch(row(n=N_FEATURES - 1), sig, max_rows=10)
    assert info.value.code == "shape_mismatch"
    assert f"[N, {N_FEATURES}]" in info.value.message
    assert f"[1, {N_FEATURES - 1}]" in info.value.message


def test_one_dimensional_input_is_shape_mismatch(sig: Signature) -> None:
    assert codes_of(np.zeros(N_FEATURES), sig) == "shape_mismatch"


def test_zero_rows_is_empty_batch(sig: Signature) -> None:
    assert codes_of(np.zeros((0, N_FEATURES)), sig) == "empty_batch"


def test_rows_above_max_rows_is_batch_too_large(sig: Signature) -> None:
    assert codes_of(np.zeros((11, N_FEATURES)), sig, max_rows=10) == "batch_too_large"
    assert validate_batch(np.zeros((10, N_FEATURES)), sig, max_rows=10).shape == (10, N_FEATURES)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "minus_inf"])
def test_non_finite_value_is_non_finite_naming_row_and_column(bad: float, sig: Signature) -> None:
    x = np.zeros((3, N_FEATURES))
    x[2, 4] = bad
    with pytest.raises(InvalidInputError) as info:
        validate_batch(x, sig, max_rows=10)
    assert info.value.code == "non_finite"
    assert "row 2, column 4" in info.value.message


def test_float64_beyond_float32_range_is_out_of_range(sig: Signature) -> None:
    x = row()
    x[0, 1] = -1e39
    with pytest.raises(InvalidInputError) as info:
        validate_batch(x, sig, max_rows=10)
    assert info.value.code == "out_of_range"
    assert "column 1" in info.value.message


def test_value_outside_feature_range_is_out_of_range_naming_feature_and_range(
    sig: Signature,
) -> None:
    ranges = (None, FeatureRange(0.0, 1.0), *([None] * (N_FEATURES - 2)))
    x = row(0.5)
    x[0, 1] = 1.5
    with pytest.raises(InvalidInputError) as info:
        validate_batch(x, sig, max_rows=10, ranges=ranges)
    assert info.value.code == "out_of_range"
    assert "feature 1" in info.value.message
    assert "1.5" in info.value.message
    assert "[0.0, 1.0]" in info.value.message


def test_a_range_on_the_last_feature_is_enforced(sig: Signature) -> None:
    last = N_FEATURES - 1
    ranges = (*([None] * last), FeatureRange(-10.0, 10.0))
    x = row(0.5)
    x[0, last] = 50.0
    with pytest.raises(InvalidInputError) as info:
        validate_batch(x, sig, max_rows=10, ranges=ranges)
    assert info.value.code == "out_of_range"
    assert f"feature {last}" in info.value.message and "50.0" in info.value.message


def test_values_on_range_bounds_are_accepted(sig: Signature) -> None:
    ranges = [FeatureRange(0.0, 1.0)] * N_FEATURES
    x = np.array([[0.0, 1.0, 0.0, 1.0, 0.5, 0.5]])
    np.testing.assert_array_equal(validate_batch(x, sig, max_rows=1, ranges=ranges), x)


def _bounded(low: float, high: float) -> tuple[FeatureRange | None, ...]:
    return (FeatureRange(low, high), *([None] * (N_FEATURES - 1)))


@pytest.mark.parametrize(
    ("dtype", "high", "low"),
    [
        pytest.param(np.float32, 0.99, 0.01, id="binary-fp32"),  # 0.99 rounds up, 0.01 down
        pytest.param(np.float64, 0.99, 0.01, id="json"),
        pytest.param(np.float64, 0.990000005, 0.0099999999, id="json-rounding-to-the-bounds"),
    ],
)
def test_a_value_whose_float32_is_a_bound_s_float32_is_accepted_however_it_was_sent(
    dtype: type[np.floating], high: float, low: float, sig: Signature
) -> None:
    """0.99 sent as an OIP binary FP32 tensor (tritonclient's default) was refused
    out_of_range against a bound of 0.99, and accepted sent as JSON, though the model and
    the store see the same float32 either way: bounds are compared in the model's dtype."""
    x = np.zeros((2, N_FEATURES), dtype=dtype)
    x[0, 0], x[1, 0] = high, low
    out = validate_batch(x, sig, max_rows=2, ranges=_bounded(0.01, 0.99))
    assert out[0, 0] == np.float32(0.99) and out[1, 0] == np.float32(0.01)


def test_an_fp32_value_at_a_bound_is_accepted_by_a_float64_model(sig: Signature) -> None:
    """Rounding the bounds to the model's dtype left a float64 model refusing 0.99 sent
    as an FP32 tensor (0.9900000095…) that the same model accepted as JSON: a float
    input is compared in the narrower of its own type and the model's."""
    wide = dataclasses.replace(
        sig, input=dataclasses.replace(sig.input, dtype=np.dtype(np.float64))
    )
    x = np.zeros((2, N_FEATURES), dtype=np.float32)
    x[0, 0], x[1, 0] = 0.99, 0.01
    out = validate_batch(x, wide, max_rows=2, ranges=_bounded(0.01, 0.99))
    assert out.dtype == np.float64 and out[0, 0] == np.float64(np.float32(0.99))
    x[0, 0] = np.nextafter(np.float32(0.99), np.float32(1))
    with pytest.raises(InvalidInputError) as info:
        validate_batch(x, wide, max_rows=2, ranges=_bounded(0.01, 0.99))
    assert info.value.code == "out_of_range"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["binary-fp32", "json"])
def test_a_value_one_float32_step_past_a_bound_is_refused_however_it_was_sent(
    dtype: type[np.floating], sig: Signature
) -> None:
    ranges = _bounded(0.01, 0.99)
    for value in (
        np.nextafter(np.float32(0.99), np.float32(1)),
        np.nextafter(np.float32(0.01), np.float32(0)),
    ):
        x = np.zeros((1, N_FEATURES), dtype=dtype)
        x[0, 0] = value
        with pytest.raises(InvalidInputError) as info:
            validate_batch(x, sig, max_rows=1, ranges=ranges)
        assert info.value.code == "out_of_range"
        assert "feature 0 must be in [0.01, 0.99]" in info.value.message


def test_ranges_of_wrong_length_are_a_programming_error(sig: Signature) -> None:
    with pytest.raises(ValueError, match="one entry per feature"):
        validate_batch(row(), sig, max_rows=1, ranges=[FeatureRange(0.0, 1.0)])


def test_feature_range_refuses_inverted_bounds() -> None:
    with pytest.raises(ValueError, match="`low` must be <= `high`"):
        FeatureRange(2.0, 1.0)


def test_checks_run_in_documented_order(sig: Signature) -> None:
    # too many rows *and* NaN: the batch size is reported first
    x = np.full((5, N_FEATURES), np.nan)
    assert codes_of(x, sig, max_rows=2) == "batch_too_large"
    # wrong shape *and* bool: the dtype is reported first
    assert codes_of(np.ones((1, 2), dtype=bool), sig) == "dtype_mismatch"


def test_returns_c_contiguous_array_of_model_dtype(sig: Signature) -> None:
    x = np.asfortranarray(np.arange(2 * N_FEATURES, dtype=np.float64).reshape(2, N_FEATURES))
    out = validate_batch(x, sig, max_rows=10)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, x.astype(np.float32))


def test_integer_input_is_cast_to_float32(sig: Signature) -> None:
    out = validate_batch(np.ones((2, N_FEATURES), dtype=np.int64), sig, max_rows=10)
    assert out.dtype == np.float32


def test_valid_float32_input_is_returned_without_copy(sig: Signature) -> None:
    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    assert validate_batch(x, sig, max_rows=1) is x


def test_a_float64_model_refuses_values_float32_cannot_hold() -> None:
    """Rows are recorded, and read by the other versions, as float32: 1e39 was taken by a
    float64 model and recorded (and handed to a float32 challenger) as inf."""
    sig = Signature(
        TensorSpec("X", np.dtype(np.float64), (None, 2)),
        (TensorSpec("y", np.dtype(np.float64), (None, 1)),),
        "y",
    )
    with pytest.raises(InvalidInputError) as info:
        validate_batch(np.array([[0.0, 1.0], [2.0, -1e39]]), sig, max_rows=2)
    assert info.value.code == "out_of_range"
    message = info.value.message
    assert "'X'" in message and "-1e+39" in message and "row 1, column 1" in message
    assert "float32" in message and "3.40282e+38" in message
    limit = float(np.finfo(np.float32).max)
    out = validate_batch(np.array([[limit, -limit]]), sig, max_rows=1)
    assert out.dtype == np.float64 and out[0, 0] == limit


def test_integer_model_input_refuses_fractions_and_overflow() -> None:
    sig = Signature(
        TensorSpec("X", np.dtype(np.int32), (None, 2)),
        (TensorSpec("y", np.dtype(np.float32), (None, 1)),),
        "y",
    )
    assert codes_of(np.array([[1.0, 2.5]]), sig) == "dtype_mismatch"
    assert codes_of(np.array([[1, 2**40]]), sig) == "out_of_range"
    assert validate_batch(np.array([[1.0, 2.0]]), sig, max_rows=1).dtype == np.int32


@pytest.mark.parametrize(
    ("dtype", "first_outside", "last_inside", "x_dtype"),
    [
        pytest.param(np.int64, 2.0**63, 2.0**63 - 1024, np.float64, id="int64"),
        pytest.param(np.uint64, 2.0**64, 2.0**64 - 2048, np.float64, id="uint64"),
        pytest.param(np.int32, 2.0**31, 2.0**31 - 128, np.float32, id="int32-from-fp32"),
        pytest.param(np.uint32, 2.0**32, 2.0**32 - 256, np.float32, id="uint32-from-fp32"),
    ],
)
def test_an_integer_input_refuses_the_float_that_rounds_up_to_its_max_plus_one(
    dtype: type, first_outside: float, last_inside: float, x_dtype: type
) -> None:
    # iinfo.max (2**63 - 1 …) rounds up to 2**63 as a float: that value passed and wrapped
    sig = Signature(
        TensorSpec("X", np.dtype(dtype), (None, 2)),
        (TensorSpec("y", np.dtype(np.float32), (None, 1)),),
        "y",
    )
    assert codes_of(np.array([[0.0, first_outside]], dtype=x_dtype), sig) == "out_of_range"
    out = validate_batch(np.array([[0.0, last_inside]], dtype=x_dtype), sig, max_rows=1)
    assert int(out[0, 1]) == int(last_inside)
    low = float(np.iinfo(dtype).min)
    assert int(validate_batch(np.array([[low, 0.0]]), sig, max_rows=1)[0, 0]) == int(low)
    assert codes_of(np.array([[2 * low - 1, 0.0]]), sig) == "out_of_range"


def test_an_int64_model_never_receives_a_wrapped_value(data: Data) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import Int64TensorType
    from sklearn.linear_model import LogisticRegression

    counts = np.rint(np.abs(data.x_train) * 10).astype(np.int64)
    estimator = LogisticRegression(random_state=0).fit(counts, data.y_class)
    proto = convert_sklearn(
        estimator,
        initial_types=[("input", Int64TensorType([None, N_FEATURES]))],
        options={id(estimator): {"zipmap": False}},
    )
    model = OnnxModel.from_bytes(proto.SerializeToString())
    x = np.zeros((1, N_FEATURES))
    x[0, 0] = 2.0**63  # cast, it would arrive as -2**63
    with pytest.raises(InvalidInputError) as info:
        validate_batch(x, model.signature, max_rows=1)
    assert info.value.code == "out_of_range" and "int64" in info.value.message
    x[0, 0] = 2.0**62
    valid = validate_batch(x, model.signature, max_rows=1)
    assert valid[0, 0] == 2**62 and model.run(valid)["probabilities"].shape == (1, 2)


def test_nan_never_reaches_the_session(boosting: Exported, data: Data) -> None:
    """onnxruntime would route NaN down one branch and return a plausible answer."""
    x = data.x_holdout[:1].astype(np.float32)
    x[0, 0] = np.nan
    plausible = boosting.model.primary(boosting.model.run(x))
    assert np.isfinite(plausible).all()  # the hazard: no sign anything was wrong

    def serve(batch: np.ndarray) -> np.ndarray:
        model = boosting.model
        return model.primary(model.run(validate_batch(batch, model.signature, max_rows=10)))

    with pytest.raises(InvalidInputError) as info:
        serve(x)
    assert info.value.code == "non_finite"
    assert np.isfinite(serve(data.x_holdout[:3])).all()


def test_check_output_passes_finite_float32_values_whose_sum_overflows() -> None:
    check_output(np.array([[3e38, 3e38]], dtype=np.float32), "probabilities")
    with pytest.raises(ShadowError) as info:
        check_output(np.array([[3e38, np.nan]], dtype=np.float32), "probabilities")
    assert info.value.code == "non_finite_output"
    with pytest.raises(ShadowError) as info:
        check_output(np.array([[1.0, 1e39]], dtype=np.float64), "probabilities")
    assert info.value.code == "output_out_of_range"
