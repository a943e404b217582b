"""Each comparison evidence row of a rationale report names the test that decided (its id,
as GET /v1/models/{m}/comparisons lists it, and its kind when the event holds one)."""

from __future__ import annotations

from pathlib import Path

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._example import ExampleModel
from tunewatch._report import build_report


def _evidence_rows(markdown: str) -> dict[str, str]:
    """The evidence table's rows, by event: their details cell."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if len(cells) == 3 and cells[0].startswith("| ") and "=" in cells[2]:
            rows[cells[0][2:]] = cells[2].removesuffix(" |")
    return rows


def test_evidence_rows_name_the_test_that_decided_and_its_kind(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The comparison loop's events hold the test as `test_id` (and its `kind`); the
    report read `test`, and a promotion's or a rollback's evidence named no test."""
    daemon, _ = make_daemon(tmp_path, trained)  # v1 champion, v2 shadow
    try:
        store = daemon.store
        store.add_event(
            model=MODEL,
            type="challenger_better",
            payload={
                "test_id": 7,
                "kind": "paired",
                "champion_version": 1,
                "challenger_version": 2,
                "estimate": -0.5,
                "n": 400,
            },
        )
        store.add_event(
            model=MODEL,
            type="rollback_triggered",
            payload={"test_id": 8, "version": 2, "previous": 1, "n": 90},
        )
        # as an event of an older format names it
        store.add_event(
            model=MODEL,
            type="rollback_failed",
            payload={"test": 5, "version": 2, "previous": 1, "error": "e"},
        )
        rows = _evidence_rows(build_report(store, daemon.config, MODEL, 2).markdown())
        assert rows["challenger_better"].startswith("test=7 (paired); champion_version=1;")
        assert rows["rollback_triggered"].startswith("test=8; previous=1;")
        assert rows["rollback_failed"].startswith("test=5; previous=1;")
    finally:
        daemon.close()
