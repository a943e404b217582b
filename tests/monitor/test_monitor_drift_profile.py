from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from monitor.drift import (
    FORMAT_VERSION,
    DriftDetector,
    ProfileFormatError,
    ReferenceProfile,
)
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
