"""The drift reports of the windows a retention run deleted, removed after it
(:mod:`tunewatch._retention_task`): their ``drift_report`` evaluations and the files
they name (about 1.3 MB each, compressed; 4 MB before), which nothing else removes.

A report's window ending before the run's cut-off had its requests deleted by it: asked
for again, the report is answered as any such verdict's, 410 ``window_purged``
(:class:`tunewatch._drift_report.WindowPurgedError`). The drift verdict itself is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, select

from tunewatch._artefacts import ArtefactStore
from tunewatch._drift_report import REPORT_SUFFIX
from tunewatch.store import Store
from tunewatch.store._engine import transaction
from tunewatch.store._schema import artefacts as artefact_rows
from tunewatch.store._schema import evaluations

logger = logging.getLogger(__name__)

#: Ids or digests per statement: bounded, however many reports there are.
_CHUNK = 500


@dataclass(frozen=True)
class PurgedReports:
    """What :func:`purge_drift_reports` deleted: ``reports`` rows, ``files`` files."""

    reports: int
    files: int


def purge_drift_reports(
    store: Store, artefacts: ArtefactStore, *, before: datetime
) -> PurgedReports:
    """Delete the ``drift_report`` evaluations (of every model) whose window ended before
    ``before``, and the files they name that no report kept names (and, with a
    PostgreSQL store, its copies of them).

    The rows and the store's copies go in one transaction, the files under
    ``artefacts.root`` once it committed: a file left by a failure is only disk, where
    a row left without its file would be a report that cannot be read. Another host's
    cache of a file (a replica's, with a shared PostgreSQL store) is left to it."""
    e = evaluations.c
    with transaction(store.engine, "purge_drift_reports") as conn:
        purged = conn.execute(
            select(e.id, e.payload).where(e.kind == "drift_report", e.window_end < before)
        ).all()
        if not purged:
            return PurgedReports(0, 0)
        kept = conn.execute(
            select(e.payload).where(e.kind == "drift_report", e.window_end >= before)
        ).scalars()
        unnamed = sorted(_digests(p for _, p in purged) - _digests(kept))
        ids = [row_id for row_id, _ in purged]
        for start in range(0, len(ids), _CHUNK):
            conn.execute(delete(evaluations).where(e.id.in_(ids[start : start + _CHUNK])))
        if store.dialect != "sqlite":  # the store keeps artefacts' bytes (see ArtefactStore)
            _delete_shared(conn, unnamed)
    files = sum(_remove(artefacts, sha256) for sha256 in unnamed)
    logger.info(
        "deleted %d drift reports of windows ended before %s, and %d of their files",
        len(ids),
        before.isoformat(),
        files,
    )
    return PurgedReports(len(ids), files)


def _digests(payloads: Iterable[object]) -> set[str]:
    """The files the reports of ``payloads`` name."""
    return {
        sha256
        for payload in payloads
        if isinstance(payload, dict) and isinstance(sha256 := payload.get("sha256"), str)
    }


def _delete_shared(conn: Connection, digests: list[str]) -> None:
    a = artefact_rows.c
    for start in range(0, len(digests), _CHUNK):
        chunk = digests[start : start + _CHUNK]
        conn.execute(delete(artefact_rows).where(a.suffix == REPORT_SUFFIX, a.sha256.in_(chunk)))


def _remove(artefacts: ArtefactStore, sha256: str) -> bool:
    """Remove report file ``sha256`` from ``artefacts``; whether it was there. One that
    cannot be removed is logged and left (its row is gone: nothing reads it)."""
    path = artefacts.path(sha256, REPORT_SUFFIX)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        logger.warning("drift report file %s not removed: %s", path, exc)
        return False
    return True
