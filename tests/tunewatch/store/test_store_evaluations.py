"""Leases, evaluation results and windows — on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event

from tunewatch._errors import NotFoundError
from tunewatch.store import (
    LabelItem,
    OutputRecord,
    RequestRecord,
    Store,
    Window,
    _evaluations,
    _windows,
)
from tunewatch.store._schema import labels

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _record(
    rid: str,
    at: datetime,
    x: list[list[float]],
    p: list[list[float]],
    *,
    version: int = 1,
    role: str = "champion",
) -> tuple[RequestRecord, OutputRecord]:
    xs = np.asarray(x, np.float32)
    ps = np.asarray(p, np.float32)
    return (
        RequestRecord(
            model="m",
            request_id=rid,
            received_at=at,
            source="infer",
            n_rows=xs.shape[0],
            n_cols=2,
            inputs=xs.tobytes(),
        ),
        OutputRecord(
            model="m",
            request_id=rid,
            version=version,
            role=role,  # type: ignore[arg-type]
            latency_s=0.001,
            n_rows=ps.shape[0],
            n_cols=ps.shape[1],
            values=ps.tobytes(),
        ),
    )


def test_only_one_holder_gets_the_lease_until_it_expires(store: Store) -> None:
    assert store.acquire_lease("scheduler", "a", ttl_s=30)
    assert not store.acquire_lease("scheduler", "b", ttl_s=30)
    assert store.acquire_lease("scheduler", "a", ttl_s=30)  # renewal
    store.release_lease("scheduler", "a")
    assert store.acquire_lease("scheduler", "b", ttl_s=0.0)
    assert store.acquire_lease("scheduler", "a", ttl_s=30)  # b's lease had expired at once


def test_holders_whose_clocks_disagree_cannot_both_hold_the_lease(
    store: Store, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lease expiry was computed and checked by each holder's own clock: a process whose
    clock ran ahead saw the leader's unexpired lease as expired and took it (two leaders,
    every scheduled job run twice)."""
    other = Store.open(store_url)  # another daemon, on another host
    try:
        monkeypatch.setattr(
            _evaluations, "utcnow", lambda: datetime.now(UTC) - timedelta(minutes=2)
        )
        assert store.acquire_lease("scheduler", "behind", ttl_s=30)
        monkeypatch.setattr(
            _evaluations, "utcnow", lambda: datetime.now(UTC) + timedelta(minutes=2)
        )
        assert not other.acquire_lease("scheduler", "ahead", ttl_s=30)
        monkeypatch.setattr(
            _evaluations, "utcnow", lambda: datetime.now(UTC) - timedelta(minutes=2)
        )
        assert store.acquire_lease("scheduler", "behind", ttl_s=30)  # renewed
        assert not other.acquire_lease("scheduler", "ahead", ttl_s=30)
        store.release_lease("scheduler", "behind")
        assert other.acquire_lease("scheduler", "ahead", ttl_s=30)
        assert not store.acquire_lease("scheduler", "behind", ttl_s=30)
    finally:
        other.close()


