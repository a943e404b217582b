from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from monitor.drift import (
    FORMAT_VERSION,
    ColumnDrift,
    ColumnDriftConfig,
    DriftDetector,
    DriftError,
    ProfileFormatError,
    ReferenceProfile,
)
from monitor.drift._profile import category_key
from tests.monitor._streams import COLUMN_TYPES, window


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    frame = window(3000, rng=np.random.default_rng(0))
    frame.loc[::50, "income"] = np.nan
    return ReferenceProfile.build(frame, column_types=COLUMN_TYPES, max_sample=1000)  # type: ignore[arg-type]


def test_profile_round_trips_through_bytes_and_checks_identically(
    profile: ReferenceProfile,
) -> None:
    loaded = ReferenceProfile.from_bytes(profile.to_bytes())
    assert loaded.column_types == profile.column_types
    assert loaded.to_dict() == profile.to_dict()
    current = window(800, rng=np.random.default_rng(1), changed=True)
    assert DriftDetector(loaded).check(current) == DriftDetector(profile).check(current)


def test_profile_dict_is_json_and_keeps_the_sketch_bounded(profile: ReferenceProfile) -> None:
    data = json.loads(json.dumps(profile.to_dict()))
    assert data["format_version"] == FORMAT_VERSION
    income = profile.columns["income"]
    assert income.n == 3000 - 60 and income.n_missing == 60
    assert income.sample.size == 1000  # type: ignore[union-attr]
    assert np.all(np.diff(income.sample) >= 0)  # type: ignore[union-attr]


def test_newer_format_version_is_refused_with_a_reason(profile: ReferenceProfile) -> None:
    data = profile.to_dict()
    data["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ProfileFormatError, match="newer than") as info:
        ReferenceProfile.from_dict(data)
    assert (info.value.found, info.value.supported) == (FORMAT_VERSION + 1, FORMAT_VERSION)


@pytest.mark.parametrize(
    "payload",
    [b"not json", b'{"columns": {}}', b'{"format_version": 1, "columns": {"x": {"kind": "num"}}}'],
    ids=["not-json", "no-version", "missing-fields"],
)
def test_malformed_payloads_raise_profile_format_error(payload: bytes) -> None:
    with pytest.raises(ProfileFormatError):
        ReferenceProfile.from_bytes(payload)


def test_column_types_are_inferred_from_dtypes() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "c": [True, False], "d": [1, 2]})
    assert ReferenceProfile.build(frame).column_types == {
        "a": "num",
        "b": "cat",
        "c": "cat",
        "d": "num",
    }


def test_non_text_column_names_are_profiled_and_checked_by_their_text() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({0: rng.normal(size=2000), 1: rng.integers(0, 3, 2000)})
    profile = ReferenceProfile.build(reference, column_types={"0": "num", "1": "cat"})
    assert ReferenceProfile.build(reference).column_types == {"0": "num", "1": "num"}
    current = pd.DataFrame({0: rng.normal(size=500) + 1.0, 1: rng.integers(0, 3, 500)})
    result = DriftDetector(profile).check(current)
    assert result.column("0").status == "drift" and result.column("0").n_cur == 500
    assert result.column("1").status == "ok" and result.column("1").n_cur == 500


def test_columns_whose_names_read_the_same_are_refused_or_insufficient() -> None:
    rng = np.random.default_rng(1)
    clash = pd.DataFrame(rng.normal(size=(100, 2)), columns=pd.Index([1, "1"], dtype=object))
    with pytest.raises(DriftError, match="2 columns named '1'"):
        ReferenceProfile.build(clash)
    profile = ReferenceProfile.build(pd.DataFrame({"1": rng.normal(size=100)}))
    verdict = DriftDetector(profile).check(clash).column("1")
    assert verdict.status == "insufficient_data"
    assert verdict.reason == "the current window has 2 columns named '1'"


def test_integer_categories_match_their_float_form_once_a_value_is_missing() -> None:
    # pandas stores a column of integer codes as floats once it holds a missing value
    rng = np.random.default_rng(2)
    reference = pd.DataFrame({"code": rng.integers(0, 4, 3000)})
    profile = ReferenceProfile.build(reference, column_types={"code": "cat"})
    current = reference.iloc[:600].astype(np.float64)  # the reference's own rows
    current.loc[0, "code"] = np.nan
    verdict = DriftDetector(profile).check(current).column("code")
    assert (verdict.status, verdict.n_cur) == ("ok", 599)
    assert [k for k, _ in profile.columns["code"].counts] == ["0", "1", "2", "3"]  # type: ignore[union-attr]


