"""``JobsFront``: the store's job queue and alert episodes.

The part of :class:`~._store.Store` the workers and the alert receiver use: each method
opens one transaction and delegates to ``_jobs`` (the queue, claims and heartbeats),
``_job_cancel`` or ``_alert_episodes`` (one decision per firing alert).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from . import _alert_episodes, _job_cancel, _jobs
from ._front_base import StoreFront
from ._jobs import JobRow, JobStatus


class JobsFront(StoreFront):
    """Jobs (``_jobs``, ``_job_cancel``) and alert episodes (``_alert_episodes``)."""

    def create_job(
        self,
        *,
        model: str,
        kind: str,
        trigger: Mapping[str, Any],
        spec: Mapping[str, Any],
        dedupe_key: str | None = None,
        max_active: int | None = None,
        cooldown: timedelta | None = None,
        cooldown_ignores: str | None = None,
        one_active: bool = False,
        audit: _jobs.JobAudit | None = None,
    ) -> tuple[JobRow, bool]:
        """Queue a job; ``(job, created)``. A repeated ``dedupe_key`` returns the first;
        with ``one_active``, so does a job of the model and ``kind`` queued or running.
        ``ConflictError`` with code ``quota`` when ``max_active`` jobs are queued or
        running already, ``cooldown`` when a job of the model that neither failed nor was
        cancelled was queued less than ``cooldown`` ago by the database's clock (a job
        whose trigger's ``event`` is ``cooldown_ignores`` not counted); all checked
        atomically with the insert.
        With ``audit``, its entry for the job returned is appended in the same transaction
        (see :func:`._jobs.create_job`): a failure queues nothing."""
        with self._tx("create_job") as conn:
            return _jobs.create_job(
                conn,
                model=model,
                kind=kind,
                trigger=trigger,
                spec=spec,
                dedupe_key=dedupe_key,
                max_active=max_active,
                cooldown=cooldown,
                cooldown_ignores=cooldown_ignores,
                one_active=one_active,
                audit=audit,
            )

    def get_job(self, job_id: int) -> JobRow:
        with self._read("get_job") as conn:
            return _jobs.get_job(conn, job_id)

    def list_jobs(
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        limit: int = 100,
        oldest_first: bool = False,
        before_id: int | None = None,
    ) -> list[JobRow]:
        """Jobs newest first (or oldest first), at most ``limit``; with ``before_id`` only
        those older than that job (a lower id), the cursor of the next older page."""
        with self._read("list_jobs") as conn:
            return _jobs.list_jobs(
                conn,
                model=model,
                status=status,
                limit=limit,
                oldest_first=oldest_first,
                before_id=before_id,
            )

    def count_active_jobs(self, model: str | None = None) -> int:
        with self._read("count_active_jobs") as conn:
            return _jobs.count_active(conn, model)

    def claim_job(
        self, job_id: int, worker: str, *, alive_within: timedelta | None = None
    ) -> JobRow:
        """Run or join job ``job_id`` as ``worker``; with ``alive_within``, a job another
        worker heartbeated within it stays that worker's (see :func:`_jobs.claim_job`)."""
        with self._tx("claim_job") as conn:
            return _jobs.claim_job(conn, job_id, worker, alive_within=alive_within)

    def requeue_job(self, job_id: int, worker: str) -> bool:
        with self._tx("requeue_job") as conn:
            return _jobs.requeue_job(conn, job_id, worker)

    def update_job_progress(
        self, job_id: int, progress: Mapping[str, Any], *, spec: Mapping[str, Any] | None = None
    ) -> None:
        """Merge ``progress`` (and ``spec``) into a running job's (see
        :func:`_jobs.update_progress`): the row read in a read transaction, written in a
        write transaction of one ``UPDATE``."""
        _jobs.update_progress(
            lambda: self._read("update_job_progress"),
            lambda: self._tx("update_job_progress"),
            job_id,
            progress,
            spec=spec,
        )

    def record_job_window_start(self, job_id: int, start: datetime) -> None:
        """Record when running job ``job_id``'s training window begins, unless recorded
        before (see :func:`_jobs.record_window_start`)."""
        with self._tx("record_job_window_start") as conn:
            _jobs.record_window_start(conn, job_id, start)

    def earliest_job_window_start(self) -> tuple[int, datetime] | None:
        """The earliest training window start a queued or running job recorded, and the
        job's id (see :func:`_jobs.earliest_window_start`): the retention purge deletes
        nothing received from then on."""
        with self._read("earliest_job_window_start") as conn:
            return _jobs.earliest_window_start(conn)

    def cancel_job(self, job_id: int, *, actor: str, reason: str) -> JobRow:
        """Cancel a queued or running job, audited as ``cancel_job`` in the same
        transaction (see :func:`_job_cancel.cancel_job`): ``job_not_found``, or ``job_finished``
        for one already finished or whose study registered its version."""
        with self._tx("cancel_job") as conn:
            return _job_cancel.cancel_job(conn, job_id, actor=actor, reason=reason)

    def heartbeat_job(self, job_id: int) -> None:
        """A running job's worker is alive (see :meth:`requeue_stale_jobs`)."""
        with self._tx("heartbeat_job") as conn:
            _jobs.heartbeat(conn, job_id)

    def requeue_stale_jobs(self, *, older_than: timedelta, max_crashes: int) -> list[JobRow]:
        """Queue again (or fail, past ``max_crashes``) the running jobs with no heartbeat
        for ``older_than`` (:func:`_jobs.requeue_stale`); returns them. Looks first in a
        read, so the usual case takes no write lock (on SQLite, the one the scoring log's
        writer needs)."""
        with self._read("requeue_stale_jobs") as conn:
            if not _jobs.any_stale(conn, older_than):
                return []
        with self._tx("requeue_stale_jobs") as conn:
            return _jobs.requeue_stale(conn, older_than, max_crashes)

    def requeue_crashed_job(self, job: JobRow, *, error: str, max_crashes: int) -> JobRow | None:
        """See :func:`_jobs.requeue_crashed`."""
        with self._tx("requeue_crashed_job") as conn:
            return _jobs.requeue_crashed(conn, job, error=error, max_crashes=max_crashes)

    def finish_job(
        self,
        job_id: int,
        *,
        status: JobStatus,
        result: Mapping[str, Any] | None = None,
        error: str | None = None,
        replacing: tuple[str, ...] = _jobs.ACTIVE,
        worker: str | None = None,
    ) -> JobRow:
        """See :func:`_jobs.finish_job`."""
        with self._tx("finish_job") as conn:
            return _jobs.finish_job(
                conn,
                job_id,
                status=status,
                result=result,
                error=error,
                replacing=replacing,
                worker=worker,
            )

    def claim_alert_episode(
        self,
        *,
        fingerprint: str,
        starts_at: str,
        model: str | None,
        alertname: str,
        labels: Mapping[str, Any],
        stale_after: timedelta = _alert_episodes.CLAIM_TIMEOUT,
        started: datetime | None = None,
    ) -> str | None:
        """Store a firing episode and claim it for this delivery: the claim while it
        still needs a decision, None when it is decided, resolved or held by another
        delivery (at-least-once and concurrent delivery). ``started``: the database's
        time as the delivery began (:meth:`database_now`), which a resolve must precede
        by ``REFIRE_AFTER`` for the delivery to reopen it. See
        :func:`_alert_episodes.claim_alert_episode`."""
        with self._tx("claim_alert_episode") as conn:
            return _alert_episodes.claim_alert_episode(
                conn,
                fingerprint=fingerprint,
                starts_at=starts_at,
                model=model,
                alertname=alertname,
                labels=labels,
                stale_after=stale_after,
                started=started,
            )

    def alert_episode_state(
        self, *, fingerprint: str, starts_at: str, owed: str, started: datetime | None = None
    ) -> _alert_episodes.EpisodeState:
        """What a firing delivery has to do with the episode (``settled``, ``held`` or
        ``open``), read without taking a write lock: a decided one needs no write. See
        :func:`_alert_episodes.alert_episode_state`."""
        with self._read("alert_episode_state") as conn:
            return _alert_episodes.alert_episode_state(
                conn, fingerprint=fingerprint, starts_at=starts_at, owed=owed, started=started
            )

    def claim_owed_alert_episode(
        self, *, fingerprint: str, starts_at: str, owed: str
    ) -> str | None:
        """Claim a firing episode whose retune is owed (its decision is ``owed``) for this
        delivery's retry; None when it is not owed or another delivery holds it. See
        :func:`_alert_episodes.claim_owed_alert_episode`."""
        with self._tx("claim_owed_alert_episode") as conn:
            return _alert_episodes.claim_owed_alert_episode(
                conn, fingerprint=fingerprint, starts_at=starts_at, owed=owed
            )

    def alert_episode_claimed(self, *, fingerprint: str, starts_at: str) -> bool:
        """Whether a delivery holds this firing episode's claim: it is being decided, or
        the delivery died before it could release it (taken over after the timeout)."""
        with self._read("alert_episode_claimed") as conn:
            return _alert_episodes.alert_episode_claimed(
                conn, fingerprint=fingerprint, starts_at=starts_at
            )

    def settle_alert_episode(
        self,
        *,
        fingerprint: str,
        starts_at: str,
        claim: str,
        decision: str | None,
        firing: bool = False,
    ) -> bool:
        """The final ``decision`` of a claimed episode, or None to release it; with
        ``firing``, only while it fires."""
        with self._tx("settle_alert_episode") as conn:
            return _alert_episodes.settle_alert_episode(
                conn,
                fingerprint=fingerprint,
                starts_at=starts_at,
                claim=claim,
                decision=decision,
                firing=firing,
            )

    def resolve_alert_episode(
        self, *, fingerprint: str, starts_at: str
    ) -> _alert_episodes.ResolveOutcome:
        with self._tx("resolve_alert_episode") as conn:
            return _alert_episodes.resolve_alert_episode(
                conn, fingerprint=fingerprint, starts_at=starts_at
            )
