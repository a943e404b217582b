"""The leader's daily archiving of old Optuna studies (``tuning.archive_after_days``;
DESIGN.md §6: "old studies are archived, not lost"): a daemon-wide task of the
scheduler's (:class:`tunewatch._scheduler.Task`), as the retention purge is
(:mod:`tunewatch._retention_task`).

Which studies: those of this store's jobs that finished — succeeded, failed or were
cancelled, never a queued or running one — more than ``archive_after_days`` ago by the
database's clock: each job's study, named when it was queued (``spec.study``, which a
succeeded job's ``result.study`` repeats), and the outer studies of ``cv: nested``
(``<study>-outer<k>``, recorded in the job's ``nested``; any the storage holds, also one
a failed job began without recording). A study name is random per job
(``tunewatch.store._jobs.new_study_name``), so a study of another store sharing the
storage is never one of them — but for a store restored from a backup beside the
original, which holds the same jobs: stores sharing a tuning storage must share their
archive too (docs/configuration.md). Studies of jobs queued before jobs recorded their
study's name (``{model}-job{id}``, which another store's job may share) stay where they
are.

Each study is moved by :func:`retune.archive_study` (a copy, checked, then the deletion:
a run cut by a crash is finished by the next); warm start, the dashboard and the report
read a study missing from the tuning storage from the archive."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from retune import RetuneError, StudyStorageUnavailableError, archive_study, study_names
from tunewatch._errors import ConflictError
from tunewatch._renewed_lease import RenewedLease
from tunewatch.store import JobRow, Store

if TYPE_CHECKING:  # the scheduler imports this module: its Task is read at the call
    from tunewatch._scheduler import Task

logger = logging.getLogger(__name__)

#: The archiving task's name, the action its audit entries record, and its interval.
ARCHIVE_TASK = "archive_studies"
ARCHIVE_INTERVAL_S = 86_400.0
#: The store's lease a run holds (renewed by a thread of its own), and its time to live:
#: one run at a time, across processes.
LEASE_NAME = "archive_studies"
LEASE_TTL_S = 60.0
#: The job states a study is archived in: finished, never to run again.
FINISHED = ("succeeded", "failed", "cancelled")
#: When a store holds no archiving run yet: long past, so a new leader archives soon.
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)
#: The newest audit entries read for the last run (past stopped ones).
_LAST_RUNS = 10
#: Jobs read per page while looking for finished ones.
_PAGE = 500


@dataclass(frozen=True, kw_only=True)
class ArchiveRun:
    """What one run did: the studies it moved (name: trials moved), those it could not
    (name: the error), and how it ended: ``done``, ``stopped`` by a shutdown between
    studies, ``unavailable`` (a storage out of reach: the studies left are tried at
    the next run), ``busy`` (another run held the lease: nothing done) or ``lapsed``
    (this run's lease lapsed: it stopped before its next deletion)."""

    before: datetime
    archived: Mapping[str, int]
    failed: Mapping[str, str]
    outcome: Literal["done", "stopped", "unavailable", "busy", "lapsed"]


def archive_task(
    store: Store,
    *,
    storage: str,
    archive: str,
    archive_after_days: float,
    stop: threading.Event | None = None,
    now: Callable[[], datetime] | None = None,
) -> Task:
    """Archive, daily, the studies of this store's jobs finished more than
    ``archive_after_days`` ago (by ``now``, the database's clock by default) from the
    tuning ``storage`` into ``archive`` (:func:`archive_studies`). Each run that moves or
    fails to move a study is audited (``archive_studies``, actor ``scheduler``), and the
    newest such entry not stopped is when it last ran; a run with nothing to do is not
    (a new leader then looks again soon: one read of the store's jobs)."""
    from tunewatch._scheduler import Task

    def run() -> None:
        archive_studies(
            store,
            storage=storage,
            archive=archive,
            archive_after_days=archive_after_days,
            stop=stop,
            now=now,
        )

    def last_run() -> datetime:
        entries = store.audit_log(_LAST_RUNS, action=ARCHIVE_TASK, actor="scheduler")
        ran = (e.at for e in entries if e.details.get("outcome") == "done")
        return next(ran, _NEVER)

    return Task(ARCHIVE_TASK, ARCHIVE_INTERVAL_S, run, last_run)


def archive_studies(
    store: Store,
    *,
    storage: str,
    archive: str,
    archive_after_days: float,
    stop: threading.Event | None = None,
    now: Callable[[], datetime] | None = None,
) -> ArchiveRun:
    """One run: move the due studies (:func:`due_studies`), oldest job first, one at a
    time, under the store's lease :data:`LEASE_NAME` (a run of a leader that lost the
    scheduler's lease goes on to its end, and the new leader's, started meanwhile, met it
    on the same study: a partial copy one deleted while the other deleted the study lost
    it). A run finding the lease held does nothing (``busy``); one whose lease lapsed
    stops before its next deletion (``lapsed``). A study that fails is logged and
    recorded, and the others are moved; a storage out of reach ends the run (the next
    tries again). ``stop`` (the scheduler's shutdown) ends it between studies. Audited
    unless there was nothing to do."""
    before = (now or store.database_now)() - timedelta(days=archive_after_days)
    names = due_studies(store, storage, before=before)
    if not names:
        return ArchiveRun(before=before, archived={}, failed={}, outcome="done")
    try:
        with RenewedLease(store, LEASE_NAME, ttl_s=LEASE_TTL_S, what="archiving studies") as held:
            run = _move_all(storage, archive, names, before=before, stop=stop, lease=held)
    except ConflictError as exc:  # held by another run: it archives them
        logger.info("archiving studies skipped: %s", exc)
        return ArchiveRun(before=before, archived={}, failed={}, outcome="busy")
    store.append_audit(
        actor="scheduler",
        action=ARCHIVE_TASK,
        target="studies",
        details={
            "before": before.isoformat(),
            "outcome": run.outcome,
            "archived": dict(run.archived),
            "failed": dict(run.failed),
        },
    )
    logger.info(
        "archived %d studies of jobs finished before %s (%d trials)%s%s",
        len(run.archived),
        before.isoformat(),
        sum(run.archived.values()),
        f"; {len(run.failed)} failed" if run.failed else "",
        "" if run.outcome == "done" else f"; {run.outcome}",
    )
    return run


def _move_all(
    storage: str,
    archive: str,
    names: list[str],
    *,
    before: datetime,
    stop: threading.Event | None,
    lease: RenewedLease,
) -> ArchiveRun:
    """Move ``names`` in turn, the lease renewed before each deletion."""
    archived: dict[str, int] = {}
    failed: dict[str, str] = {}
    outcome: Literal["done", "stopped", "unavailable", "lapsed"] = "done"
    for name in names:
        if stop is not None and stop.is_set():
            outcome = "stopped"
            break
        try:
            archived[name] = archive_study(storage, archive, name, before_delete=lease.renew)
        except ConflictError as exc:  # the lease lapsed: another run may be moving them
            logger.warning("archiving studies stopped before deleting %s: %s", name, exc)
            outcome = "lapsed"
            break
        except StudyStorageUnavailableError as exc:  # every study's: tried at the next run
            logger.warning("archiving studies stopped: a storage is unavailable: %s", exc)
            failed[name] = f"{type(exc).__name__}: {exc}"
            outcome = "unavailable"
            break
        except RetuneError as exc:  # this study's: the others are archived
            logger.warning("study %s not archived (tried again at the next run): %s", name, exc)
            failed[name] = f"{type(exc).__name__}: {exc}"
    return ArchiveRun(before=before, archived=archived, failed=failed, outcome=outcome)


def due_studies(store: Store, storage: str, *, before: datetime) -> list[str]:
    """The studies in ``storage`` of this store's jobs finished before ``before``, oldest
    job first (its study, then its outer studies). The storage is not opened when no job
    is due."""
    jobs = sorted(_finished_before(store, before), key=lambda j: (j.finished_at, j.id))
    if not jobs:
        return []
    stored = study_names(storage)
    due: list[str] = []
    for job in jobs:
        main = job.spec.get("study")
        if not isinstance(main, str) or not main:  # queued before jobs named their study
            continue
        outer = re.compile(re.escape(main) + r"-outer\d+")
        due.extend(sorted(n for n in stored if n == main or outer.fullmatch(n)))
    return due


def _finished_before(store: Store, before: datetime) -> Iterator[JobRow]:
    """This store's jobs finished before ``before``, every page of them."""
    for status in FINISHED:
        cursor: int | None = None
        while True:
            page = store.list_jobs(status=status, limit=_PAGE, before_id=cursor)
            for job in page:
                if job.finished_at is not None and job.finished_at < before:
                    yield job
            if len(page) < _PAGE:
                break
            cursor = page[-1].id
