"""People's key/value tags on model versions (``version_tags``), in the caller's
transaction.

Each change is written with its audit entry (``set_tag`` or ``delete_tag``, target
``model/vN``, details: the key, the new value, ``None`` for a delete, and the previous
value, ``None`` for a new tag) in the same transaction: a tag no audit entry explains
cannot be stored. A write takes the model's lock (:func:`~._registry_reads._lock_model`)
first, so two writers adding tags to one version count each other's
(:data:`~tunewatch._tag_rules.MAX_TAGS`), and is refused for a missing model or version
as every version read is (``model_not_found``, ``version_not_found``). The tags are
checked against the convention (:mod:`tunewatch._tag_rules`) here too, so no caller of
the store writes one the API would refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, select, update

from .._errors import NotFoundError
from .._tag_rules import check_count, check_key, check_tag
from ._audit import append_audit_in
from ._registry_reads import _lock_model, get_version
from ._registry_text import _possible_name
from ._schema import audit_entries, version_tags
from ._types import utcnow

#: The audit actions of a tag's changes.
SET_ACTION = "set_tag"
DELETE_ACTION = "delete_tag"


@dataclass(frozen=True, slots=True)
class VersionTag:
    """One tag on a version, with who set it last and when."""

    key: str
    value: str
    set_by: str
    set_at: datetime


def set_version_tag(
    conn: Connection,
    model: str,
    version: int,
    key: str,
    value: str,
    *,
    actor: str,
) -> bool:
    """Set tag ``key`` of ``model``'s ``version`` to ``value`` (inserted, or its value
    replaced), audited; ``False``, and nothing written, when it holds ``value`` already."""
    check_tag(key, value)
    _lock_model(conn, model)
    get_version(conn, model, version)
    t = version_tags
    previous = conn.execute(
        select(t.c.value).where(t.c.model == model, t.c.version == version, t.c.key == key)
    ).scalar_one_or_none()
    if previous == value:
        return False
    now = utcnow()
    if previous is None:
        held = conn.execute(
            select(func.count()).where(t.c.model == model, t.c.version == version)
        ).scalar_one()
        check_count(model, version, key, held=held)
        conn.execute(
            t.insert().values(
                model=model, version=version, key=key, value=value, set_by=actor, set_at=now
            )
        )
    else:
        conn.execute(
            update(t)
            .where(t.c.model == model, t.c.version == version, t.c.key == key)
            .values(value=value, set_by=actor, set_at=now)
        )
    _audit(conn, SET_ACTION, model, version, key, value, previous, actor=actor)
    return True


def delete_version_tag(
    conn: Connection,
    model: str,
    version: int,
    key: str,
    *,
    actor: str,
) -> str:
    """Delete tag ``key`` of ``model``'s ``version``, audited, and return the value it
    held; ``NotFoundError`` (``tag_not_found``) when the version has no such tag."""
    check_key(key)
    _lock_model(conn, model)
    get_version(conn, model, version)
    t = version_tags
    previous = conn.execute(
        delete(t)
        .where(t.c.model == model, t.c.version == version, t.c.key == key)
        .returning(t.c.value)
    ).scalar_one_or_none()
    if previous is None:
        raise NotFoundError(
            f"version {version} of model {model!r} has no tag {key!r}", code="tag_not_found"
        )
    _audit(conn, DELETE_ACTION, model, version, key, None, previous, actor=actor)
    return str(previous)


def _audit(
    conn: Connection,
    action: str,
    model: str,
    version: int,
    key: str,
    value: str | None,
    previous: str | None,
    *,
    actor: str,
) -> None:
    append_audit_in(
        conn,
        actor=actor,
        action=action,
        target=f"{model}/v{version}",
        details={"key": key, "value": value, "previous": previous},
    )


def list_version_tags(conn: Connection, model: str, version: int) -> list[VersionTag]:
    """The tags of ``model``'s ``version`` by key (refused for a missing version)."""
    get_version(conn, model, version)
    t = version_tags
    rows = conn.execute(
        select(t.c.key, t.c.value, t.c.set_by, t.c.set_at)
        .where(t.c.model == model, t.c.version == version)
        .order_by(t.c.key)
    ).all()
    return [VersionTag(key=r.key, value=r.value, set_by=r.set_by, set_at=r.set_at) for r in rows]


def tags_of_versions(
    conn: Connection, model: str, versions: Sequence[int]
) -> dict[int, dict[str, str]]:
    """The tags of each of ``versions`` of ``model`` holding any, as ``{key: value}`` by
    key, read in one statement (a page of versions is shown with its tags); a version
    with none, or that does not exist, is left out."""
    wanted = sorted(set(versions))
    if not wanted or not _possible_name(model):
        return {}
    t = version_tags
    rows = conn.execute(
        select(t.c.version, t.c.key, t.c.value)
        .where(t.c.model == model, t.c.version.in_(wanted))
        .order_by(t.c.version, t.c.key)
    ).all()
    out: dict[int, dict[str, str]] = {}
    for r in rows:
        out.setdefault(r.version, {})[r.key] = r.value
    return out


def deleted_tag_keys(conn: Connection, model: str, version: int) -> set[str]:
    """The keys of the tags of ``model``'s ``version`` someone deleted (its ``delete_tag``
    audit entries): a bundle imported again does not put such a tag back."""
    rows = conn.execute(
        select(audit_entries.c.details).where(
            audit_entries.c.action == DELETE_ACTION,
            audit_entries.c.target == f"{model}/v{version}",
        )
    ).scalars()
    return {str(d["key"]) for d in rows if isinstance(d, dict) and "key" in d}
