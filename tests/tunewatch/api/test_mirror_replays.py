"""Mirror records whose id is already recorded: a replay is a duplicate, other rows a
conflict, on both store backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
OTHER = [0.0, 0.5, -0.5, 1.0, 0.25, -1.0, 2.0, 0.125]


@pytest.fixture
def mirroring(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Running]:
    daemon, tokens = make_daemon(
        tmp_path, trained, store_url=store_url, extra={"scheduler": {"enabled": False}}
    )
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


def _post(running: Running, *records: dict[str, object]) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v1/models/{MODEL}/records",
        json={"records": list(records)},
        headers=running.auth("scorer"),
    )


def _record(rid: str, inputs: list[float], outputs: list[float], **extra: object) -> dict:  # type: ignore[type-arg]
    return {"id": rid, "inputs": [inputs], "outputs": [outputs], **extra}


def test_a_reused_mirror_id_with_other_rows_is_a_conflict_and_a_replay_a_duplicate(
    mirroring: Running,
) -> None:
    """A record reusing a recorded id with other inputs or outputs answered as a replay
    (`duplicates`) and was dropped: a serving stack whose id counter restarted lost its
    new traffic behind a 200. A replay is compared as stored (float32), so the same
    numbers spelt as float32 rounds them are still a duplicate."""
    first = _post(
        mirroring,
        _record("m-same", ROW, [0.3, 0.7]),
        _record("m-inputs", ROW, [0.3, 0.7]),
        _record("m-outputs", ROW, [0.3, 0.7]),
        _record("m-version", ROW, [0.3, 0.7]),
    )
    assert first.json() == {"accepted": 4, "duplicates": [], "conflicts": []}, first.text
    as_float32 = [float(v) for v in np.float32(ROW)]
    again = _post(
        mirroring,
        _record("m-same", as_float32, [float(np.float32(0.3)), 0.7]),
        _record("m-inputs", OTHER, [0.3, 0.7]),
        _record("m-outputs", ROW, [0.9, 0.1]),
        _record("m-version", ROW, [0.3, 0.7], version=2),
        _record("m-new", OTHER, [0.9, 0.1]),
    )
    assert again.status_code == 200, again.text
    assert again.json() == {
        "accepted": 1,
        "duplicates": ["m-same"],
        "conflicts": ["m-inputs", "m-outputs", "m-version"],
    }
    store = mirroring.daemon.store
    for rid in ("m-inputs", "m-outputs", "m-version"):
        stored = store.get_request(MODEL, rid)
        assert stored is not None
        np.testing.assert_array_equal(np.frombuffer(stored.inputs, np.float32), np.float32(ROW))
        external = [o for o in store.get_outputs(MODEL, rid) if o.role == "external"]
        assert [o.version for o in external] == [1]
        np.testing.assert_array_equal(
            np.frombuffer(external[0].values, np.float32), np.float32([0.3, 0.7])
        )


def test_a_mirror_record_reusing_an_inferred_request_id_is_a_conflict(
    mirroring: Running,
) -> None:
    """The id of a request scored here is not a replay of a mirror record, even with the
    same rows and the champion's own answer."""
    body = {
        "id": "inferred",
        "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": ROW}],
    }
    scored = httpx.post(
        f"{mirroring.url}/v2/models/{MODEL}/infer", json=body, headers=mirroring.auth("scorer")
    )
    assert scored.status_code == 200, scored.text
    probabilities = next(o for o in scored.json()["outputs"] if o["name"] == "probabilities")
    r = _post(mirroring, _record("inferred", ROW, probabilities["data"]))
    assert r.json() == {"accepted": 0, "duplicates": [], "conflicts": ["inferred"]}, r.text
    stored = mirroring.daemon.store.get_request(MODEL, "inferred")
    assert stored is not None and stored.source == "infer"


