"""Reads of models and model versions, in the caller's transaction, and the lock on a
model's row that registrations and stage changes take (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises writers).

A model keeps every version a tuning job registered, each with its details (fold
scores, warm-start plan, importances: kilobytes each), so what serves a request reads
them a page at a time (:func:`version_page`), the served ones only
(:func:`lineup_versions`, and with those taken out of service since a time
:func:`versions_served_since`) or not at all (:func:`version_lineup`, :func:`lineups`,
and for a page of models :func:`model_page`); :func:`list_versions` reads them all, for
the callers that need every one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any, NoReturn, cast

from sqlalchemy import Connection, Join, Row, Select, and_, func, or_, select, true

from .._errors import InvalidValueError, NotFoundError
from ._registry_text import _FEATURE_NAME_RULE, _possible_name
from ._safe_ranges import decode as decode_safe_ranges
from ._schema import hyperparameter_sets, model_versions, models, promotion_safe_ranges
from ._types import STAGES, ModelRow, Stage, Task, VersionRow, check_choice

#: The stages a line-up serves: the champion answers, the shadows score alongside it.
_SERVED = ("champion", "shadow")


def get_model(conn: Connection, name: str) -> ModelRow:
    row = (
        conn.execute(_model_select().where(models.c.name == name)).one_or_none()
        if _possible_name(name)
        else None
    )
    if row is None:
        raise NotFoundError(f"model {name!r} is not registered", code="model_not_found")
    return _model(row)


def list_models(conn: Connection) -> list[ModelRow]:
    return [_model(r) for r in conn.execute(_model_select().order_by(models.c.name))]


def get_version(conn: Connection, model: str, version: int) -> VersionRow:
    row = (
        conn.execute(
            _version_select().where(
                model_versions.c.model == model, model_versions.c.version == version
            )
        ).one_or_none()
        if _possible_name(model)
        else None
    )
    if row is None:
        _refuse_missing_version(conn, model, version)
    return _version(row)


def _refuse_missing_version(conn: Connection, model: str, version: int) -> NoReturn:
    """404 ``model_not_found`` for an unknown model, else ``version_not_found``: a bare
    ``not_found`` (a comparison's history), or ``version_not_found`` for a model that does
    not exist, broke the documented codes."""
    known = (
        _possible_name(model)
        and conn.execute(select(models.c.name).where(models.c.name == model)).first()
    )
    if not known:
        raise NotFoundError(f"model {model!r} is not registered", code="model_not_found")
    raise NotFoundError(f"model {model!r} has no version {version}", code="version_not_found")


def get_versions(conn: Connection, model: str, versions: Sequence[int]) -> list[VersionRow]:
    """The versions ``versions`` of ``model`` in version order, read by one statement (so
    at one moment: a promotion is before or after all of them); refused if any is missing."""
    wanted = sorted(set(versions))
    rows = (
        conn.execute(
            _version_select()
            .where(model_versions.c.model == model, model_versions.c.version.in_(wanted))
            .order_by(model_versions.c.version)
        ).all()
        if wanted and _possible_name(model)
        else []
    )
    found = [_version(r) for r in rows]
    missing = sorted(set(wanted) - {v.version for v in found})
    if missing:
        named = ", ".join(map(str, missing))
        raise NotFoundError(f"model {model!r} has no version {named}")
    return found


def list_versions(conn: Connection, model: str, stage: str | None) -> list[VersionRow]:
    stmt = _version_select().where(model_versions.c.model == model)
    if stage is not None:
        check_choice("stage", stage, STAGES)
        stmt = stmt.where(model_versions.c.stage == stage)
    return [_version(r) for r in conn.execute(stmt.order_by(model_versions.c.version))]


def version_page(
    conn: Connection, model: str, *, limit: int, before: int | None = None
) -> list[VersionRow]:
    """The newest ``limit`` versions of ``model`` numbered below ``before`` (all of them
    when ``None``), newest first: a keyset page, read through the (model, version) index."""
    stmt = _version_select().where(model_versions.c.model == model)
    if before is not None:
        stmt = stmt.where(model_versions.c.version < before)
    stmt = stmt.order_by(model_versions.c.version.desc()).limit(limit)
    return [_version(r) for r in conn.execute(stmt)]


@dataclass(frozen=True, slots=True)
class VersionLineup:
    """A model's champion and shadow versions by number (in version order) and how many
    versions it has in all."""

    champion: int | None
    challengers: tuple[int, ...]
    total: int


def version_lineup(conn: Connection, model: str) -> VersionLineup:
    """``model``'s :class:`VersionLineup`, no version read whole: one statement, so at one
    moment on PostgreSQL too (the count left-joined with the champion's and shadows'
    numbers and stages, a row with no version when there are none)."""
    v = model_versions.c
    counted = select(func.count().label("total")).where(v.model == model).subquery()
    serving = (
        select(v.version, v.stage)
        .where(v.model == model, v.stage.in_(("champion", "shadow")))
        .subquery()
    )
    rows = conn.execute(
        select(counted.c.total, serving.c.version, serving.c.stage)
        .select_from(counted.outerjoin(serving, true()))
        .order_by(serving.c.version)
    ).all()
    return VersionLineup(
        champion=next((r.version for r in rows if r.stage == "champion"), None),
        challengers=tuple(r.version for r in rows if r.stage == "shadow"),
        total=int(rows[0].total),
    )


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """A model's row and its :class:`VersionLineup`, as a page of models lists it."""

    model: ModelRow
    lineup: VersionLineup


def model_page(conn: Connection, *, limit: int, after: str | None = None) -> list[ModelSummary]:
    """The first ``limit`` models named after ``after`` (from the first when ``None``),
    ascending by name compared code point by code point (as SQLite compares text; not in
    PostgreSQL's database collation, so a page is the same on both), each with its
    :class:`VersionLineup`: a keyset page, no version read whole. One statement, so at one
    moment on PostgreSQL too: the page's names, left-joined with each one's count of
    versions and its champion's and shadows' numbers and stages (a row with no version
    for a model serving none); its rows grow with the page's served versions, not with
    the versions the models retired. ``after`` need not name a model, but must be a name
    one could have (:class:`InvalidValueError` otherwise)."""
    if after is not None and not _possible_name(after):
        shown = after if len(after) <= 32 else after[:32] + "..."
        raise InvalidValueError(
            f"`after` {_FEATURE_NAME_RULE}, got {len(after)} characters: {shown!r}"
        )
    v = model_versions.c
    name = models.c.name.collate("C") if conn.dialect.name == "postgresql" else models.c.name
    named = select(models.c.name).order_by(name).limit(limit)
    if after is not None:
        named = named.where(name > after)
    page = named.subquery("page")  # not a CTE: a statement that begins with SELECT
    counted = (
        select(v.model, func.count().label("total"))
        .join(page, page.c.name == v.model)
        .group_by(v.model)
        .subquery()
    )
    serving = (
        select(v.model, v.version, v.stage)
        .join(page, page.c.name == v.model)
        .where(v.stage.in_(_SERVED))
        .subquery()
    )
    rows = conn.execute(
        select(models, _STORED_RANGES, counted.c.total, serving.c.version, serving.c.stage)
        .select_from(
            _models_with_ranges()
            .join(page, page.c.name == models.c.name)
            .outerjoin(counted, counted.c.model == models.c.name)
            .outerjoin(serving, serving.c.model == models.c.name)
        )
        .order_by(name, serving.c.version)
    ).all()
    out: list[ModelSummary] = []
    for _, group in groupby(rows, key=lambda r: r.name):
        model_rows = list(group)
        served = [(r.stage, r.version) for r in model_rows if r.version is not None]
        lineup = VersionLineup(
            champion=next((n for stage, n in served if stage == "champion"), None),
            challengers=tuple(n for stage, n in served if stage == "shadow"),
            total=int(model_rows[0].total or 0),
        )
        out.append(ModelSummary(model=_model(model_rows[0]), lineup=lineup))
    return out


def lineup_versions(conn: Connection, model: str) -> list[VersionRow]:
    """``model``'s champion and shadow versions, whole, in version order: one statement,
    so at one moment (a promotion is before or after all of them)."""
    stmt = _version_select().where(
        model_versions.c.model == model, model_versions.c.stage.in_(_SERVED)
    )
    return [_version(r) for r in conn.execute(stmt.order_by(model_versions.c.version))]


def versions_served_since(conn: Connection, model: str, since: datetime) -> list[VersionRow]:
    """``model``'s champion and shadow versions and those whose stage changed at or after
    ``since``, whole, in version order: the versions that can have answered since then (one
    taken out of service before answered nothing since). One statement: its rows grow
    with the versions the model took out of service since ``since``, not with all it
    retired."""
    if not _possible_name(model):
        return []
    v = model_versions.c
    stmt = _version_select().where(
        v.model == model, or_(v.stage.in_(_SERVED), v.stage_changed_at >= since)
    )
    return [_version(r) for r in conn.execute(stmt.order_by(v.version))]


@dataclass(frozen=True, slots=True)
class LineupVersion:
    """A champion or shadow version as a line-up names it: its number and artefact."""

    version: int
    artefact_sha256: str


@dataclass(frozen=True, slots=True)
class ModelLineup:
    """A model and its champion and shadow versions (in version order)."""

    model: ModelRow
    champion: LineupVersion | None
    challengers: tuple[LineupVersion, ...]


def lineups(conn: Connection) -> list[ModelLineup]:
    """Every model's :class:`ModelLineup`, by name, no version read whole: one statement,
    so at one moment on PostgreSQL too (each model left-joined with the numbers, stages
    and artefacts of its champion and shadows, a row with no version when there are
    none). What a scoring runtime compares its line-ups with every few seconds: its rows
    do not grow with the versions the models retired."""
    v = model_versions.c
    served = and_(v.model == models.c.name, v.stage.in_(_SERVED))
    rows = conn.execute(
        select(models, _STORED_RANGES, v.version, v.stage, v.artefact_sha256)
        .select_from(_models_with_ranges().outerjoin(model_versions, served))
        .order_by(models.c.name, v.version)
    ).all()
    out: list[ModelLineup] = []
    for _, group in groupby(rows, key=lambda r: r.name):
        model_rows = list(group)
        named = [
            (r.stage, LineupVersion(r.version, r.artefact_sha256))
            for r in model_rows
            if r.version is not None
        ]
        out.append(
            ModelLineup(
                model=_model(model_rows[0]),
                champion=next((n for stage, n in named if stage == "champion"), None),
                challengers=tuple(n for stage, n in named if stage == "shadow"),
            )
        )
    return out


def champion(conn: Connection, model: str) -> VersionRow | None:
    row = conn.execute(
        _version_select().where(
            model_versions.c.model == model, model_versions.c.stage == "champion"
        )
    ).one_or_none()
    return None if row is None else _version(row)


def _lock_model(conn: Connection, model: str) -> ModelRow:
    """Lock the model's row for the transaction and return it as it is now."""
    found = (
        conn.execute(
            _model_select().where(models.c.name == model).with_for_update(of=models)
        ).one_or_none()
        if _possible_name(model)
        else None
    )
    if found is None:
        raise NotFoundError(f"model {model!r} is not registered", code="model_not_found")
    return _model(found)


def _champion(conn: Connection, model: str) -> int | None:
    return conn.execute(
        select(model_versions.c.version).where(
            model_versions.c.model == model, model_versions.c.stage == "champion"
        )
    ).scalar_one_or_none()


def _version_select() -> Select[Any]:
    """Versions' rows, each with its set's parameters: the record of a version a replica
    of a release before revision 0027 registered during a rolling upgrade (it writes no
    record of the version's own, and puts it on the set of its spelling)."""
    return select(model_versions, hyperparameter_sets.c.params.label("set_params")).join(
        hyperparameter_sets, hyperparameter_sets.c.id == model_versions.c.hyperparameter_set_id
    )


#: The promotion safe ranges stored for a model (``_safe_ranges``), read with its row.
_STORED_RANGES = promotion_safe_ranges.c.ranges.label("stored_safe_ranges")


def _models_with_ranges() -> Join:
    return models.outerjoin(promotion_safe_ranges, promotion_safe_ranges.c.model == models.c.name)


def _model_select() -> Select[Any]:
    """Models' rows, each with the promotion safe ranges stored for it."""
    return select(models, _STORED_RANGES).select_from(_models_with_ranges())


def _model(row: Row[Any]) -> ModelRow:
    stored = row.stored_safe_ranges
    return ModelRow(
        name=row.name,
        task=cast(Task, row.task),
        feature_names=tuple(row.feature_names),
        regulated=bool(row.regulated),
        created_at=row.created_at,
        stored_safe_ranges=None if stored is None else decode_safe_ranges(stored),
    )


def _version(row: Row[Any]) -> VersionRow:
    return VersionRow(
        id=row.id,
        model=row.model,
        version=row.version,
        artefact_sha256=row.artefact_sha256,
        hyperparameter_set_id=row.hyperparameter_set_id,
        hyperparameters=dict(
            row.set_params if row.hyperparameters is None else row.hyperparameters
        ),
        dataset_version=row.dataset_version,
        parent_version=row.parent_version,
        study=row.study,
        stage=cast(Stage, row.stage),
        details=dict(row.details),
        size_bytes=row.size_bytes,
        load_memory_bytes=row.load_memory_bytes,
        created_at=row.created_at,
        stage_changed_at=row.stage_changed_at,
    )
