"""At most a few ``/v1`` listings of whole rows (evaluations, versions, jobs) run at once in
a process; another is answered 429 ``listing_busy`` at once, and the listings answer the
JSON they always did.

On a store with a year of 5-minute runs one ``decay?limit=10000`` took 12-20 s and answered
32 MiB; six at once from one viewer raised the daemon's memory from 370 to 1,121 MiB and
slowed inference from 41 ms to 1.1 s and ``/readyz`` to 1.2 s. Nothing bounded them (the
dashboard's reads are held to 2, drift report builds to 2).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import (
    MODEL,
    Clock,
    HeldCalls,
    Running,
    evaluating_daemon,
    feed,
    holding,
)
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel
from tunewatch.api._listing_limit import BUSY_CODE, MAX_LISTINGS_IN_PROGRESS
from tunewatch.store import EvaluationRow

WINDOW = 200
RUNS = 3
KINDS = ("drift", "decay", "estimate", "labels", "telemetry")
WAIT_S = 60  # a safety net for a broken build, never the thing a test measures


@pytest.fixture(scope="module")
def listed(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """A served daemon whose model has :data:`RUNS` stored evaluation runs."""
    daemon, tokens = evaluating_daemon(
        tmp_path_factory.mktemp("listed"), trained, window_rows=WINDOW
    )
    try:
        clock = Clock()
        daemon.evaluator.clock = clock
        feed(daemon, clock, 0, WINDOW, shift=0.0, seed=4)
        for i in range(RUNS):
            feed(daemon, clock, WINDOW + 20 * i, 20, shift=0.5 * i, seed=100 + i)
            daemon.evaluator.evaluate(MODEL)
        with BackgroundServer(daemon.app) as server:
            yield Running(daemon=daemon, server=server, tokens=tokens)
    finally:
        daemon.close()


#: The other listings of whole rows sharing the slots: 10,000 versions or jobs with their
#: details are ~30 MB, and six at once took a daemon from 0.5 to 2.1 GB for 40 s.
WHOLE_ROWS = ("/v1/models/{model}/versions", "/v1/jobs")


def _listing_urls(url: str) -> list[str]:
    base = f"{url}/v1/models/{MODEL}"
    return (
        [f"{base}/evaluations?limit=10000"]
        + [f"{base}/{k}?limit=10000" for k in KINDS]
        + [f"{url}{p.format(model=MODEL)}?limit=10000" for p in WHOLE_ROWS]
    )


@pytest.fixture
def held(listed: Running, monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldCalls]:
    """The first :data:`MAX_LISTINGS_IN_PROGRESS` store reads of evaluations, held until
    released."""
    store = listed.daemon.store
    with holding(monkeypatch, store, "list_evaluations", MAX_LISTINGS_IN_PROGRESS) as holder:
        yield holder


def _infer_body() -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [0.1] * 8}]}


def test_listings_beyond_the_limit_are_429_listing_busy_while_others_answer(
    listed: Running, held: HeldCalls
) -> None:
    viewer = listed.auth("viewer")
    urls = _listing_urls(listed.url)
    answers: list[httpx.Response] = []

    def fetch(url: str) -> None:
        answers.append(httpx.get(url, headers=viewer, timeout=WAIT_S))

    holders = [
        threading.Thread(target=fetch, args=(urls[i],)) for i in range(MAX_LISTINGS_IN_PROGRESS)
    ]
    for t in holders:
        t.start()
    try:
        for _ in holders:  # each is reading the store, holding its slot
            assert held.entered.acquire(timeout=WAIT_S)

        for url in urls:  # every listing route shares the slots
            busy = httpx.get(url, headers=viewer, timeout=WAIT_S)
            assert busy.status_code == 429, (url, busy.text[:300])
            assert busy.headers["content-type"].startswith("application/json")
            body = busy.json()
            assert set(body) == {"error", "code"} and body["code"] == BUSY_CODE, body
            assert str(MAX_LISTINGS_IN_PROGRESS) in body["error"], body["error"]
            assert int(busy.headers["retry-after"]) >= 1

        # scoring, the probes, a single evaluation and the dashboard's reads answer
        scored = httpx.post(
            f"{listed.url}/v2/models/{MODEL}/infer",
            json=_infer_body(),
            headers=listed.auth("scorer"),
            timeout=WAIT_S,
        )
        assert scored.status_code == 200, scored.text
        assert httpx.get(f"{listed.url}/readyz", timeout=WAIT_S).status_code == 200
        dashboard = httpx.get(
            f"{listed.url}/v1/dashboard/models/{MODEL}/drift", headers=viewer, timeout=WAIT_S
        )
        assert dashboard.status_code == 200, dashboard.text[:300]
    finally:
        held.release.set()
        for t in holders:
            t.join(WAIT_S)
    assert [a.status_code for a in answers] == [200] * MAX_LISTINGS_IN_PROGRESS
    for url in urls:  # the slots are free again
        assert httpx.get(url, headers=viewer, timeout=WAIT_S).status_code == 200


def test_a_refused_or_failed_listing_frees_its_slot(listed: Running) -> None:
    viewer = listed.auth("viewer")
    base = f"{listed.url}/v1/models"
    for _ in range(MAX_LISTINGS_IN_PROGRESS + 2):
        assert httpx.get(f"{base}/nope/decay", headers=viewer, timeout=WAIT_S).status_code == 404
        unknown = httpx.get(f"{base}/{MODEL}/decay?limti=5", headers=viewer, timeout=WAIT_S)
        assert unknown.status_code == 400
        assert httpx.get(f"{base}/{MODEL}/decay", timeout=WAIT_S).status_code == 401
    assert httpx.get(f"{base}/{MODEL}/decay", headers=viewer, timeout=WAIT_S).status_code == 200


def _as_listed(e: EvaluationRow) -> dict[str, Any]:
    """A stored evaluation as the listings have always answered it: every field in the
    row's order, the times in ISO 8601."""
    return {
        "id": e.id,
        "model": e.model,
        "version": e.version,
        "kind": e.kind,
        "status": e.status,
        "window_start": e.window_start.isoformat() if e.window_start else None,
        "window_end": e.window_end.isoformat(),
        "payload": e.payload,
        "created_at": e.created_at.isoformat(),
    }