def test_a_replay_naming_no_version_is_a_duplicate_after_a_promotion(mirroring: Running) -> None:
    """A record naming no version is answered by the champion of the day: a batch
    re-sent after a promotion (a client timeout) was compared with the new champion and
    reported, and logged, as conflicts though it repeated the stored records exactly. Only
    a record that names a version is held to it."""
    sent = [_record("p-same", ROW, [0.3, 0.7]), _record("p-named", ROW, [0.3, 0.7])]
    assert _post(mirroring, *sent).json() == {"accepted": 2, "duplicates": [], "conflicts": []}
    promoted = httpx.post(
        f"{mirroring.url}/v1/models/{MODEL}/versions/2/promote",
        json={"reason": "it won"},
        headers=mirroring.auth("operator"),
    )
    assert promoted.status_code == 200 and promoted.json()["status"] == "promoted", promoted.text
    again = _post(
        mirroring,
        _record("p-same", ROW, [0.3, 0.7]),
        _record("p-named", ROW, [0.3, 0.7], version=2),
    )
    assert again.json() == {"accepted": 0, "duplicates": ["p-same"], "conflicts": ["p-named"]}
    named_as_stored = _post(mirroring, _record("p-named", ROW, [0.3, 0.7], version=1))
    assert named_as_stored.json() == {"accepted": 0, "duplicates": ["p-named"], "conflicts": []}


def test_a_replayed_batch_is_read_back_in_chunks_not_per_record(mirroring: Running) -> None:
    """Each re-sent record cost two reads, one after another: a re-sent batch of the
    10,000 records a request may carry kept the request busy for seconds. The stored
    records are read in chunks of ids; counted here are the statements that read them."""
    n = 600  # past one chunk of ids
    records = [_record(f"c{i}", ROW, [0.3, 0.7]) for i in range(n)]
    first = _post(mirroring, *records)
    assert first.json() == {"accepted": n, "duplicates": [], "conflicts": []}
    reads: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and (
            "FROM requests" in statement or "FROM outputs" in statement
        ):
            reads.append(statement)

    engine = mirroring.daemon.store.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        again = _post(mirroring, *records[:-1], _record(records[-1]["id"], ROW, [0.9, 0.1]))
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert again.status_code == 200, again.text
    assert again.json() == {
        "accepted": 0,
        "duplicates": [r["id"] for r in records[:-1]],
        "conflicts": [f"c{n - 1}"],
    }
    assert 0 < len(reads) <= 4, f"{len(reads)} reads of the stored records: {reads[:1]}"


def _outcomes(running: Running) -> dict[str, float]:
    registry = running.daemon.runtime.metrics.registry
    return {
        outcome: registry.get_sample_value(
            "tunewatch_mirror_records_total", {"model": MODEL, "outcome": outcome}
        )
        or 0.0
        for outcome in ("accepted", "duplicate", "conflict")
    }


def test_mirror_outcomes_are_counted_and_conflicts_logged_at_most_once_a_minute(
    mirroring: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """A serving stack whose id counter restarted had a warning logged per call, and
    nothing counted the records refused, nor those accepted."""
    first = _post(
        mirroring, _record("c-same", ROW, [0.3, 0.7]), _record("c-other", ROW, [0.3, 0.7])
    )
    assert first.json()["accepted"] == 2
    caplog.set_level("WARNING", logger="tunewatch.api._records")
    for i in range(3):
        again = _post(
            mirroring,
            _record("c-same", ROW, [0.3, 0.7]),
            _record("c-other", OTHER, [0.3, 0.7]),
            _record(f"c-new-{i}", ROW, [0.3, 0.7]),
        )
        assert again.json() == {
            "accepted": 1,
            "duplicates": ["c-same"],
            "conflicts": ["c-other"],
        }, again.text
    assert _outcomes(mirroring) == {"accepted": 5.0, "duplicate": 3.0, "conflict": 3.0}
    warnings = [r for r in caplog.records if "reuse a recorded request id" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "'c-other'" in warnings[0].getMessage()
