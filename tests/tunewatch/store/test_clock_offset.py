"""This process's clock against the database's: read once when a process opens the store,
and a warning when they are apart (a comparison reads from a version's registration by
the registering host's clock, less an hour, against requests stamped by a replica's)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from tunewatch._open_store import CLOCK_WARNING, warn_on_clock_offset
from tunewatch.store import Store


def test_the_database_s_clock_is_this_host_s_within_a_second(store: Store) -> None:
    assert abs(store.clock_offset()) < timedelta(seconds=1)


@pytest.mark.parametrize(
    "skew", [timedelta(hours=2), -timedelta(minutes=6)], ids=["ahead", "behind"]
)
def test_a_host_whose_clock_is_off_the_database_s_is_warned_about(
    store: Store, caplog: pytest.LogCaptureFixture, skew: timedelta
) -> None:
    with caplog.at_level(logging.WARNING, logger="tunewatch._open_store"):
        offset = warn_on_clock_offset(store, now=lambda: datetime.now(UTC) + skew)
    assert abs(offset + skew) < timedelta(seconds=1)
    [record] = caplog.records
    side = "ahead of" if skew > timedelta(0) else "behind"
    assert f"s {side} the database's" in record.getMessage()


def test_a_host_within_the_limit_is_not_warned_about(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    skew = CLOCK_WARNING - timedelta(seconds=30)
    with caplog.at_level(logging.WARNING, logger="tunewatch._open_store"):
        warn_on_clock_offset(store, now=lambda: datetime.now(UTC) + skew)
    assert caplog.records == []
