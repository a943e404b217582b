"""Large mirror calls: at most a few run at once in a process (another is answered 429
``mirror_busy`` at once, its body unread), and their records are committed at most
``recording.max_batch`` at a time.

Forty-eight callers each posting 10,000 records at once raised the daemon's memory from
370 to 919 MiB and held ``/readyz`` for 18 s; and a call's records, handed over in one
event-loop iteration, were one commit of 10,000 requests, which every request scored
meanwhile waited for (inference's p50 3.5 s beside eight such callers).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, HeldCalls, Running, holding, serving
from tunewatch._example import ExampleModel
from tunewatch.api import _records
from tunewatch.api._body import INLINE_JSON_BYTES
from tunewatch.api._mirror_limit import BUSY_CODE, MAX_BULK_MIRRORS_IN_PROGRESS

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
MAX_BATCH = 8  # recording.max_batch: a commit's most requests
WAIT_S = 60  # a safety net for a broken build, never the thing a test measures


@pytest.fixture(scope="module")
def mirroring(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    with serving(
        tmp_path_factory.mktemp("mirror-limit"),
        trained,
        extra={"recording": {"max_batch": MAX_BATCH}},
    ) as served:
        yield served


def _records_of(prefix: str, n: int) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{i:05d}", "inputs": [ROW], "outputs": [[0.3, 0.7]]} for i in range(n)]


def _post(running: Running, records: list[dict[str, Any]], **kwargs: Any) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v1/models/{MODEL}/records",
        headers=running.auth("scorer"),
        timeout=WAIT_S,
        **({"json": {"records": records}} | kwargs),
    )


def _bulk(prefix: str) -> list[dict[str, Any]]:
    """Records whose body is over ``INLINE_JSON_BYTES``."""
    records = _records_of(prefix, 1_000)
    assert len(httpx.Request("POST", "/", json={"records": records}).content) > INLINE_JSON_BYTES
    return records


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldCalls]:
    """The first :data:`MAX_BULK_MIRRORS_IN_PROGRESS` mirror bodies' checks, held until
    released."""
    with holding(monkeypatch, _records, "_mirrored", MAX_BULK_MIRRORS_IN_PROGRESS) as holder:
        yield holder


def test_large_mirror_calls_beyond_the_limit_are_429_mirror_busy_until_the_others_end(
    mirroring: Running, held: HeldCalls
) -> None:
    answers: list[httpx.Response] = []
    holders = [
        threading.Thread(target=lambda i=i: answers.append(_post(mirroring, _bulk(f"held-{i}"))))
        for i in range(MAX_BULK_MIRRORS_IN_PROGRESS)
    ]
    for t in holders:
        t.start()
    try:
        for _ in holders:  # each is checking its records, holding its slot
            assert held.entered.acquire(timeout=WAIT_S)

        busy = _post(mirroring, _bulk("one-more"))
        assert busy.status_code == 429, busy.text[:300]
        body = busy.json()
        assert set(body) == {"error", "code"} and body["code"] == BUSY_CODE, body
        assert str(MAX_BULK_MIRRORS_IN_PROGRESS) in body["error"], body["error"]
        assert int(busy.headers["retry-after"]) >= 1

        # a body whose length is not announced (chunked) may be as large
        def chunks() -> Iterator[bytes]:
            yield b'{"records": '
            yield httpx.Request("POST", "/", json=_records_of("chunked", 1)).content
            yield b"}"

        chunked = _post(mirroring, [], json=None, content=chunks())
        assert chunked.status_code == 429 and chunked.json()["code"] == BUSY_CODE

        # a serving stack mirroring each request as it answers it is not turned away
        small = _post(mirroring, _records_of("small-while-busy", 1))
        assert small.status_code == 200 and small.json()["accepted"] == 1, small.text
        assert httpx.get(f"{mirroring.url}/readyz", timeout=WAIT_S).status_code == 200
    finally:
        held.release.set()
        for t in holders:
            t.join(WAIT_S)
    assert [a.status_code for a in answers] == [200] * MAX_BULK_MIRRORS_IN_PROGRESS
    assert [a.json()["accepted"] for a in answers] == [1_000] * MAX_BULK_MIRRORS_IN_PROGRESS
    after = _post(mirroring, _bulk("after-release"))  # the slots are free again
    assert after.status_code == 200, after.text[:300]


def test_a_refused_large_mirror_call_frees_its_slot(mirroring: Running) -> None:
    bad = _bulk("refused")
    bad[-1]["outputs"] = [[0.3, 1.7]]  # not a probability
    for _ in range(MAX_BULK_MIRRORS_IN_PROGRESS + 2):
        refused = _post(mirroring, bad)
        assert refused.status_code == 400 and refused.json()["code"] == "invalid_output"
    assert _post(mirroring, _bulk("freed")).status_code == 200


def _batch_sizes(running: Running) -> tuple[float, float]:
    registry = running.daemon.runtime.metrics.registry
    count = registry.get_sample_value("tunewatch_record_batch_size_count") or 0.0
    total = registry.get_sample_value("tunewatch_record_batch_size_sum") or 0.0
    return count, total


def test_a_mirror_call_is_committed_at_most_max_batch_records_at_a_time(
    mirroring: Running,
) -> None:
    count, total = _batch_sizes(mirroring)
    answer = _post(mirroring, _records_of("chunks", 5 * MAX_BATCH + 3))
    assert answer.status_code == 200 and answer.json()["accepted"] == 5 * MAX_BATCH + 3
    commits, written = (a - b for a, b in zip(_batch_sizes(mirroring), (count, total), strict=True))
    assert written == 5 * MAX_BATCH + 3
    assert commits == 6  # five full commits and the rest; one commit of all 43 before

    replayed = _post(mirroring, _records_of("chunks", 5 * MAX_BATCH + 3))
    assert replayed.status_code == 200 and replayed.json()["accepted"] == 0
    assert len(replayed.json()["duplicates"]) == 5 * MAX_BATCH + 3


def test_the_api_description_documents_mirror_busy(mirroring: Running) -> None:
    spec: dict[str, Any] = httpx.get(f"{mirroring.url}/openapi.json", timeout=WAIT_S).json()
    responses = spec["paths"]["/v1/models/{model}/records"]["post"]["responses"]
    assert BUSY_CODE in responses["429"]["description"]
    assert "Retry-After" in responses["429"]["headers"]
