"""A mirror record may say when the serving stack scored it (``scored_at``, an RFC 3339
time with its offset): it is stored as the request's time, so drift and decay windows,
label delay and retention read a backfill as the traffic of its day. Every record was
stamped with the time it was posted: traffic scored three days ago read as today's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.tunewatch.api.mirror_records import mirror_record, post_records
from tests.tunewatch.conftest import MODEL, Running, serving
from tunewatch._example import ExampleModel


@pytest.fixture
def backfilling(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    with serving(tmp_path, trained, extra={"recording": {"retention_days": 2}}) as running:
        yield running


def test_a_record_scored_earlier_is_stored_at_its_scoring_time(backfilling: Running) -> None:
    day_ago = datetime.now(UTC) - timedelta(days=1)
    east = day_ago.astimezone(timezone(timedelta(hours=2))).isoformat()  # +02:00
    zulu = (day_ago + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    r = post_records(
        backfilling,
        mirror_record("b-offset", scored_at=east),
        mirror_record("b-zulu", scored_at=zulu),
        mirror_record("b-now"),
    )
    assert r.json() == {"accepted": 3, "duplicates": [], "conflicts": []}, r.text
    store = backfilling.daemon.store
    stored = store.get_request(MODEL, "b-offset")
    assert stored is not None and stored.received_at == day_ago
    [answer] = store.get_outputs(MODEL, "b-offset")
    assert answer.role == "external" and answer.created_at == day_ago
    zulu_stored = store.get_request(MODEL, "b-zulu")
    assert zulu_stored is not None and zulu_stored.received_at == day_ago + timedelta(hours=1)
    now_stored = store.get_request(MODEL, "b-now")
    assert now_stored is not None and now_stored.received_at > day_ago + timedelta(hours=23)


@pytest.mark.parametrize(
    ("scored_at", "rule"),
    [
        pytest.param(
            lambda now: (now + timedelta(minutes=10)).isoformat(), "in the future", id="future"
        ),
        pytest.param(
            lambda now: (now - timedelta(days=3)).isoformat(), "retention", id="past_retention"
        ),
        pytest.param(lambda now: "2024-01-01T00:00:00", "RFC 3339", id="no_offset"),
        pytest.param(lambda now: "2024-01-01 00:00:00Z", "RFC 3339", id="space_for_t"),
        pytest.param(lambda now: now.timestamp(), "RFC 3339", id="epoch_seconds"),
        pytest.param(lambda now: "2024-02-30T00:00:00Z", "RFC 3339", id="no_such_day"),
        # read as 6 h 39 min: stored 39 minutes from the time the stack meant
        pytest.param(
            lambda now: (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S+05:99"),
            "RFC 3339",
            id="offset_minute_99",
        ),
        pytest.param(
            lambda now: (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S-08:60"),
            "RFC 3339",
            id="offset_minute_60",
        ),
    ],
)
def test_a_scoring_time_out_of_bounds_refuses_the_batch_naming_its_record(
    backfilling: Running, scored_at: object, rule: str
) -> None:
    value = scored_at(datetime.now(UTC))  # type: ignore[operator]
    r = post_records(backfilling, mirror_record("ok"), mirror_record("bad", scored_at=value))
    assert r.status_code == 400 and r.json()["code"] == "invalid_request", r.text
    error = r.json()["error"]
    assert error.startswith("records[1].scored_at "), error
    assert rule in error, error
    assert backfilling.daemon.store.get_request(MODEL, "ok") is None


def test_the_mirror_schema_documents_scored_at(backfilling: Running) -> None:
    spec = httpx.get(f"{backfilling.url}/openapi.json", timeout=60).json()
    body = spec["paths"]["/v1/models/{model}/records"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    field = schema["properties"]["records"]["items"]["properties"]["scored_at"]
    assert field["type"] == "string" and field["format"] == "date-time"
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"records": [mirror_record("s", scored_at="2024-01-01T00:00:00Z")]})
    assert validator.is_valid(
        {"records": [mirror_record("s", scored_at="2024-01-01T01:00:00+01:00")]}
    )
    assert not validator.is_valid(
        {"records": [mirror_record("s", scored_at="2024-01-01T00:00:00")]}
    )
    assert not validator.is_valid({"records": [mirror_record("s", scored_at=1_700_000_000)]})
    for offset in ("+05:99", "+24:00"):  # RFC 3339's offsets: hours 00-23, minutes 00-59
        record = mirror_record("s", scored_at=f"2024-01-01T00:00:00{offset}")
        assert not validator.is_valid({"records": [record]}), offset
    assert validator.is_valid(
        {"records": [mirror_record("s", scored_at="2024-01-01T00:00:00-23:59")]}
    )
