"""At most a few drift reports are built at once in a process; a build asked for beyond
them is answered 429 ``report_busy`` at once, and a stored report is served regardless.

A build costs evidently seconds of CPU and 14 MiB or more: eight built at once by one
viewer's token raised the daemon's peak memory by 110 MiB and held eight of the worker
threads that token look-ups, ``/readyz`` and scoring share. The API route had no limit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard.scenario import session_cookie
from tests.tunewatch.conftest import MODEL, Clock, Running, evaluating_daemon, feed
from tunewatch._background import BackgroundServer
from tunewatch._drift_report_builds import MAX_BUILDS_IN_PROGRESS
from tunewatch._example import ExampleModel
from tunewatch.store import ModelRow, VersionRow

WINDOW = 200  # a small window: evidently's build stays quick
WAIT_S = 120  # a safety net for a broken build, never the thing a test measures


@dataclass
class Judged:
    running: Running
    drift_ids: list[int]  # stored drift verdicts, their reports unbuilt

    def report(self, evaluation_id: int) -> str:
        return f"{self.running.url}/v1/models/{MODEL}/evaluations/{evaluation_id}/report"

    def page(self, evaluation_id: int) -> str:
        return f"{self.running.url}/dashboard/models/{MODEL}/drift/{evaluation_id}/report"


@pytest.fixture
def judged(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Judged]:
    """A served daemon with a champion and four stored drift verdicts, none reported."""
    daemon, tokens = evaluating_daemon(tmp_path, trained, window_rows=WINDOW)
    try:
        clock = Clock()
        daemon.evaluator.clock = clock
        feed(daemon, clock, 0, WINDOW, shift=0.0, seed=4)
        ids = []
        for i in range(MAX_BUILDS_IN_PROGRESS + 2):
            feed(daemon, clock, WINDOW + 10 * i, 10, shift=0.0, seed=100 + i)
            (drift,) = [r for r in daemon.evaluator.evaluate(MODEL) if r.kind == "drift"]
            assert drift.status == "ok", drift.payload
            ids.append(drift.id)
        with BackgroundServer(daemon.app) as server:
            yield Judged(Running(daemon=daemon, server=server, tokens=tokens), ids)
    finally:
        daemon.close()


class _HeldBuilds:
    """The first :data:`MAX_BUILDS_IN_PROGRESS` report builds, held at the first thing a
    build reads (the champion's baseline) until released; any later one runs through."""

    def __init__(self, baseline_of: Callable[[VersionRow, ModelRow], Any]) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self._baseline_of = baseline_of
        self._to_hold = MAX_BUILDS_IN_PROGRESS
        self._lock = threading.Lock()

    def __call__(self, champion: VersionRow, model: ModelRow) -> Any:
        with self._lock:
            hold, self._to_hold = self._to_hold > 0, self._to_hold - 1
        if hold:
            self.entered.release()
            assert self.release.wait(WAIT_S), "the held build was never released"
        return self._baseline_of(champion, model)


def test_a_build_beyond_the_limit_is_429_while_a_stored_report_is_served(
    judged: Judged,
) -> None:
    running, ids = judged.running, judged.drift_ids
    viewer = running.auth("viewer")
    *to_hold, unbuilt, stored = ids
    built = httpx.get(judged.report(stored), headers=viewer, timeout=WAIT_S)
    assert built.status_code == 200, built.text[:300]

    held = _HeldBuilds(running.daemon.evaluator.report_baseline)
    running.daemon.evaluator.report_baseline = held  # type: ignore[method-assign]
    answers: list[httpx.Response] = []

    def fetch(evaluation_id: int) -> None:
        answers.append(httpx.get(judged.report(evaluation_id), headers=viewer, timeout=WAIT_S))

    builders = [threading.Thread(target=fetch, args=(i,)) for i in to_hold]
    for t in builders:
        t.start()
    try:
        for _ in builders:  # each is building, holding its slot
            assert held.entered.acquire(timeout=WAIT_S)

        busy = httpx.get(judged.report(unbuilt), headers=viewer, timeout=WAIT_S)
        assert busy.status_code == 429, busy.text[:300]
        assert busy.headers["content-type"].startswith("application/json")
        body = busy.json()
        assert set(body) == {"error", "code"} and body["code"] == "report_busy"
        assert str(MAX_BUILDS_IN_PROGRESS) in body["error"], body["error"]
        assert int(busy.headers["retry-after"]) >= 1

        # a stored report needs no build, so no slot
        again = httpx.get(judged.report(stored), headers=viewer, timeout=WAIT_S)
        assert again.status_code == 200, again.text[:300]
        assert again.text == built.text

        # the dashboard's page of it builds through the same limit: an HTML error page
        cookie = session_cookie(running.url, running.tokens["viewer"])
        page = httpx.get(judged.page(unbuilt), cookies=cookie, timeout=WAIT_S)
        assert page.status_code == 429, page.text[:300]
        assert page.headers["content-type"].startswith("text/html")
        assert 'data-status="429"' in page.text
        assert int(page.headers["retry-after"]) >= 1
        stored_page = httpx.get(judged.page(stored), cookies=cookie, timeout=WAIT_S)
        assert stored_page.status_code == 200 and stored_page.text == built.text

        assert httpx.get(f"{running.url}/readyz", timeout=WAIT_S).status_code == 200
        # nothing was built or stored for the refused request
        reports = running.daemon.store.list_evaluations(MODEL, kind="drift_report", limit=100)
        assert [r.payload["evaluation"] for r in reports] == [stored]
    finally:
        held.release.set()
        for t in builders:
            t.join(WAIT_S)
    assert [a.status_code for a in answers] == [200] * len(builders)
    # the slots are free again
    later = httpx.get(judged.report(unbuilt), headers=viewer, timeout=WAIT_S)
    assert later.status_code == 200, later.text[:300]


def test_a_build_that_fails_frees_its_slot(judged: Judged) -> None:
    """A build refused half-way (here: no reference to compare with) gives its slot
    back: more such requests than there are slots are each answered their own error."""
    running = judged.running
    running.daemon.evaluator.report_baseline = lambda champion, model: None  # type: ignore[method-assign]
    for _ in range(MAX_BUILDS_IN_PROGRESS + 2):
        r = httpx.get(
            judged.report(judged.drift_ids[0]), headers=running.auth("viewer"), timeout=WAIT_S
        )
        assert r.status_code == 404, r.text[:300]
        assert r.json()["code"] == "evaluation_not_found"


def test_the_api_documents_report_busy(judged: Judged) -> None:
    spec = httpx.get(f"{judged.running.url}/openapi.json", timeout=WAIT_S).json()
    route = spec["paths"]["/v1/models/{model}/evaluations/{evaluation_id}/report"]["get"]
    busy = route["responses"]["429"]
    assert "`report_busy`" in busy["description"]
    assert busy["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert busy["headers"]["Retry-After"]["schema"] == {"type": "integer"}
