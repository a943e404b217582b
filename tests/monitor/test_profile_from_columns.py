"""A profile built column by column (:meth:`ReferenceProfile.from_columns`, a float32
matrix's columns read as they are) is the profile of a frame of those columns, and
reading a column never changes it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor import ReferenceProfile
from monitor._errors import DriftError
from monitor.drift import ColumnKind, NumericSummary


def _columns(n: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    x[::7, 1] = np.nan
    x[::11, 2] = np.inf
    predicted = pd.Series(rng.integers(0, 3, n).astype(str), dtype=object)
    return {
        "a": x[:, 0],  # views of a float32 matrix
        "b": x[:, 1],
        "c": x[:, 2],
        "few": rng.integers(0, 4, n),  # discrete: value counts kept
        "flag": rng.random(n) < 0.3,
        "label": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 2, n).astype(float)),
        "__prediction__": predicted.where(rng.random(n) < 0.95, None),
    }


@pytest.mark.parametrize("n", [500, 25_000], ids=["whole_columns", "sampled_columns"])
def test_a_profile_from_columns_is_the_profile_of_their_frame(n: int) -> None:
    columns = _columns(n, seed=3)
    types: dict[str, ColumnKind] = {"a": "num", "b": "num", "c": "num", "few": "num"}
    types |= {"label": "cat", "flag": "cat", "__prediction__": "cat"}
    frame = pd.DataFrame(
        {k: np.asarray(v, dtype=np.float64) if k in "abc" else v for k, v in columns.items()}
    )
    built = ReferenceProfile.build(frame, column_types=types, max_sample=2_000, seed=7)
    from_columns = ReferenceProfile.from_columns(
        columns, column_types=types, max_sample=2_000, seed=7
    )
    assert from_columns.to_bytes() == built.to_bytes()
    assert from_columns.n_rows == n


def test_columns_typed_by_dtype_as_a_frame_s_are() -> None:
    columns = _columns(300, seed=4)
    frame = pd.DataFrame(columns)
    assert (
        ReferenceProfile.from_columns(columns).to_bytes()
        == ReferenceProfile.build(frame).to_bytes()
    )


def test_profiling_a_column_leaves_it_as_it_was() -> None:
    """The summary sorts its own copy in place: a float64 column, which it reads without
    converting, is not sorted under its caller."""
    values = np.random.default_rng(0).normal(size=20_000)
    kept = values.copy()
    profile = ReferenceProfile.from_columns({"v": values}, column_types={"v": "num"})
    np.testing.assert_array_equal(values, kept)
    summary = profile.columns["v"]
    assert isinstance(summary, NumericSummary) and summary.sample.size == 10_000


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(DriftError, match="as long as each other"):
        ReferenceProfile.from_columns({"a": np.zeros(3), "b": np.zeros(4)})


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(np.zeros((3, 2)), id="matrix"),
        pytest.param(np.zeros((3, 1)), id="one_column_matrix"),
        pytest.param([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], id="nested_list"),
    ],
)
def test_a_column_that_is_not_one_dimensional_is_refused(values: object) -> None:
    """A ``(3, 2)`` column was read as 6 values, 3 rows long: ``n_missing == -3``, stored
    in the profile."""
    with pytest.raises(DriftError, match=r"column 'a' must be 1-D .*got shape \(3, [12]\)"):
        ReferenceProfile.from_columns({"a": values, "b": np.zeros(3)})


def test_a_scalar_column_is_refused() -> None:
    with pytest.raises(DriftError, match=r"column 'a' must be 1-D .*got shape \(\)"):
        ReferenceProfile.from_columns({"a": 1.5})
