"""A label refused because its request id already has another one leaves a trace: a
warning, an audit entry by the labeller's token and a ``label_conflict`` event, naming the
ids with the stored and the refused values; a replay adds nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
LABELLER = "test-labeller"  # the name make_daemon gives the labeller's token


@pytest.fixture
def labelling(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Running]:
    daemon, tokens = make_daemon(
        tmp_path, trained, store_url=store_url, extra={"scheduler": {"enabled": False}}
    )
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


def _mirror(running: Running, *ids: str) -> None:
    records = [{"id": rid, "inputs": [ROW], "outputs": [[0.3, 0.7]]} for rid in ids]
    r = httpx.post(
        f"{running.url}/v1/models/{MODEL}/records",
        json={"records": records},
        headers=running.auth("scorer"),
    )
    assert r.status_code == 200 and r.json()["accepted"] == len(ids), r.text


def _feedback(running: Running, *items: dict[str, Any]) -> list[str]:
    r = httpx.post(
        f"{running.url}/v1/models/{MODEL}/feedback",
        json={"items": list(items)},
        headers=running.auth("labeller"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["results"]  # the response's format is unchanged
    assert [x["request_id"] for x in body["results"]] == [i["request_id"] for i in items]
    return [x["status"] for x in body["results"]]


def _traces(running: Running) -> tuple[int, int]:
    """How many audit entries and events the model has (all kinds)."""
    store = running.daemon.store
    return len(store.audit_log(10_000, model=MODEL)), len(
        store.list_events(model=MODEL, limit=10_000)
    )


def _conflict_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "tunewatch.api._label_conflicts" and "conflict" in r.getMessage()
    ]


def test_a_refused_label_correction_is_logged_and_audited_with_both_values(
    labelling: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrected label was answered `conflict` and dropped with no log line, audit
    entry or event: the refused value was kept nowhere. Outcomes count as part of the
    label and are shown too."""
    caplog.set_level(logging.WARNING, logger="tunewatch.api._label_conflicts")
    _mirror(labelling, "tx-1", "tx-2", "tx-3")
    assert _feedback(labelling, {"request_id": "tx-1", "label": 0}) == ["created"]
    assert _feedback(labelling, {"request_id": "tx-3", "label": 1, "outcome": 5}) == ["created"]
    before = _traces(labelling)
    assert _conflict_logs(caplog) == []

    statuses = _feedback(
        labelling,
        {"request_id": "tx-1", "label": 1},
        {"request_id": "tx-2", "label": 1},
        {"request_id": "tx-3", "label": 1, "outcome": 250.0},
    )

    assert statuses == ["conflict", "created", "conflict"]
    store = labelling.daemon.store
    label = store.get_label(MODEL, "tx-1")
    assert label is not None and label.value == 0.0  # the first label still wins
    (entry,) = store.audit_log(10, model=MODEL, action="label_conflict")
    assert entry.actor == LABELLER and entry.target == MODEL
    assert entry.details["count"] == 2
    assert entry.details["conflicts"] == [
        {
            "request_id": "tx-1",
            "stored": {"label": 0.0, "outcome": None},
            "refused": {"label": 1.0, "outcome": None},
        },
        {
            "request_id": "tx-3",
            "stored": {"label": 1.0, "outcome": 5.0},
            "refused": {"label": 1.0, "outcome": 250.0},
        },
    ]
    (event,) = store.list_events(model=MODEL, type="label_conflict")
    assert event.payload["actor"] == LABELLER
    assert event.payload["conflicts"] == entry.details["conflicts"]
    assert _traces(labelling) == (before[0] + 1, before[1] + 1)
    assert store.verify_audit() is None
    (log,) = _conflict_logs(caplog)
    assert log.levelno == logging.WARNING
    message = log.getMessage()
    assert MODEL in message and LABELLER in message and "'tx-1'" in message
    assert "refused 2 label(s)" in message


def test_replays_add_no_audit_entry_or_event(
    labelling: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """An identical label re-sent is a duplicate and records nothing; a refused
    correction re-sent (a client's retry) is still a conflict, logged, but its audit entry
    and event are not written again."""
    caplog.set_level(logging.WARNING, logger="tunewatch.api._label_conflicts")
    _mirror(labelling, "tx-1", "tx-2")
    assert _feedback(labelling, {"request_id": "tx-1", "label": 0}) == ["created"]
    before = _traces(labelling)
    assert _feedback(labelling, {"request_id": "tx-1", "label": 0.0}) == ["duplicate"]
    assert _traces(labelling) == before
    assert _conflict_logs(caplog) == []

    correction = [{"request_id": "tx-1", "label": 1}, {"request_id": "tx-2", "label": 1}]
    assert _feedback(labelling, *correction) == ["conflict", "created"]
    after_first = _traces(labelling)
    assert after_first == (before[0] + 1, before[1] + 1)
    for _ in range(3):
        assert _feedback(labelling, *reversed(correction)) == ["duplicate", "conflict"]
        assert _feedback(labelling, {"request_id": "tx-1", "label": 0}) == ["duplicate"]
    assert _traces(labelling) == after_first
    assert len(_conflict_logs(caplog)) == 4  # every refusal is logged

    # Another refused value is new: it is audited.
    assert _feedback(labelling, {"request_id": "tx-1", "label": 1, "outcome": 3}) == ["conflict"]
    assert _traces(labelling) == (after_first[0] + 1, after_first[1] + 1)


def test_a_large_conflicting_batch_is_one_bounded_audit_entry(
    labelling: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Many refused labels in one request are one entry and one event naming the first
    20 ids (by id) and the count, and one log line naming the first few."""
    caplog.set_level(logging.WARNING, logger="tunewatch.api._label_conflicts")
    ids = [f"r{i:03d}" for i in range(60)]
    _mirror(labelling, *ids)
    assert set(_feedback(labelling, *({"request_id": rid, "label": 0} for rid in ids))) == {
        "created"
    }
    before = _traces(labelling)

    statuses = _feedback(labelling, *({"request_id": rid, "label": 1} for rid in reversed(ids)))

    assert set(statuses) == {"conflict"}
    assert _traces(labelling) == (before[0] + 1, before[1] + 1)
    (entry,) = labelling.daemon.store.audit_log(10, model=MODEL, action="label_conflict")
    assert entry.details["count"] == 60
    assert [c["request_id"] for c in entry.details["conflicts"]] == ids[:20]
    (log,) = _conflict_logs(caplog)
    assert "refused 60 label(s)" in log.getMessage() and ids[40] not in log.getMessage()