def test_a_category_reads_alike_at_either_float_precision() -> None:
    assert category_key(np.float32(0.1)) == category_key(np.float64(0.1)) == category_key(0.1)
    assert category_key(np.float32(2.0)) == category_key(2) == category_key(np.int8(2)) == "2"
    assert (category_key(True), category_key("1.0"), category_key(1e20)) == ("True", "1.0", "1e+20")


def test_a_format_1_profile_s_float_categories_read_as_numbers() -> None:
    # format 1 kept a float category as its text, "1.0": it must still match 1.0 and 1
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"code": rng.integers(0, 4, 3000).astype(np.float64)})
    data = ReferenceProfile.build(reference, column_types={"code": "cat"}).to_dict()
    data["format_version"] = 1
    data["columns"]["code"]["counts"] = [
        [f"{k}.0", v] for k, v in data["columns"]["code"]["counts"]
    ]
    loaded = ReferenceProfile.from_dict(data)
    assert [k for k, _ in loaded.columns["code"].counts] == ["0", "1", "2", "3"]  # type: ignore[union-attr]
    current = reference.iloc[:600]
    assert DriftDetector(loaded).check(current).column("code").status == "ok"


@pytest.mark.parametrize("scale", [1e160, 1e300])
@pytest.mark.parametrize("method", ["ks", "psi", "wasserstein", "jensenshannon"])
def test_numeric_statistics_do_not_depend_on_the_column_s_scale(method: str, scale: float) -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=3000)
    current = rng.normal(size=500) * 1.5 + 0.5
    config = {"x": ColumnDriftConfig(method=method)}  # type: ignore[arg-type]

    def check(s: float) -> ColumnDrift:
        profile = ReferenceProfile.build(pd.DataFrame({"x": reference * s}))
        return (
            DriftDetector(profile, columns=config)
            .check(pd.DataFrame({"x": current * s}))
            .column("x")
        )

    unit, scaled = check(1.0), check(scale)
    assert unit.status == "drift"
    assert scaled.status == unit.status
    assert scaled.statistic == pytest.approx(unit.statistic, rel=1e-9)


def test_a_column_at_the_float_limits_keeps_finite_decile_edges_and_serialises() -> None:
    """Deciles of a column of -1.7e308 and 1.7e308 were interpolated across a span that
    overflows: the median edge came out -inf and ``to_bytes`` raised JSON's raw
    "Out of range float values" ValueError."""
    values = np.r_[np.full(100, -1.7e308), np.full(100, 1.7e308)]
    profile = ReferenceProfile.build(pd.DataFrame({"x": values}))
    summary = profile.columns["x"]
    assert summary.psi_edges == (-1.7e308, 0.0, 1.7e308)  # type: ignore[union-attr]
    assert summary.psi_shares == (0.0, 0.5, 0.0, 0.5)  # type: ignore[union-attr]
    loaded = ReferenceProfile.from_bytes(profile.to_bytes())
    assert loaded.to_dict() == profile.to_dict()
    current = pd.DataFrame({"x": values[::-1]})
    psi = DriftDetector(loaded, columns={"x": ColumnDriftConfig(method="psi")}).check(current)
    assert psi.column("x").status == "ok" and psi.column("x").statistic == 0.0


def test_decile_edges_at_the_float_limits_scale_exactly_with_the_column() -> None:
    """Interpolated in units of a power of two, the edges of a column near the float
    limits are those of the same column scaled down by 2**1000, scaled back up: exact,
    and on the reference values where a decile falls on one."""
    values = np.r_[np.full(60, -1.5e308), np.full(40, 1e308), np.full(100, 1.6e308)]
    edges = ReferenceProfile.build(pd.DataFrame({"x": values})).columns["x"].psi_edges  # type: ignore[union-attr]
    small = ReferenceProfile.build(pd.DataFrame({"x": np.ldexp(values, -1000)})).columns["x"]
    assert edges == tuple(float(e) for e in np.ldexp(small.psi_edges, 1000))  # type: ignore[union-attr]
    # deciles at rows 19.9, 39.8 | 59.7 (across the overflowing span) | 79.6 | 99.5 | 119.4..
    assert len(edges) == 5 and (edges[0], edges[2], edges[4]) == (-1.5e308, 1e308, 1.6e308)
    # -1.5e308 + 0.7 * (1e308 + 1.5e308), and 1e308 + 0.5 * (1.6e308 - 1e308)
    assert edges[1:4:2] == pytest.approx((2.5e307, 1.3e308))


def test_a_payload_whose_columns_are_not_an_object_is_a_profile_format_error() -> None:
    payload = b'{"format_version": 2, "columns": [], "n_rows": 1, "max_sample": 2, "seed": 0}'
    with pytest.raises(ProfileFormatError, match="`columns` must be an object") as info:
        ReferenceProfile.from_bytes(payload)
    assert (info.value.found, info.value.supported) == (2, FORMAT_VERSION)