def test_concurrent_candidates_elect_exactly_one_leader(store: Store) -> None:
    winners: list[str] = []
    lock = threading.Lock()

    def run(name: str) -> None:
        if store.acquire_lease("scheduler", name, ttl_s=60):
            with lock:
                winners.append(name)

    threads = [threading.Thread(target=run, args=(f"p{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_evaluations_come_back_newest_first_filtered_by_kind(model_store: Store) -> None:
    for i, kind in enumerate(["drift", "decay", "drift"]):
        model_store.add_evaluation(
            model="m",
            version=1,
            kind=kind,
            status="ok",
            window_start=T0 + timedelta(hours=i),
            window_end=T0 + timedelta(hours=i + 1),
            payload={"share": i / 10, "columns": ("a", "b")},
        )
    drift = model_store.list_evaluations("m", kind="drift")
    assert [e.window_end for e in drift] == [T0 + timedelta(hours=3), T0 + timedelta(hours=1)]
    assert drift[0].payload == {"share": 0.2, "columns": ["a", "b"]}
    assert len(model_store.list_evaluations("m", since=T0 + timedelta(hours=2))) == 2


def test_a_policy_decision_is_added_to_its_stored_evaluation(model_store: Store) -> None:
    rows = [
        model_store.add_evaluation(
            model="m",
            version=1,
            kind=kind,
            status="ok",
            window_start=T0,
            window_end=T0 + timedelta(hours=1),
            payload={"alarm": True, "share": 0.5},
        )
        for kind in ("drift", "decay")
    ]
    decision = {"event": "drift_detected", "fired": False, "reason": "cooling down", "streak": 2}
    model_store.record_policy_decisions({rows[0].id: decision, rows[1].id + 1000: decision})
    stored = model_store.get_evaluation("m", rows[0].id)
    assert stored.payload == {"alarm": True, "share": 0.5, "policy": decision}
    assert model_store.get_evaluation("m", rows[1].id).payload == rows[1].payload  # untouched


def test_evaluations_are_filtered_by_version_and_window_end_in_the_database(
    model_store: Store,
) -> None:
    """The filters used to be applied in Python to the newest 10,000 rows, so an older
    version's evaluations, or the report of an older window, vanished after a month."""
    rows = [
        model_store.add_evaluation(
            model="m",
            version=1 if i < 3 else 2,
            kind="drift",
            status="ok",
            window_start=None,
            window_end=T0 + timedelta(hours=i),
            payload={"i": i},
        )
        for i in range(8)
    ]
    v1 = model_store.list_evaluations("m", kind="drift", version=1, limit=2)
    assert [e.payload["i"] for e in v1] == [2, 1]
    at = model_store.list_evaluations("m", since=rows[4].window_end, until=rows[4].window_end)
    assert [e.id for e in at] == [rows[4].id]
    assert model_store.get_evaluation("m", rows[0].id) == rows[0]
    with pytest.raises(NotFoundError, match="evaluation"):
        model_store.get_evaluation("m", rows[-1].id + 1)
    with pytest.raises(NotFoundError):
        model_store.get_evaluation("other", rows[0].id)  # another model's id is not found


def test_window_expands_batches_and_joins_outputs_and_labels(model_store: Store) -> None:
    r1, o1 = _record("r1", T0, [[1, 2], [3, 4]], [[0.1, 0.9], [0.2, 0.8]])
    r2, o2 = _record("r2", T0 + timedelta(minutes=1), [[5, 6]], [[0.7, 0.3]], version=2)
    r3, _ = _record("r3", T0 + timedelta(minutes=2), [[7, 8]], [[0.5, 0.5]])
    shadow = OutputRecord(
        model="m",
        request_id="r2",
        version=3,
        role="challenger",
        latency_s=None,
        n_rows=1,
        n_cols=2,
        values=np.float32([[0.0, 1.0]]).tobytes(),
    )
    model_store.write_records([r1, r2, r3], [o1, o2, shadow])
    model_store.add_labels(
        "m", [LabelItem(request_id="r1", value=[1.0, 0.0]), LabelItem(request_id="r2", value=1.0)]
    )
    w = model_store.window("m", n_features=2)
    assert w.request_ids == ("r1", "r1", "r2", "r3")
    np.testing.assert_array_equal(w.features, np.float32([[1, 2], [3, 4], [5, 6], [7, 8]]))
    np.testing.assert_array_equal(w.versions, [1, 1, 2, -1])  # challenger outputs excluded
    np.testing.assert_allclose(w.outputs[:3], [[0.1, 0.9], [0.2, 0.8], [0.7, 0.3]], rtol=1e-6)
    assert np.isnan(w.outputs[3]).all()
    np.testing.assert_array_equal(w.labels[:3], [1.0, 0.0, 1.0])
    assert np.isnan(w.labels[3]) and w.labelled().sum() == 3
    assert w.received_at[2] == (T0 + timedelta(minutes=1)).timestamp()
    last = model_store.window("m", n_features=2, last_n=2)
    assert last.request_ids == ("r2", "r3")
    ranged = model_store.window(
        "m", n_features=2, start=T0 + timedelta(seconds=30), end=T0 + timedelta(minutes=2)
    )
    assert ranged.request_ids == ("r2",)


def test_a_window_without_features_reads_no_input_blob(model_store: Store) -> None:
    """Decay needs outputs, labels and times over 30 days, not the inputs: it read every
    request's input blob of the horizon at each evaluation."""
    r1, o1 = _record("r1", T0, [[1, 2], [3, 4]], [[0.1, 0.9], [0.2, 0.8]])
    r2, o2 = _record("r2", T0 + timedelta(minutes=1), [[5, 6]], [[0.7, 0.3]])
    model_store.write_records([r1, r2], [o1, o2])
    model_store.add_labels("m", [LabelItem(request_id="r2", value=1.0)])
    statements: list[str] = []

    def spy(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(model_store.engine, "before_cursor_execute", spy)
    try:
        lean = model_store.window("m", n_features=2, with_features=False)
    finally:
        event.remove(model_store.engine, "before_cursor_execute", spy)
    full = model_store.window("m", n_features=2)
    assert lean.features.shape == (3, 0) and lean.n_rows == 3
    for name in ("received_at", "outputs", "versions", "labels", "label_received_at"):
        np.testing.assert_array_equal(getattr(lean, name), getattr(full, name))
    assert lean.request_ids == full.request_ids
    [read] = [s for s in statements if "FROM requests" in s]
    assert "requests.inputs" not in read


def test_empty_window_has_the_right_shapes(model_store: Store) -> None:
    w = model_store.window("m", n_features=2)
    assert w.n_rows == 0 and w.features.shape == (0, 2) and w.labels.shape == (0,)


def test_the_newest_n_of_a_window_counts_rows_not_requests(model_store: Store) -> None:
    """`window_rows` limited requests: with batch 256, 5,000 "rows" read 1.28 M."""
    records = [
        _record("q1", T0, [[1, 1]], [[0.5, 0.5]]),
        _record("q2", T0 + timedelta(minutes=1), [[2, 2]] * 3, [[0.5, 0.5]] * 3),
        _record("q3", T0 + timedelta(minutes=2), [[3, 3]] * 2, [[0.5, 0.5]] * 2),
    ]
    model_store.write_records([r for r, _ in records], [o for _, o in records])
    assert model_store.window("m", n_features=2, last_n=2).request_ids == ("q3", "q3")
    assert set(model_store.window("m", n_features=2, last_n=4).request_ids) == {"q2", "q3"}
    assert model_store.window("m", n_features=2, last_n=100).n_rows == 6


def test_the_newest_n_before_an_end_are_the_newest_received_before_it(
    model_store: Store,
) -> None:
    """Label drift reads the newest `window_rows` requests received a maturity before the
    run: `last_n` counts back from `end`, not from the newest request."""
    records = [
        _record(f"q{i}", T0 + timedelta(minutes=i), [[i, i]], [[0.5, 0.5]]) for i in range(5)
    ]
    model_store.write_records([r for r, _ in records], [o for _, o in records])
    model_store.add_labels("m", [LabelItem(request_id="q1", value=1.0)])
    before = model_store.window(
        "m", n_features=2, end=T0 + timedelta(minutes=3), last_n=2, with_features=False
    )
    assert before.request_ids == ("q1", "q2")
    np.testing.assert_array_equal(before.labels[:1], [1.0])
    assert np.isnan(before.labels[1]) and before.features.shape == (2, 0)


NAN = float("nan")
LABELLED = T0 + timedelta(minutes=10)  # when the labels of a0 and a1 arrived
LATER = T0 + timedelta(minutes=20)  # and the others'

# The rows a window of the log `_mixed_log` writes reads, in order: request id, minutes
# after T0, inputs, output (None: NaN), version, label, when the label arrived.
MIXED_ROWS: list[tuple[str, int, list[float], list[float] | None, int, float, datetime | None]] = [
    ("a0", 0, [1, 2], [0.1, 0.9], 1, 1.0, LABELLED),
    ("a1", 1, [3, 4], [0.2, 0.8], 1, 1.0, LABELLED),  # a batch of three, labelled by a list
    ("a1", 1, [5, 6], [0.3, 0.7], 1, 0.0, LABELLED),
    ("a1", 1, [7, 8], [0.4, 0.6], 1, 1.0, LABELLED),
    ("a2", 2, [9, 10], None, -1, 0.0, LATER),  # no output recorded
    ("a3", 3, [11, 12], None, -1, 1.0, LATER),  # a mirrored output of width 3
    # a4: written under another feature schema (three columns), a5: no rows
    ("a6", 6, [13, 14], [0.6, 0.4], 1, NAN, LATER),  # its label does not fit
    ("a6", 6, [15, 16], [0.7, 0.3], 1, NAN, LATER),
    ("a7", 7, [17, 18], [0.9, 0.1], 2, 0.0, LATER),  # received with b7, ordered by id
    ("b7", 7, [19, 20], [0.8, 0.2], 2, NAN, None),
    ("a8", 8, [21, 22], None, -1, NAN, None),  # the champion's output of width 3
]


def _mixed_log(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests of every kind a window reads: batches, outputs of two widths (the modal
    one two), none, a request of another feature schema, an empty one, labels that fit
    and one that does not (stored directly: the labels API refuses it), and none."""
    at = [T0 + timedelta(minutes=i) for i in range(9)]
    written = [
        _record("a0", at[0], [[1, 2]], [[0.1, 0.9]]),
        _record("a1", at[1], [[3, 4], [5, 6], [7, 8]], [[0.2, 0.8], [0.3, 0.7], [0.4, 0.6]]),
        _record("a3", at[3], [[11, 12]], [[0.1, 0.2, 0.7]], version=2, role="external"),
        _record("a6", at[6], [[13, 14], [15, 16]], [[0.6, 0.4], [0.7, 0.3]]),
        _record("b7", at[7], [[19, 20]], [[0.8, 0.2]], version=2),
        _record("a7", at[7], [[17, 18]], [[0.9, 0.1]], version=2),
        _record("a8", at[8], [[21, 22]], [[0.2, 0.3, 0.5]], version=3),
    ]
    a2, _ = _record("a2", at[2], [[9, 10]], [[0.5, 0.5]])
    a4, o4 = _record("a4", at[4], [[0, 0]], [[0.5, 0.5]])
    a4 = RequestRecord(**{**_fields(a4), "n_cols": 3, "inputs": np.float32([[1, 2, 3]]).tobytes()})
    a5, o5 = _record("a5", at[5], [[0, 0]], [[0.5, 0.5]])
    a5 = RequestRecord(**{**_fields(a5), "n_rows": 0, "inputs": b""})
    o5 = OutputRecord(**{**_fields(o5), "n_rows": 0, "values": b""})
    store.write_records([r for r, _ in written] + [a2, a4, a5], [o for _, o in written] + [o4, o5])
    monkeypatch.setattr("tunewatch.store._records.utcnow", lambda: LABELLED)
    store.add_labels(
        "m", [LabelItem(request_id="a0", value=1.0), LabelItem("a1", value=[1.0, 0.0, 1.0])]
    )
    monkeypatch.setattr("tunewatch.store._records.utcnow", lambda: LATER)
    store.add_labels(
        "m", [LabelItem(r, value=v) for r, v in [("a2", 0.0), ("a3", 1.0), ("a4", 1.0), ("a7", 0)]]
    )
    with store.engine.begin() as conn:
        conn.execute(
            labels.insert().values(
                model="m", request_id="a6", value=[1.0], outcome=None, received_at=LATER
            )
        )


def _fields(record: RequestRecord | OutputRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def _assert_rows(
    window: Window, ids: set[str], *, features: bool = True, with_ids: bool = True
) -> None:
    """``window`` holds the rows of ``MIXED_ROWS`` of the requests ``ids``, as read."""
    rows = [row for row in MIXED_ROWS if row[0] in ids]
    assert window.model == "m" and window.n_rows == len(rows)
    assert window.request_ids == (tuple(row[0] for row in rows) if with_ids else ())
    np.testing.assert_array_equal(
        window.received_at, [(T0 + timedelta(minutes=row[1])).timestamp() for row in rows]
    )
    assert window.received_at.dtype == np.float64
    if features:
        np.testing.assert_array_equal(window.features, np.float32([row[2] for row in rows]))
    else:
        assert window.features.shape == (len(rows), 0)
    assert window.features.dtype == np.float32
    outputs = np.float32([row[3] or [NAN, NAN] for row in rows]).reshape(-1, 2)
    np.testing.assert_array_equal(window.outputs, outputs)
    assert window.outputs.dtype == np.float32
    np.testing.assert_array_equal(window.versions, [row[4] for row in rows])
    assert window.versions.dtype == np.int64
    np.testing.assert_array_equal(window.labels, np.float64([row[5] for row in rows]))
    label_at = [row[6].timestamp() if row[6] else NAN for row in rows]
    np.testing.assert_array_equal(window.label_received_at, np.float64(label_at))
    assert window.labels.dtype == window.label_received_at.dtype == np.float64


def test_a_window_of_a_mixed_log_reads_every_kind_of_request_as_before(
    model_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pins what a window reads of every kind of request, whatever the chunks its rows
    are streamed in (a decay read of 1M requests held every row as Python objects)."""
    _mixed_log(model_store, monkeypatch)
    every = {row[0] for row in MIXED_ROWS}
    for chunk in (1, 2, 3, 5, _windows.CHUNK_ROWS):
        monkeypatch.setattr(_windows, "CHUNK_ROWS", chunk)
        _assert_rows(model_store.window("m", n_features=2), every)
        lean = model_store.window("m", n_features=2, with_features=False)
        _assert_rows(lean, every, features=False)
        bare = model_store.window("m", n_features=2, with_features=False, with_ids=False)
        _assert_rows(bare, every, features=False, with_ids=False)
        ranged = model_store.window(
            "m", n_features=2, start=T0 + timedelta(minutes=1), end=T0 + timedelta(minutes=7)
        )
        _assert_rows(ranged, {"a1", "a2", "a3", "a6"})
        _assert_rows(model_store.window("m", n_features=2, last_n=3), {"a7", "b7", "a8"})
        newest = model_store.window(
            "m", n_features=2, last_n=4, end=T0 + timedelta(minutes=7), with_features=False
        )
        _assert_rows(newest, {"a3", "a6"}, features=False)  # a4 counted, then left out
        assert model_store.window("m", n_features=3).request_ids == ("a4",)


def test_the_output_width_of_a_window_is_the_first_read_of_the_most_common(
    model_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two widths as common: the one read first is the window's, counted over the whole
    read, not over the chunk its rows are streamed in."""
    records = [
        _record("t0", T0, [[0, 0]], [[0.1, 0.2, 0.7]]),
        _record("t1", T0 + timedelta(minutes=1), [[1, 1]], [[0.2, 0.2, 0.6]], version=2),
        _record("t2", T0 + timedelta(minutes=2), [[2, 2]], [[0.4, 0.6]]),
        _record("t3", T0 + timedelta(minutes=3), [[3, 3]], [[0.3, 0.7]]),
    ]
    model_store.write_records([r for r, _ in records], [o for _, o in records])
    for chunk in (1, 3, _windows.CHUNK_ROWS):
        monkeypatch.setattr(_windows, "CHUNK_ROWS", chunk)
        w = model_store.window("m", n_features=2)
        np.testing.assert_array_equal(
            w.outputs, np.float32([[0.1, 0.2, 0.7], [0.2, 0.2, 0.6], [NAN] * 3, [NAN] * 3])
        )
        np.testing.assert_array_equal(w.versions, [1, 2, -1, -1])
