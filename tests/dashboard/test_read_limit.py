"""Dashboard reads share the daemon's process and worker threads with scoring, token
look-ups and the probes: at most a few run at once, the rest are answered 429 at once.

A viewer's 60 concurrent year-long drift reads held every worker thread: inference took
up to 12 s and /readyz 16 s. Every ``/v1/dashboard`` answer holds model, audit and
approval data read by cookie, and carried no ``Cache-Control: no-store``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from tests.dashboard.scenario import Served, session_cookie
from tunewatch._demo import MODEL
from tunewatch.dashboard import _api, _series
from tunewatch.dashboard._limit import MAX_READS_IN_PROGRESS

WAIT_S = 60  # a safety net for a broken build, never the thing a test measures


def _api_paths(model: str) -> list[str]:
    return [r.path.replace("{model}", model) for r in _api.router.routes if isinstance(r, APIRoute)]


class _Held:
    """The first :data:`MAX_READS_IN_PROGRESS` dashboard drift reads, held inside the
    data layer until released; any later one runs through."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self._to_hold = MAX_READS_IN_PROGRESS
        self._lock = threading.Lock()

    def wrap(self, read: Callable[..., Any]) -> Callable[..., Any]:
        def held(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                hold, self._to_hold = self._to_hold > 0, self._to_hold - 1
            if hold:
                self.entered.release()
                assert self.release.wait(WAIT_S), "the held read was never released"
            return read(*args, **kwargs)

        return held


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Held]:
    holder = _Held()
    monkeypatch.setattr(_series, "drift", holder.wrap(_series.drift))
    try:
        yield holder
    finally:
        holder.release.set()  # never leave the shared daemon's threads waiting


def _infer_body(served: Served) -> dict[str, Any]:
    meta = httpx.get(
        f"{served.url}/v2/models/{served.model}", headers=served.auth("scorer"), timeout=WAIT_S
    ).json()
    (inp,) = meta["inputs"]
    width = inp["shape"][-1]
    return {
        "inputs": [
            {
                "name": inp["name"],
                "shape": [1, width],
                "datatype": inp["datatype"],
                "data": [0.1] * width,
            }
        ]
    }


def test_reads_over_the_limit_are_429_while_scoring_and_probes_answer(
    served: Served, held: _Held
) -> None:
    cookie = session_cookie(served.url, served.tokens["viewer"])
    infer_body = _infer_body(served)
    drift = f"{served.url}/v1/dashboard/models/{served.model}/drift"
    answers: list[httpx.Response] = []

    def read() -> None:
        answers.append(httpx.get(drift, cookies=cookie, timeout=WAIT_S))

    readers = [threading.Thread(target=read) for _ in range(MAX_READS_IN_PROGRESS)]
    for t in readers:
        t.start()
    try:
        for _ in readers:  # every one is inside the data layer, holding its slot
            assert held.entered.acquire(timeout=WAIT_S)

        busy = httpx.get(drift, cookies=cookie, timeout=WAIT_S)
        assert busy.status_code == 429, busy.text
        body = busy.json()
        assert body["code"] == "dashboard_busy"
        assert isinstance(body["error"], str) and body["error"]
        assert int(busy.headers["retry-after"]) >= 1
        assert busy.headers["cache-control"] == "no-store"

        other = httpx.get(f"{served.url}/v1/dashboard/overview", cookies=cookie, timeout=WAIT_S)
        assert other.status_code == 429
        assert other.json()["code"] == "dashboard_busy"

        page = httpx.get(
            f"{served.url}/dashboard/models/{served.model}/decay", cookies=cookie, timeout=WAIT_S
        )
        assert page.status_code == 429
        assert "text/html" in page.headers["content-type"]
        assert int(page.headers["retry-after"]) >= 1

        scored = httpx.post(
            f"{served.url}/v2/models/{served.model}/infer",
            json=infer_body,
            headers=served.auth("scorer"),
            timeout=WAIT_S,
        )
        assert scored.status_code == 200, scored.text
        assert httpx.get(f"{served.url}/readyz", timeout=WAIT_S).status_code == 200
        assert httpx.get(f"{served.url}/metrics", timeout=WAIT_S).status_code == 200
    finally:
        held.release.set()
        for t in readers:
            t.join(WAIT_S)
    assert [a.status_code for a in answers] == [200] * MAX_READS_IN_PROGRESS
    # the slots are free again
    assert httpx.get(drift, cookies=cookie, timeout=WAIT_S).status_code == 200


def test_a_failed_read_frees_its_slot(served: Served) -> None:
    for _ in range(MAX_READS_IN_PROGRESS + 2):
        r = httpx.get(
            f"{served.url}/v1/dashboard/models/nope/drift",
            headers=served.auth("viewer"),
            timeout=WAIT_S,
        )
        assert r.status_code == 404, r.text
        page = httpx.get(
            f"{served.url}/dashboard/models/nope/drift",
            cookies=session_cookie(served.url, served.tokens["viewer"]),
            timeout=WAIT_S,
        )
        assert page.status_code == 404


@pytest.mark.parametrize("path", _api_paths(MODEL))
def test_every_dashboard_json_answer_is_no_store_and_varies_by_cookie(
    served: Served, path: str
) -> None:
    cookie = session_cookie(served.url, served.tokens["viewer"])
    for answer in (
        httpx.get(f"{served.url}{path}", cookies=cookie, timeout=WAIT_S),  # 200
        httpx.get(f"{served.url}{path}", timeout=WAIT_S),  # 401
        httpx.get(
            f"{served.url}{path.replace(MODEL, 'nope')}", cookies=cookie, timeout=WAIT_S
        ),  # 404 (the overview: 200 again)
    ):
        assert answer.headers.get("cache-control") == "no-store", (answer.status_code, path)
        vary = {v.strip().lower() for v in answer.headers.get("vary", "").split(",")}
        assert "cookie" in vary, (answer.status_code, path)
