"""A drift report's file deleted or damaged since it was built is built again while its
window's requests are kept: a report is derived data.

It was a permanent 500 ``store_error`` (damaged), or a permanent 404 ``not_found`` whose
message showed a viewer the data directory's path ("artefact … is missing from
/…/data/artefacts"). The path is in the daemon's log only."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Clock, Running, evaluating_daemon, feed
from tunewatch._background import BackgroundServer
from tunewatch._drift_report import REPORT_SUFFIX
from tunewatch._example import ExampleModel

WINDOW = 300
WAIT_S = 120  # a safety net for a broken build, never the thing a test measures

#: how a report's file is damaged: deleted, or its content changed
DAMAGES = ["deleted", "overwritten"]


@pytest.fixture
def reported(trained: list[ExampleModel], tmp_path: Path) -> Iterator[tuple[Running, int]]:
    """A served daemon with a drift verdict whose window's requests are kept: the daemon
    and the verdict's id."""
    daemon, tokens = evaluating_daemon(tmp_path, trained, window_rows=WINDOW)
    try:
        clock = Clock(datetime.now(UTC) - timedelta(hours=6))
        daemon.evaluator.clock = clock
        feed(daemon, clock, 0, WINDOW, shift=1.0, seed=1)
        (drift,) = [r for r in daemon.evaluator.evaluate(MODEL) if r.kind == "drift"]
        assert drift.status == "ok"
        with BackgroundServer(daemon.app) as server:
            yield Running(daemon, server, tokens), drift.id
    finally:
        daemon.close()


def _report_files(running: Running, drift_id: int) -> list[Path]:
    """The files of the report rows stored for ``drift_id``, newest row first."""
    rows = running.daemon.store.list_evaluations(MODEL, kind="drift_report")
    return [
        running.daemon.artefacts.path(r.payload["sha256"], REPORT_SUFFIX)
        for r in sorted(rows, key=lambda r: -r.id)
        if r.payload.get("evaluation") == drift_id
    ]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_drift_report_whose_file_is_gone_or_damaged_is_built_again_without_showing_its_path(
    reported: tuple[Running, int], how: str, caplog: pytest.LogCaptureFixture
) -> None:
    running, drift_id = reported
    url = f"{running.url}/v1/models/{MODEL}/evaluations/{drift_id}/report"
    viewer = running.auth("viewer")
    first = httpx.get(url, headers=viewer, timeout=WAIT_S)
    assert first.status_code == 200, first.text
    (path,) = _report_files(running, drift_id)
    if how == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"tampered")
    caplog.set_level(logging.WARNING, logger="tunewatch")
    again = httpx.get(url, headers=viewer, timeout=WAIT_S)
    assert again.status_code == 200, again.text
    assert "<html" in again.text
    data_dir = str(running.daemon.config.data_dir)
    assert data_dir not in again.text
    logged = [r.getMessage() for r in caplog.records if r.name == "tunewatch._drift_report"]
    assert any(f"evaluation={drift_id}" in m and str(path) in m for m in logged), logged
    # the report built again is what later reads find: read, not built a third time
    files = _report_files(running, drift_id)
    assert files[0].is_file()
    caplog.clear()
    third = httpx.get(url, headers=viewer, timeout=WAIT_S)
    assert third.status_code == 200 and third.text == again.text
    assert _report_files(running, drift_id) == files
    assert not [r for r in caplog.records if r.name == "tunewatch._drift_report"]
