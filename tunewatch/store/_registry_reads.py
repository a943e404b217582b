"""Reads of models and model versions, in the caller's transaction, and the lock on a
model's row that registrations and stage changes take (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises writers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection, Row, Select, select

from .._errors import NotFoundError
from ._registry_text import _possible_name
from ._schema import hyperparameter_sets, model_versions, models
from ._types import STAGES, ModelRow, Stage, Task, VersionRow, check_choice


def get_model(conn: Connection, name: str) -> ModelRow:
    row = (
        conn.execute(select(models).where(models.c.name == name)).one_or_none()
        if _possible_name(name)
        else None
    )
    if row is None:
        raise NotFoundError(f"model {name!r} is not registered", code="model_not_found")
    return _model(row)


def list_models(conn: Connection) -> list[ModelRow]:
    return [_model(r) for r in conn.execute(select(models).order_by(models.c.name))]


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
        raise NotFoundError(f"model {model!r} has no version {version}")
    return _version(row)


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
        conn.execute(select(models).where(models.c.name == model).with_for_update()).one_or_none()
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
    return select(model_versions, hyperparameter_sets.c.params).join(
        hyperparameter_sets, hyperparameter_sets.c.id == model_versions.c.hyperparameter_set_id
    )


def _model(row: Row[Any]) -> ModelRow:
    return ModelRow(
        name=row.name,
        task=cast(Task, row.task),
        feature_names=tuple(row.feature_names),
        regulated=bool(row.regulated),
        created_at=row.created_at,
    )


def _version(row: Row[Any]) -> VersionRow:
    return VersionRow(
        id=row.id,
        model=row.model,
        version=row.version,
        artefact_sha256=row.artefact_sha256,
        hyperparameter_set_id=row.hyperparameter_set_id,
        hyperparameters=dict(row.params),
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