def test_listings_answer_the_same_json_as_before(listed: Running) -> None:
    viewer = listed.auth("viewer")
    store = listed.daemon.store
    base = f"{listed.url}/v1/models/{MODEL}"
    field_order = [f.name for f in fields(EvaluationRow)]

    every = httpx.get(f"{base}/evaluations?limit=4", headers=viewer, timeout=WAIT_S)
    assert every.status_code == 200 and every.headers["content-type"] == "application/json"
    body = every.json()
    assert list(body) == ["evaluations", "next"]
    stored = store.list_evaluations(MODEL, limit=5)
    assert body == {"evaluations": [_as_listed(e) for e in stored[:4]], "next": stored[3].id}
    assert all(list(row) == field_order for row in body["evaluations"])

    for kind in KINDS:
        rows = store.list_evaluations(MODEL, kind=kind, limit=10)
        assert len(rows) == RUNS
        first = httpx.get(f"{base}/{kind}?limit=2", headers=viewer, timeout=WAIT_S).json()
        assert list(first) == ["model", "kind", "latest", "history", "next"]
        assert first == {
            "model": MODEL,
            "kind": kind,
            "latest": _as_listed(rows[0]),
            "history": [_as_listed(e) for e in rows[:2]],
            "next": rows[1].id,
        }
        assert list(first["latest"]) == field_order
        older = httpx.get(
            f"{base}/{kind}?limit=2&before_id={first['next']}", headers=viewer, timeout=WAIT_S
        ).json()
        assert older == {
            "model": MODEL,
            "kind": kind,
            "latest": _as_listed(rows[0]),
            "history": [_as_listed(rows[2])],
            "next": None,
        }
    none = httpx.get(f"{base}/drift?version=2", headers=viewer, timeout=WAIT_S).json()
    assert none == {"model": MODEL, "kind": "drift", "latest": None, "history": [], "next": None}


def test_the_api_description_documents_listing_busy(listed: Running) -> None:
    spec = httpx.get(f"{listed.url}/openapi.json", timeout=WAIT_S).json()
    for path in ["/v1/models/{model}/evaluations"] + [f"/v1/models/{{model}}/{k}" for k in KINDS]:
        responses = spec["paths"][path]["get"]["responses"]
        assert BUSY_CODE in responses["429"]["description"], path
        assert "Retry-After" in responses["429"]["headers"], path
    for path in WHOLE_ROWS:
        responses = spec["paths"][path]["get"]["responses"]
        assert BUSY_CODE in responses["429"]["description"], path
        ok = responses["200"]["content"]["application/json"]["schema"]
        assert ok["type"] == "object", (path, ok)
