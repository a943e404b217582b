"""Queueing a job: the dedupe key, the model's active job, the cool-down and quota
checks, the study's name (:func:`new_study_name`) and the caller's audit entry
(:class:`JobAudit`), all in the job's one transaction (:func:`create_job`)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, String, func, select, update

from .._errors import ConflictError
from ._advisory import lock_in_schema
from ._audit import append_audit_in
from ._clock import db_now
from ._engine import dialect_insert
from ._job_rows import ACTIVE, JobRow, _clean, count_active, get_job
from ._schema import jobs, model_versions

# A job that ended so retuned nothing: it holds no cool-down (see create_job).
_ENDED_UNTUNED: tuple[str, ...] = ("failed", "cancelled")


@dataclass(frozen=True, slots=True)
class JobAudit:
    """The audit entry :func:`create_job` appends in the job's transaction: by ``actor``,
    ``action`` on ``target``, with the ``details`` given the job and whether it was
    created (``False``: the job queued before with the same dedupe key)."""

    actor: str
    action: str
    target: str
    details: Callable[[JobRow, bool], Mapping[str, Any]]


def new_study_name(model: str, job_id: int) -> str:
    """A new job's Optuna study name, ``{model}-job{id}-{8 hex digits}``. Job ids number
    per store: the random part keeps the study the job's own in an Optuna storage other
    stores use too (staging and prod sharing one, a store recreated or restored from a
    backup beside the old one), whose job of the same number it joined otherwise. A
    version row's ``study`` records it: a model's name too long to fit is cut, and ends
    with ``~`` and the first 16 hex digits of its sha256 (as a report's file name does,
    :func:`tunewatch._report.report_stem`), so models whose names share the cut part
    are told apart."""
    suffix = f"-job{job_id}-{secrets.token_hex(4)}"
    column = model_versions.c.study.type
    assert isinstance(column, String) and column.length is not None
    if len(model) + len(suffix) <= column.length:
        return model + suffix
    tail = f"~{hashlib.sha256(model.encode()).hexdigest()[:16]}{suffix}"
    return model[: column.length - len(tail)] + tail


def create_job(
    conn: Connection,
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
    audit: JobAudit | None = None,
) -> tuple[JobRow, bool]:
    """Queue a job; with ``dedupe_key``, a second call returns the first job and False.

    With ``one_active``, a job of the model and ``kind`` already queued or running is
    returned (and False), whatever the cool-down: the model's retune is under way, and
    a second job beside it took another model's quota slot. With ``max_active``, the job
    is refused (``ConflictError``, code ``quota``) when that many jobs are already
    queued or running; with ``cooldown``, when a job of the model that did not fail and
    was not cancelled was queued less than that long ago (code ``cooldown``): a failed or
    cancelled job retuned nothing, and held back the retune the model still needed. With
    ``cooldown_ignores``, a job whose trigger's ``event`` is that one does not count
    either: a standing schedule's run (``"schedule"``) is held back by the model's other
    retunes only, as the schedule sets its own cadence (its run, fired a period after the
    last, queued a few ms either side of a cool-down as long as the period measured from
    the last run's job, and half the runs were lost). All are checked and the job
    inserted in one serialised step (``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped
    advisory lock on PostgreSQL), so simultaneous triggers queue one job and cannot
    overshoot the quota.

    A job's queue time is the database's clock, and the cool-down is measured on it: the
    host queueing a job and the host deciding the next may be minutes apart (two hosts 10
    minutes apart ended a 5-minute cool-down the moment the slow one queued a job).

    A new job's ``spec`` records its study's name (``study``, :func:`new_study_name`),
    so every worker of the job, and every resumption, tunes the same study.

    With ``audit``, its entry is appended in the same transaction, for the job returned
    (new or found by its dedupe key): either both are written or neither is, so a caller
    told the write failed has queued nothing (the job was queued, then its audit append
    failed waiting for the chain's head, and the caller's retry queued a second job). A
    refused job (quota, cool-down) appends nothing: the caller audits that on its own."""
    job, created = _queue(
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
    )
    if audit is not None:
        append_audit_in(
            conn,
            actor=audit.actor,
            action=audit.action,
            target=audit.target,
            details=audit.details(job, created),
        )
    return job, created


def _queue(
    conn: Connection,
    *,
    model: str,
    kind: str,
    trigger: Mapping[str, Any],
    spec: Mapping[str, Any],
    dedupe_key: str | None,
    max_active: int | None,
    cooldown: timedelta | None,
    cooldown_ignores: str | None,
    one_active: bool,
) -> tuple[JobRow, bool]:
    """:func:`create_job`'s job: the one queued now (``True``) or before, with
    ``dedupe_key`` or (``one_active``) still active for the model (``False``)."""
    if max_active is not None or cooldown is not None or one_active:
        if conn.dialect.name == "postgresql":
            lock_in_schema(conn, "jobs")  # not the migrations' key: quotas waited out migrations
        if dedupe_key is not None:
            existing = conn.execute(
                select(jobs.c.id).where(jobs.c.dedupe_key == dedupe_key)
            ).scalar_one_or_none()
            if existing is not None:
                return get_job(conn, int(existing)), False
    if one_active:
        active = conn.execute(
            select(jobs.c.id)
            .where(jobs.c.model == model, jobs.c.kind == kind, jobs.c.status.in_(ACTIVE))
            .order_by(jobs.c.id.asc())
            .limit(1)
        ).scalar_one_or_none()
        if active is not None:
            return get_job(conn, int(active)), False
    if cooldown is not None:
        held = [
            jobs.c.model == model,
            jobs.c.status.not_in(_ENDED_UNTUNED),
            jobs.c.created_at >= db_now(conn, -cooldown),
        ]
        if cooldown_ignores is not None:
            # a job whose trigger names no event (or another) counts
            event = func.coalesce(jobs.c.trigger["event"].as_string(), "")
            held.append(event != cooldown_ignores)
        recent = conn.execute(
            select(jobs.c.id, jobs.c.created_at).where(*held).order_by(jobs.c.id.desc()).limit(1)
        ).first()
        if recent is not None:
            raise ConflictError(
                f"cooling down: job {recent.id} of {model!r} was queued at "
                f"{recent.created_at:%Y-%m-%d %H:%M:%S} UTC, within the cool-down",
                code="cooldown",
            )
    if max_active is not None:
        active = count_active(conn)
        if active >= max_active:
            raise ConflictError(
                f"quota: {active} tuning jobs active, at most {max_active}", code="quota"
            )
    stmt = (
        dialect_insert(conn, jobs)
        .values(
            model=model,
            kind=kind,
            status="queued",
            trigger=_clean(trigger, "trigger"),
            dedupe_key=dedupe_key,
            spec=_clean(spec, "spec"),
            progress={},
            created_at=db_now(conn),  # cool-downs compare it across hosts
        )
        .on_conflict_do_nothing(index_elements=[jobs.c.dedupe_key])
        .returning(jobs.c.id)
    )
    new_id = conn.execute(stmt).scalar_one_or_none()
    if new_id is not None:
        study = new_study_name(model, int(new_id))
        conn.execute(
            update(jobs)
            .where(jobs.c.id == new_id)
            .values(spec=_clean({**spec, "study": study}, "spec"))
        )
        return get_job(conn, int(new_id)), True
    existing = conn.execute(select(jobs.c.id).where(jobs.c.dedupe_key == dedupe_key)).scalar_one()
    return get_job(conn, int(existing)), False
