"""A caller may build only the rows a detector tests of a window (``sample_rows``) and
check them as that window's sample (``n_current``): the verdict is the one the whole
window gets."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.drift import DriftDetector, DriftError, ReferenceProfile, sample_rows
from tests.monitor._streams import COLUMN_TYPES, window


def _detector() -> DriftDetector:
    reference = window(3000, rng=np.random.default_rng(0))
    profile = ReferenceProfile.build(reference, column_types=COLUMN_TYPES)  # type: ignore[arg-type]
    return DriftDetector(profile, sample_size=500, seed=4)


def test_the_rows_built_alone_give_the_whole_window_s_verdict() -> None:
    detector = _detector()
    current = window(1800, rng=np.random.default_rng(1), changed=True)
    rows = detector.sample_rows(len(current))
    assert rows is not None and np.array_equal(rows, sample_rows(1800, 500, seed=4))
    assert detector.sample(current).index.tolist() == rows.tolist()
    alone = detector.check(current.iloc[rows], n_current=len(current))
    whole = detector.check(current)
    assert alone == whole and alone.n_current == 1800 and alone.dataset_drift


def test_a_window_within_the_sample_size_is_tested_whole() -> None:
    assert sample_rows(500, 500, seed=4) is None and sample_rows(10, None, seed=4) is None


def test_rows_that_are_not_the_sample_are_refused() -> None:
    detector = _detector()
    current = window(400, rng=np.random.default_rng(1))
    with pytest.raises(
        DriftError,
        match="must hold the 500 rows sampled of a window of n_current=1800 rows, got 400",
    ):
        detector.check(current, n_current=1800)
