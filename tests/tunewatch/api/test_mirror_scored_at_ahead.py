"""A ``scored_at`` up to ``MAX_CLOCK_SKEW_S`` past this daemon's clock is taken (the
stack's clock may run ahead) but stored as the time the record was received: stored as
sent, a request lay in the future, its label's delay was negative and a window of its
traffic ended before it started."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.tunewatch.api.mirror_records import mirror_record, post_records
from tests.tunewatch.conftest import MODEL, Running, serving
from tunewatch._example import ExampleModel


@pytest.fixture
def mirroring(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    with serving(tmp_path, trained) as running:
        yield running


def test_a_record_scored_ahead_of_this_clock_is_stored_when_it_was_received(
    mirroring: Running,
) -> None:
    sent = datetime.now(UTC)
    ahead = (sent + timedelta(minutes=4)).isoformat()
    r = post_records(mirroring, mirror_record("ahead", scored_at=ahead))
    returned = datetime.now(UTC)
    assert r.json() == {"accepted": 1, "duplicates": [], "conflicts": []}, r.text
    store = mirroring.daemon.store
    stored = store.get_request(MODEL, "ahead")
    assert stored is not None and sent <= stored.received_at <= returned
    [answer] = store.get_outputs(MODEL, "ahead")
    assert answer.created_at == stored.received_at
