"""The drift report of a verdict whose requests retention has since deleted, every one of
them, is 410 ``window_purged``, saying so, before anything is built.

It was 422 ``report_unavailable``, "evidently could not build the report …: no column has
usable data in both reference and current", which did not say that the rows were gone;
nothing was stored, so every request read the champion's reference and ran evidently
again. A verdict with only some of its rows purged is still reported, with a notice
(:mod:`tunewatch._drift_report_rows`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard.scenario import session_cookie
from tests.tunewatch.conftest import MODEL, Clock, Running, evaluating_daemon, feed
from tunewatch._background import BackgroundServer
from tunewatch._drift_report import WindowPurgedError
from tunewatch._example import ExampleModel
from tunewatch.store import ModelRow, VersionRow

WINDOW = 300
WAIT_S = 120  # a safety net for a broken build, never the thing a test measures


@dataclass
class Purged:
    running: Running
    drift_id: int
    before: datetime  # the purge's cut-off
    baselines_read: list[int]  # the versions a report build asked the baseline of

    def report(self) -> str:
        return f"{self.running.url}/v1/models/{MODEL}/evaluations/{self.drift_id}/report"


@pytest.fixture
def purged(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Purged]:
    """A served daemon with a drift verdict of requests three days old, all purged since
    by retention (records received before a day ago)."""
    daemon, tokens = evaluating_daemon(tmp_path, trained, window_rows=WINDOW)
    try:
        clock = Clock(datetime.now(UTC) - timedelta(days=3))
        daemon.evaluator.clock = clock
        feed(daemon, clock, 0, WINDOW, shift=1.0, seed=1)
        (drift,) = [r for r in daemon.evaluator.evaluate(MODEL) if r.kind == "drift"]
        assert drift.status == "ok" and drift.payload["n_current"] == WINDOW
        before = datetime.now(UTC) - timedelta(days=1)
        assert daemon.store.purge_records(before=before).requests == WINDOW
        read: list[int] = []
        report_baseline = daemon.evaluator.report_baseline

        def counted(champion: VersionRow, model: ModelRow) -> Any:
            read.append(champion.version)
            return report_baseline(champion, model)

        daemon.evaluator.report_baseline = counted  # type: ignore[method-assign]
        with BackgroundServer(daemon.app) as server:
            yield Purged(Running(daemon, server, tokens), drift.id, before, read)
    finally:
        daemon.close()


def test_the_report_of_a_purged_window_is_410_window_purged(purged: Purged) -> None:
    running = purged.running
    for _ in range(2):  # nothing is stored: asked again, the same answer, as quickly
        r = httpx.get(purged.report(), headers=running.auth("viewer"), timeout=WAIT_S)
        assert r.status_code == 410, r.text[:300]
        body = r.json()
        assert set(body) == {"error", "code"} and body["code"] == "window_purged"
        message = body["error"]
        judged = f"the requests drift evaluation {purged.drift_id} judged ({WINDOW} rows, "
        assert judged in message, message
        assert "deleted by retention" in message
        assert purged.before.isoformat() in message, message  # the purge's cut-off
    # refused before the build: no baseline read, no evidently run, nothing stored
    assert purged.baselines_read == []
    assert running.daemon.store.list_evaluations(MODEL, kind="drift_report") == []


def test_the_dashboard_s_page_of_a_purged_report_is_410(purged: Purged) -> None:
    running = purged.running
    cookie = session_cookie(running.url, running.tokens["viewer"])
    page = httpx.get(
        f"{running.url}/dashboard/models/{MODEL}/drift/{purged.drift_id}/report",
        cookies=cookie,
        timeout=WAIT_S,
    )
    assert page.status_code == 410, page.text[:300]
    assert page.headers["content-type"].startswith("text/html")
    assert "deleted by retention" in page.text


def test_the_error_names_the_verdict_and_its_requests(purged: Purged) -> None:
    with pytest.raises(WindowPurgedError) as info:
        purged.running.daemon.evaluator.drift_report(MODEL, purged.drift_id)
    error = info.value
    assert (error.model, error.evaluation_id, error.n_rows) == (MODEL, purged.drift_id, WINDOW)
    assert error.purged_before == purged.before


def test_the_api_documents_window_purged(purged: Purged) -> None:
    spec = httpx.get(f"{purged.running.url}/openapi.json", timeout=WAIT_S).json()
    route = spec["paths"]["/v1/models/{model}/evaluations/{evaluation_id}/report"]["get"]
    gone = route["responses"]["410"]
    assert "`window_purged`" in gone["description"]
    assert gone["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
