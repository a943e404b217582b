from __future__ import annotations

import pytest

import tunewatch.dashboard as dashboard
from tunewatch.dashboard import buckets, downsample, downsample_indices


def test_all_lists_exactly_the_public_names() -> None:
    public = {n for n in vars(dashboard) if not n.startswith("_") and n != "annotations"}
    assert set(dashboard.__all__) == public
    assert sorted(dashboard.__all__) == dashboard.__all__


def test_short_series_are_returned_whole() -> None:
    assert downsample_indices(5, 400) == [0, 1, 2, 3, 4]
    assert downsample(list("abc"), 400) == ["a", "b", "c"]


def test_a_year_of_hourly_points_becomes_at_most_max_points_with_both_ends() -> None:
    picked = downsample_indices(24 * 365, 400)
    assert len(picked) <= 400
    assert picked[0] == 0 and picked[-1] == 24 * 365 - 1
    assert picked == sorted(set(picked))


def test_kept_indices_survive_downsampling() -> None:
    picked = downsample_indices(10_000, 50, keep=[4321])
    assert 4321 in picked
    assert len(picked) <= 51


def test_out_of_range_keep_is_ignored() -> None:
    assert downsample_indices(3, 400, keep=[7, -1]) == [0, 1, 2]


def test_buckets_cover_every_index_once_in_order() -> None:
    runs = buckets(8760, 400)
    assert len(runs) == 400
    assert [i for r in runs for i in r] == list(range(8760))


def test_max_points_below_two_is_refused_with_the_value() -> None:
    with pytest.raises(ValueError, match="`max_points` must be at least 2, got 1"):
        downsample_indices(10, 1)
