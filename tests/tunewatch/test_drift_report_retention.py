"""The retention purge removes the drift reports of the windows it deleted: their
``drift_report`` rows and their files (and, on PostgreSQL, the store's copy), unless a
report kept names the same file. The report is then answered as for any verdict whose
requests were purged: 410 ``window_purged``.

Nothing removed a report (~4 MB each): 83 reports took the artefact directory to
338 MiB, 3.5 times the whole store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.tunewatch.conftest import MODEL, Clock, Running, feed, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._drift_report import REPORT_SUFFIX
from tunewatch._example import ExampleModel
from tunewatch._retention_task import PURGE_TASK, purge_task
from tunewatch.store import EvaluationRow
from tunewatch.store._schema import artefacts as artefact_rows

WINDOW = 200  # a small window: evidently's build stays quick
WAIT_S = 120  # a safety net for a broken build, never the thing a test measures
RETENTION_DAYS = 1.0


@dataclass
class Reported:
    running: Running
    old: EvaluationRow  # a drift verdict of requests three days old, its report built
    sha256: str  # its report's file

    def report(self, evaluation_id: int) -> httpx.Response:
        url = f"{self.running.url}/v1/models/{MODEL}/evaluations/{evaluation_id}/report"
        return httpx.get(url, headers=self.running.auth("viewer"), timeout=WAIT_S)

    def stored_copies(self, sha256: str) -> int:
        """Rows of the store's artefact table under ``sha256`` (PostgreSQL keeps them)."""
        with self.running.daemon.store.engine.connect() as conn:
            rows = conn.execute(
                select(artefact_rows.c.sha256).where(artefact_rows.c.sha256 == sha256)
            )
            return len(rows.all())

    def purge(self) -> None:
        """The daemon's own scheduled purge (``recording.retention_days``)."""
        daemon = self.running.daemon
        (task,) = [t for t in daemon.scheduler.tasks if t.name == PURGE_TASK]
        task.run()


@pytest.fixture
def reported(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Reported]:
    daemon, tokens = make_daemon(
        tmp_path,
        trained,
        store_url=store_url,
        extra={
            "scheduler": {"enabled": False},
            "recording": {"retention_days": RETENTION_DAYS},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "evaluation": {
                        "window_rows": WINDOW,
                        "label_delay_alarm_s": 3600,
                        "decay": {"window_s": 3600, "horizon_windows": 6, "maturity_s": 3600},
                    },
                }
            ],
        },
    )
    try:
        clock = Clock(datetime.now(UTC) - timedelta(days=3))
        daemon.evaluator.clock = clock
        feed(daemon, clock, 0, WINDOW, shift=1.0, seed=1)
        (old,) = [r for r in daemon.evaluator.evaluate(MODEL) if r.kind == "drift"]
        assert old.status == "ok"
        daemon.evaluator.drift_report(MODEL, old.id)
        (row,) = daemon.store.list_evaluations(MODEL, kind="drift_report")
        with BackgroundServer(daemon.app) as server:
            yield Reported(Running(daemon, server, tokens), old, row.payload["sha256"])
    finally:
        daemon.close()


def test_a_purge_past_its_window_removes_the_report_row_and_file(reported: Reported) -> None:
    daemon = reported.running.daemon
    path = daemon.artefacts.path(reported.sha256, REPORT_SUFFIX)
    assert path.is_file()
    assert reported.report(reported.old.id).status_code == 200
    shared = daemon.store.dialect != "sqlite"
    assert reported.stored_copies(reported.sha256) == (1 if shared else 0)

    reported.purge()

    assert daemon.store.list_evaluations(MODEL, kind="drift_report") == []
    assert not path.exists()
    assert reported.stored_copies(reported.sha256) == 0
    r = reported.report(reported.old.id)
    assert r.status_code == 410, r.text[:300]
    assert r.json()["code"] == "window_purged"
    # the verdict itself is kept: only its report went
    assert daemon.store.get_evaluation(MODEL, reported.old.id).kind == "drift"


def test_a_report_within_retention_and_a_file_it_shares_are_kept(reported: Reported) -> None:
    daemon = reported.running.daemon
    recent = datetime.now(UTC) - timedelta(hours=1)
    kept = daemon.store.add_evaluation(  # a later report naming the same file
        model=MODEL,
        version=reported.old.version,
        kind="drift_report",
        status="ok",
        window_start=recent - timedelta(minutes=5),
        window_end=recent,
        payload={"evaluation": 10**6, "sha256": reported.sha256, "encoding": "gzip"},
    )

    reported.purge()

    assert [r.id for r in daemon.store.list_evaluations(MODEL, kind="drift_report")] == [kept.id]
    assert daemon.artefacts.path(reported.sha256, REPORT_SUFFIX).is_file()
    shared = daemon.store.dialect != "sqlite"
    assert reported.stored_copies(reported.sha256) == (1 if shared else 0)


def test_without_the_artefact_store_the_purge_leaves_reports(reported: Reported) -> None:
    """A report's row is not deleted when its file cannot be: the file would be left
    with nothing naming it."""
    daemon = reported.running.daemon
    purge_task(daemon.store, RETENTION_DAYS).run()

    assert len(daemon.store.list_evaluations(MODEL, kind="drift_report")) == 1
    assert daemon.artefacts.path(reported.sha256, REPORT_SUFFIX).is_file()
