"""At most a few feedback requests run at once in a process; another is answered 429
``feedback_busy`` at once, and the labels of those that ran are counted by status.

With 40 labellers each posting a 10,000-item body at once, the label writes took every
thread of anyio's default pool of 40: ``/readyz`` and ``/v2/health/ready`` took 16 s to
answer (a readiness probe's timeout is 1 s), and nothing bounded them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, HeldCalls, Running, holding, serving
from tunewatch._example import ExampleModel
from tunewatch.api._feedback_limit import BUSY_CODE, MAX_FEEDBACK_IN_PROGRESS

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
WAIT_S = 60  # a safety net for a broken build, never the thing a test measures


@pytest.fixture(scope="module")
def labelling(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    with serving(tmp_path_factory.mktemp("feedback-limit"), trained) as served:
        yield served


@pytest.fixture
def held(labelling: Running, monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldCalls]:
    """The first :data:`MAX_FEEDBACK_IN_PROGRESS` label writes, held until released."""
    store = labelling.daemon.runtime.store
    with holding(monkeypatch, store, "add_labels", MAX_FEEDBACK_IN_PROGRESS) as holder:
        yield holder


def _feedback(running: Running, ids: list[str]) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v1/models/{MODEL}/feedback",
        json={"items": [{"request_id": rid, "label": 1} for rid in ids]},
        headers=running.auth("labeller"),
        timeout=WAIT_S,
    )


def _mirror(running: Running, ids: list[str]) -> None:
    records = [{"id": rid, "inputs": [ROW], "outputs": [[0.3, 0.7]]} for rid in ids]
    r = httpx.post(
        f"{running.url}/v1/models/{MODEL}/records",
        json={"records": records},
        headers=running.auth("scorer"),
        timeout=WAIT_S,
    )
    assert r.status_code == 200 and r.json()["accepted"] == len(ids), r.text


def _labels_counted(running: Running, status: str) -> float:
    value = running.daemon.runtime.metrics.registry.get_sample_value(
        "tunewatch_labels_total", {"model": MODEL, "status": status}
    )
    return value or 0.0


def test_feedback_beyond_the_limit_is_429_feedback_busy_until_the_others_end(
    labelling: Running, held: HeldCalls
) -> None:
    answers: list[httpx.Response] = []

    def post(i: int) -> None:
        answers.append(_feedback(labelling, [f"held-{i}-a", f"held-{i}-b"]))

    holders = [threading.Thread(target=post, args=(i,)) for i in range(MAX_FEEDBACK_IN_PROGRESS)]
    for t in holders:
        t.start()
    try:
        for _ in holders:  # each is writing its labels, holding its slot
            assert held.entered.acquire(timeout=WAIT_S)

        # a backfill's whole body (~0.4 MiB), answered without being read
        busy = _feedback(labelling, [f"one-more-{i:05d}" for i in range(10_000)])
        assert busy.status_code == 429, busy.text[:300]
        assert busy.headers["content-type"].startswith("application/json")
        body = busy.json()
        assert set(body) == {"error", "code"} and body["code"] == BUSY_CODE, body
        assert str(MAX_FEEDBACK_IN_PROGRESS) in body["error"], body["error"]
        assert int(busy.headers["retry-after"]) >= 1

        # the probes answer meanwhile
        assert httpx.get(f"{labelling.url}/readyz", timeout=WAIT_S).status_code == 200
        assert httpx.get(f"{labelling.url}/v2/health/ready", timeout=WAIT_S).status_code == 200
    finally:
        held.release.set()
        for t in holders:
            t.join(WAIT_S)
    assert [a.status_code for a in answers] == [200] * MAX_FEEDBACK_IN_PROGRESS
    for answer in answers:
        assert [r["status"] for r in answer.json()["results"]] == ["unknown_request"] * 2
    after = _feedback(labelling, ["after-release"])  # the slots are free again
    assert after.status_code == 200, after.text


def test_a_refused_feedback_request_frees_its_slot(labelling: Running) -> None:
    url = f"{labelling.url}/v1/models/{MODEL}/feedback"
    labeller = labelling.auth("labeller")
    for _ in range(MAX_FEEDBACK_IN_PROGRESS + 2):
        assert httpx.post(url, json={"items": []}, headers=labeller).status_code == 400
        assert httpx.post(url, json={"items": [{"request_id": "x", "label": 1}]}).status_code == 401
        unknown = httpx.post(
            f"{labelling.url}/v1/models/nope/feedback",
            json={"items": [{"request_id": "x", "label": 1}]},
            headers=labeller,
        )
        assert unknown.status_code == 404
    assert _feedback(labelling, ["freed"]).status_code == 200


def test_labels_are_counted_by_status(labelling: Running) -> None:
    ids = [f"counted-{i}" for i in range(6)]
    _mirror(labelling, ids[:4])
    assert _feedback(labelling, ids[:2]).status_code == 200  # stored before the batch
    before = {s: _labels_counted(labelling, s) for s in ("created", "duplicate", "unknown_request")}

    answer = _feedback(labelling, ids)
    assert answer.status_code == 200, answer.text
    statuses = [r["status"] for r in answer.json()["results"]]
    assert statuses == ["duplicate"] * 2 + ["created"] * 2 + ["unknown_request"] * 2
    counted = {s: _labels_counted(labelling, s) - before[s] for s in before}
    assert counted == {"created": 2.0, "duplicate": 2.0, "unknown_request": 2.0}


def test_the_api_description_documents_feedback_busy(labelling: Running) -> None:
    spec: dict[str, Any] = httpx.get(f"{labelling.url}/openapi.json", timeout=WAIT_S).json()
    responses = spec["paths"]["/v1/models/{model}/feedback"]["post"]["responses"]
    assert BUSY_CODE in responses["429"]["description"]
    assert "Retry-After" in responses["429"]["headers"]
    mirror = spec["paths"]["/v1/models/{model}/records"]["post"]["responses"]
    assert BUSY_CODE not in mirror["429"]["description"]  # the mirror's own slots


def test_the_mirror_route_is_not_limited_by_the_feedback_slots(
    labelling: Running, held: HeldCalls
) -> None:
    """Mirror records are written by the recorder's own thread, not in a worker thread:
    a label backfill does not turn the serving stack's records away."""
    answers: list[httpx.Response] = []
    holders = [
        threading.Thread(target=lambda i=i: answers.append(_feedback(labelling, [f"m-{i}"])))
        for i in range(MAX_FEEDBACK_IN_PROGRESS)
    ]
    for t in holders:
        t.start()
    try:
        for _ in holders:
            assert held.entered.acquire(timeout=WAIT_S)
        _mirror(labelling, ["mirrored-while-labelling"])
    finally:
        held.release.set()
        for t in holders:
            t.join(WAIT_S)
    assert [a.status_code for a in answers] == [200] * MAX_FEEDBACK_IN_PROGRESS
