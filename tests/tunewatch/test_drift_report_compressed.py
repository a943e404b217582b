"""A drift report is stored gzip-compressed (evidently's page is ~4 MB, its gzip ~1.3 MB)
and served the same to every client: as stored, ``Content-Encoding: gzip``, to one that
accepts gzip; decompressed to one that does not. A report stored before, plain HTML,
is still served.

Every report was stored as plain HTML and nothing removed one: 83 reports took the
artefact directory to 338 MiB, 3.5 times the whole store."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Clock, Running, evaluating_daemon, feed
from tunewatch._background import BackgroundServer
from tunewatch._drift_report import DRIFT_REPORT_HEADERS
from tunewatch._example import ExampleModel

WINDOW = 200  # a small window: evidently's build stays quick
WAIT_S = 120  # a safety net for a broken build, never the thing a test measures


@dataclass
class Judged:
    running: Running
    drift_id: int

    def report(self) -> str:
        return f"{self.running.url}/v1/models/{MODEL}/evaluations/{self.drift_id}/report"

    def get(self, accept_encoding: str) -> httpx.Response:
        headers = {**self.running.auth("viewer"), "Accept-Encoding": accept_encoding}
        return httpx.get(self.report(), headers=headers, timeout=WAIT_S)

    def wire_bytes(self, accept_encoding: str) -> int:
        """How many bytes of the report's body went over the wire."""
        headers = {**self.running.auth("viewer"), "Accept-Encoding": accept_encoding}
        with httpx.stream("GET", self.report(), headers=headers, timeout=WAIT_S) as r:
            return sum(len(chunk) for chunk in r.iter_raw())


@pytest.fixture
def judged(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Judged]:
    """A served daemon with one stored drift verdict, its report unbuilt."""
    daemon, tokens = evaluating_daemon(tmp_path, trained, window_rows=WINDOW)
    try:
        clock = Clock()
        daemon.evaluator.clock = clock
        feed(daemon, clock, 0, WINDOW, shift=1.0, seed=2)
        (drift,) = [r for r in daemon.evaluator.evaluate(MODEL) if r.kind == "drift"]
        assert drift.status == "ok"
        with BackgroundServer(daemon.app) as server:
            yield Judged(Running(daemon, server, tokens), drift.id)
    finally:
        daemon.close()


def test_a_built_report_is_stored_gzip_compressed(judged: Judged) -> None:
    daemon = judged.running.daemon
    page = daemon.evaluator.drift_report(MODEL, judged.drift_id)

    (row,) = daemon.store.list_evaluations(MODEL, kind="drift_report")
    stored = daemon.artefacts.get(row.payload["sha256"], ".html")
    assert row.payload["encoding"] == "gzip"
    assert len(stored) < len(page.encode()) / 2
    assert gzip.decompress(stored).decode() == page
    # served again from the stored file, the same page
    assert daemon.evaluator.drift_report(MODEL, judged.drift_id) == page


def test_the_report_is_the_same_to_clients_accepting_gzip_or_not(judged: Judged) -> None:
    zipped = judged.get("gzip, deflate")
    plain = judged.get("identity")

    for r in (zipped, plain):
        assert r.status_code == 200, r.text[:300]
        assert r.headers["content-type"].startswith("text/html")
        for name, value in DRIFT_REPORT_HEADERS.items():
            assert r.headers[name] == value
        assert "accept-encoding" in r.headers["vary"].lower()
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.text == plain.text and "<html" in plain.text.lower()
    # the stored bytes went over the wire to the client accepting gzip
    assert judged.wire_bytes("gzip") < len(plain.content) / 2
    assert judged.wire_bytes("identity") == len(plain.content)
    # gzip refused (q=0) is as not accepted
    assert "content-encoding" not in judged.get("gzip;q=0, identity").headers
    assert judged.get("*").headers["content-encoding"] == "gzip"


def test_a_report_stored_plain_before_is_still_served(judged: Judged) -> None:
    daemon = judged.running.daemon
    drift = daemon.store.get_evaluation(MODEL, judged.drift_id)
    old = "<!DOCTYPE html><html><body><p>a report stored as plain HTML</p></body></html>"
    sha = daemon.artefacts.put(old.encode(), ".html")
    daemon.store.add_evaluation(  # as reports were stored before they were compressed
        model=MODEL,
        version=drift.version,
        kind="drift_report",
        status="ok",
        window_start=drift.window_start,
        window_end=drift.window_end,
        payload={"evaluation": drift.id, "sha256": sha, "drifted_columns": []},
    )

    assert daemon.evaluator.drift_report(MODEL, drift.id) == old
    for accept in ("gzip", "identity"):
        r = judged.get(accept)
        assert r.status_code == 200, r.text[:300]
        assert r.text == old
        assert (
            r.headers["content-security-policy"] == DRIFT_REPORT_HEADERS["Content-Security-Policy"]
        )
