"""The append-only, hash-chained audit log.

Each entry's ``hash`` is ``sha256(prev_hash + canonical_json({at, actor, action,
target, details}))`` and ``prev_hash`` is the previous entry's hash (64 zeros for the
first). Appends update the single ``audit_head`` row in the same transaction: on
PostgreSQL that row lock serialises concurrent appenders, on SQLite ``BEGIN IMMEDIATE``
already does; so serialised, each takes the id after the newest, and the ids run without
a hole (a missing one would read as a removed entry).

The database itself (triggers installed by the migrations) refuses UPDATE, DELETE and
TRUNCATE on ``audit_entries``, and on SQLite an INSERT over an existing id or hash
(``INSERT OR REPLACE`` deletes without firing DELETE triggers) or below the last id; it
lets ``audit_head`` move only forward, to the hash of an entry whose ``prev_hash`` is the
old head. Without a key the chain cannot tell a rewrite from the original, so
:func:`verify_audit` also checks that the log ends at ``audit_head``: whoever bypasses the
triggers to remove or rewrite the newest entries must rewrite the head as well.

Whoever bypasses them on SQLite can also store a value of another type than the column's
(a BLOB actor, text that is not UTF-8, a time or JSON that does not parse). Rows are read
raw there and decoded column by column: such a row is a break (``hash``: its contents
cannot be read, so its hash cannot be recomputed), and the log lists it with
:data:`UNREADABLE` in place of what could not be read (see :func:`audit_log`).

Text UTF-8 cannot encode (a lone surrogate: a byte of a file name or an argument the locale
could not decode reaches Python as one) is stored with its backslash escape (``'\\\\udce4'``
for ``'\\udce4'``), in the actor, the action, the target and anywhere in the details (keys
too), and hashed as stored. An entry stored before that with such text in its details
(SQLite's and PostgreSQL's JSON hold it as an escape) is listed escaped the same way and
verified as stored: it made every page holding it fail to serialise, for ever.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, LargeBinary, and_, case, cast, func, or_, select, update
from sqlalchemy.engine import Dialect, RowMapping

from ._canonical import canonical_json, json_roundtrip
from ._events import holds_nul
from ._schema import ZERO_HASH, audit_entries, audit_head
from ._types import AuditBreak, AuditEntry, utcnow

#: What :func:`audit_log` shows for a text column it cannot read, and for such a time,
#: the epoch; the entry's ``details`` then say what was stored (``{"unreadable":
#: {column: why}, "details": the stored details, when they could be read}``).
UNREADABLE = "<unreadable>"
UNREADABLE_AT = datetime(1970, 1, 1, tzinfo=UTC)

_TEXT_COLUMNS = ("actor", "action", "target", "prev_hash", "hash")

#: One value standing for the actor of every tuning job (each audited as ``job:<id>``,
#: an actor of its own): :func:`audit_facets` lists them as this one value, and
#: :func:`audit_log` filtered by it lists all of their entries.
JOB_ACTORS = "job:*"
_JOB_PREFIX = "job:"
#: The most values :func:`audit_facets` lists for each filter: the most recent.
FACET_LIMIT = 20
#: How many of the newest entries of the log :func:`audit_facets` reads (by id: the read
#: is bounded however long the log grows; it scanned all of it, twice, on every view).
FACET_WINDOW = 10_000

#: What UTF-8 cannot encode: a lone surrogate code point.
_UNENCODABLE = re.compile(r"[\ud800-\udfff]")


def entry_hash(
    prev_hash: str, *, at: datetime, actor: str, action: str, target: str, details: Any
) -> str:
    body = canonical_json(
        {
            "at": at.isoformat(),
            "actor": actor,
            "action": action,
            "target": target,
            "details": details,
        }
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def append_audit_in(
    conn: Connection, *, actor: str, action: str, target: str, details: Mapping[str, Any]
) -> AuditEntry:
    """Append one entry inside the caller's transaction, its id one past the newest
    (:func:`_next_id`); text UTF-8 cannot encode is stored (and hashed) as its backslash
    escape."""
    actor, action, target = _escaped(actor), _escaped(action), _escaped(target)
    stored_details = _escaped_json(json_roundtrip(dict(details)))
    prev_hash = conn.execute(
        select(audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
    ).scalar_one()
    entry_id = _next_id(conn)
    at = utcnow()
    new_hash = entry_hash(
        prev_hash, at=at, actor=actor, action=action, target=target, details=stored_details
    )
    conn.execute(
        audit_entries.insert().values(
            id=entry_id,
            at=at,
            actor=actor,
            action=action,
            target=target,
            details=stored_details,
            prev_hash=prev_hash,
            hash=new_hash,
        )
    )
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(hash=new_hash))
    return AuditEntry(
        id=entry_id,
        at=at,
        actor=actor,
        action=action,
        target=target,
        details=stored_details,
        prev_hash=prev_hash,
        hash=new_hash,
    )


def _next_id(conn: Connection) -> int:
    """The id of the entry to append: one past the newest, read under the ``audit_head``
    row's lock (the caller's), so ids have no holes. PostgreSQL's sequence gave one: a
    value it handed to a transaction that then rolled back (an action failing after its
    audit entry) is never given back, and an auditor reads the missing number as a
    removed entry. The sequence is still moved to the id where this role may move it, so
    that a writer taking the column's default (an older tunewatch sharing the store during
    an upgrade) gets a fresh id rather than one an entry holds; a rolled-back append leaves
    it one ahead, which only such a writer would see (as a hole)."""
    newest = select(func.coalesce(func.max(audit_entries.c.id), 0) + 1).scalar_subquery()
    if conn.dialect.name != "postgresql":
        return int(conn.execute(select(newest)).scalar_one())
    sequence = func.pg_get_serial_sequence(audit_entries.name, audit_entries.c.id.name)
    # only where this role may move it: setval needs UPDATE on the sequence, nextval only
    # USAGE, and a daemon running as a role granted DML and USAGE (the store migrated by
    # its owner) failed every audited action with "permission denied for sequence"; no
    # sequence (a table created otherwise) is nothing to keep either
    may_move = func.coalesce(func.has_sequence_privilege(sequence, "UPDATE"), False)
    return int(
        conn.execute(
            select(case((may_move, func.setval(sequence, newest)), else_=newest))
        ).scalar_one()
    )


def append_audit_once_in(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any],
    recent: int,
) -> tuple[AuditEntry, bool]:
    """Append one entry inside the caller's transaction unless one of ``actor``'s latest
    ``recent`` ``action`` entries about ``target`` has the same ``details["digest"]``:
    that entry and ``False`` (a retry), else the new entry and ``True``.

    The ``audit_head`` row is locked before the lookup (on PostgreSQL; on SQLite the
    writer's ``BEGIN IMMEDIATE`` already serialises), so two concurrent callers with the
    same digest cannot both miss the other's entry: the second waits for the first to
    commit, then finds its entry."""
    conn.execute(select(audit_head.c.id).where(audit_head.c.id == 1).with_for_update()).one()
    actor, action, target = _escaped(actor), _escaped(action), _escaped(target)
    digest = _escaped_json(details.get("digest"))  # as stored, and as listed
    for entry in audit_log(conn, recent, target, action=action, actor=actor):
        if entry.details.get("digest") == digest:
            return entry, False
    entry = append_audit_in(conn, actor=actor, action=action, target=target, details=details)
    return entry, True


def audit_log(
    conn: Connection,
    limit: int,
    target: str | None = None,
    *,
    model: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    before_id: int | None = None,
) -> list[AuditEntry]:
    """Newest first, at most ``limit``; with ``before_id`` only the entries older than
    that one (of a lower id: ids ascend in append order, appends being serialised by the
    ``audit_head`` row), a keyset cursor that reads the log back to its first entry a
    page at a time. ``actor`` :data:`JOB_ACTORS` matches every tuning job's actor
    (``job:<id>``). A filter holding a NUL matches nothing, on both backends (no stored
    entry holds one; PostgreSQL would refuse the query). An entry whose row cannot be
    read is listed with what could be (:data:`UNREADABLE` for the rest) and ``details``
    saying why, never raised; one holding text UTF-8 cannot encode (stored before such
    text was escaped) is listed with that text escaped."""
    if holds_nul(target, model, action, actor):
        return []
    stmt = select(*_read_columns(conn.dialect))
    if before_id is not None:
        stmt = stmt.where(audit_entries.c.id < before_id)
    if target is not None:
        stmt = stmt.where(audit_entries.c.target == target)
    if model is not None:
        stmt = stmt.where(_about(model))
    if action is not None:
        stmt = stmt.where(audit_entries.c.action == action)
    if actor == JOB_ACTORS:
        stmt = stmt.where(_by_a_job(audit_entries.c.actor))
    elif actor is not None:
        stmt = stmt.where(audit_entries.c.actor == actor)
    rows = conn.execute(stmt.order_by(audit_entries.c.id.desc()).limit(limit)).all()
    read = _RowReader(conn.dialect)
    return [_escaped_entry(read(r._mapping).shown()) for r in rows]


def _escaped(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (a lone surrogate) as its backslash escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _escaped_json(value: Any) -> Any:
    """``value`` (a JSON value) with every string in it, keys too, at any depth,
    :func:`_escaped`; ``value`` itself when none needs it."""
    text = json.dumps(value, ensure_ascii=False)
    if _UNENCODABLE.search(text) is None:
        return value
    # in the JSON text a lone surrogate is itself (not escaped): write it as the JSON of
    # its backslash escape, a backslash and `udce4`, so that it reads back as that text
    return json.loads(_UNENCODABLE.sub(lambda m: f"\\\\u{ord(m.group()):04x}", text))


def _escaped_entry(entry: AuditEntry) -> AuditEntry:
    """``entry`` as listed: its text and details :func:`_escaped` (its hash is still the
    one of what is stored, which :func:`verify_audit` reads unescaped)."""
    texts = (entry.actor, entry.action, entry.target, entry.prev_hash, entry.hash)
    details = _escaped_json(entry.details)
    if details is entry.details and all(_UNENCODABLE.search(t) is None for t in texts):
        return entry
    return replace(
        entry,
        actor=_escaped(entry.actor),
        action=_escaped(entry.action),
        target=_escaped(entry.target),
        prev_hash=_escaped(entry.prev_hash),
        hash=_escaped(entry.hash),
        details=details,
    )


def audit_facets(
    conn: Connection,
    model: str | None = None,
    *,
    window: int = FACET_WINDOW,
    limit: int = FACET_LIMIT,
) -> tuple[list[str], list[str]]:
    """The actions and the actors of the newest ``window`` entries of the log (those of
    them about ``model``, if given): the ``limit`` most recent of each, sorted. Every
    tuning job's actor (``job:<id>``) is one value, :data:`JOB_ACTORS`.

    An older value is not listed (its filter still works). Every distinct value of the
    whole log was, read by two scans of all of it on every view: after a year, one actor
    per tuning job (309 filter chips; 1,809 after 1,500 more jobs)."""
    if holds_nul(model):
        return [], []
    newest = select(func.max(audit_entries.c.id)).scalar_subquery()
    read = audit_entries.c.id > newest - window  # a range of the primary key
    if model is not None:
        read = and_(read, _about(model))
    actor = audit_entries.c.actor
    folded = case((_by_a_job(actor), JOB_ACTORS), else_=actor).label("actor")
    entries = select(audit_entries.c.action, folded, audit_entries.c.id).where(read).subquery()
    pairs = conn.execute(  # one scan of the window; a few rows
        select(entries.c.action, entries.c.actor, func.max(entries.c.id)).group_by(
            entries.c.action, entries.c.actor
        )
    ).all()
    last_action: dict[str, int] = {}
    last_actor: dict[str, int] = {}
    for action, by, last in pairs:
        for seen, value in ((last_action, str(action)), (last_actor, str(by))):
            seen[value] = max(seen.get(value, last), last)
    return _most_recent(last_action, limit), _most_recent(last_actor, limit)


def _most_recent(last: dict[str, int], limit: int) -> list[str]:
    """The ``limit`` values of the highest last ids, sorted."""
    return sorted(sorted(last, key=lambda v: last[v], reverse=True)[:limit])


def _by_a_job(actor: Any) -> Any:
    """Whether ``actor`` is a tuning job's, ``job:<id>`` (compared exactly, as
    :func:`_about` compares: SQLite's LIKE ignores case)."""
    return func.substr(actor, 1, len(_JOB_PREFIX)) == _JOB_PREFIX


# Audited under the token's own name, which may be a model's: never about the model.
_TOKEN_ACTIONS = ("create_token", "revoke_token")


def _about(model: str) -> Any:
    """Entries whose target names ``model``: the model itself (``regulate_model``,
    ``import_bundle``, ``label_conflict``) or one of its versions (``model/v3``), the only
    targets written about a model. Nothing else that starts with the name is: model names
    may hold ':' and '@'. A token is audited under its own name, so one named like the model or like
    one of its versions (``credit/v1``) is not about it either."""
    target = audit_entries.c.target
    prefix = f"{model}/v"
    head = func.substr(target, 1, len(prefix))  # compared exactly (SQLite's LIKE is not)
    return and_(or_(target == model, head == prefix), audit_entries.c.action.not_in(_TOKEN_ACTIONS))


def verify_audit(conn: Connection) -> AuditBreak | None:
    """The first break in the chain, or ``None`` if the log is intact.

    Every entry must chain to the one before it and its hash must recompute; the last
    entry's hash must be the ``audit_head`` row's, so a removed tail or a rewritten last
    entry (which still chains) is found too. The head is read by the same statement as
    the entries, so both come from one snapshot and a concurrent append cannot make an
    intact log look truncated.
    """
    head_of_log = select(audit_head.c.hash).where(audit_head.c.id == 1).scalar_subquery()
    while True:
        result = conn.execute(
            select(*_read_columns(conn.dialect), head_of_log.label("head_of_log"))
            .order_by(audit_entries.c.id)
            .execution_options(yield_per=1000)
        )
        read = _RowReader(conn.dialect)
        last: AuditEntry | None = None
        head: str | None = None
        for row in result:
            decoded = read(row._mapping)
            entry = decoded.entry
            broken = decoded.unreadable_break() or _chain_break(entry, last)
            if broken is not None:
                result.close()
                return broken
            last, head = entry, row.head_of_log
        if last is None:
            head, appended = conn.execute(
                select(head_of_log, select(audit_entries.c.id).exists())
            ).one()
            if appended:  # entries were appended after the scan began: scan again
                continue
        return _head_break(conn, head, last)


def _chain_break(entry: AuditEntry, previous: AuditEntry | None) -> AuditBreak | None:
    expected_prev = ZERO_HASH if previous is None else previous.hash
    if entry.prev_hash != expected_prev:
        before = "the log's start" if previous is None else f"entry {previous.id}"
        return AuditBreak(
            kind="prev_hash",
            entry_id=entry.id,
            message=(
                f"audit entry {entry.id} does not chain: its prev_hash is {entry.prev_hash}, "
                f"but {before} has hash {expected_prev} (an entry between them was removed, "
                f"or one of them altered)"
            ),
        )
    recomputed = entry_hash(
        entry.prev_hash,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        target=entry.target,
        details=entry.details,
    )
    if entry.hash != recomputed:
        return AuditBreak(
            kind="hash",
            entry_id=entry.id,
            message=(
                f"audit entry {entry.id} was altered: its stored hash {entry.hash} does not "
                f"match its contents, which hash to {recomputed}"
            ),
        )
    return None


def _head_break(conn: Connection, head: str | None, last: AuditEntry | None) -> AuditBreak | None:
    """Whether the chain ends where ``audit_head`` (``head``) says it does."""
    if head == (ZERO_HASH if last is None else last.hash):
        return None
    entry_id = None if last is None else last.id
    if head is None:
        return AuditBreak(kind="head", entry_id=entry_id, message="the audit_head row is missing")
    if last is None:
        ends, why = "the log has no entries", "its entries were removed"
    else:
        ends = f"the log ends at entry {last.id} (hash {last.hash})"
        why = f"entries after {last.id} were removed or entry {last.id} was rewritten"
    if head == ZERO_HASH:
        where: str | None = "the empty log's hash"
    else:
        at = conn.execute(select(audit_entries.c.id).where(audit_entries.c.hash == head)).scalar()
        where = None if at is None else f"the hash of entry {at}"
    if where is None:
        message = f"{ends}, but audit_head is {head}, which no entry has: {why}"
    else:
        message = (
            f"{ends}, but audit_head is {head} ({where}): the entries after it were added "
            f"without moving audit_head"
        )
    return AuditBreak(kind="head", entry_id=entry_id, message=message)


def _read_columns(dialect: Dialect) -> list[Any]:
    """The entry's columns to select. SQLite's hold any type whatever they are declared:
    each is read as its bytes beside its ``typeof``, for :class:`_RowReader` (a text that is
    not UTF-8 failed the whole query, as though the database were unavailable).
    PostgreSQL's hold only their own type."""
    if dialect.name != "sqlite":
        return list(audit_entries.c)
    columns: list[Any] = [audit_entries.c.id]
    for column in audit_entries.c:
        if column.name != "id":
            columns.append(cast(column, LargeBinary).label(column.name))
            columns.append(func.typeof(column).label(f"{column.name}__type"))
    return columns


@dataclass(frozen=True, slots=True)
class _Decoded:
    """A row read column by column: ``entry`` holds what was read, ``unreadable`` says
    why each other column could not be (empty: the row as stored)."""

    entry: AuditEntry
    unreadable: dict[str, str]
    details: Any  # the stored details, if they parsed (as JSON of any kind)

    def unreadable_break(self) -> AuditBreak | None:
        if not self.unreadable:
            return None
        why = "; ".join(f"`{column}` {why}" for column, why in self.unreadable.items())
        return AuditBreak(
            kind="unreadable",
            entry_id=self.entry.id,
            message=(
                f"audit entry {self.entry.id} is unreadable, so its hash cannot be "
                f"recomputed: {why} (it was rewritten past the database's triggers)"
            ),
        )

    def shown(self) -> AuditEntry:
        if not self.unreadable:
            return self.entry
        details: dict[str, Any] = {"unreadable": dict(self.unreadable)}
        if "details" not in self.unreadable or self.details is not None:
            details["details"] = self.details
        return AuditEntry(
            id=self.entry.id,
            at=self.entry.at,
            actor=self.entry.actor,
            action=self.entry.action,
            target=self.entry.target,
            details=details,
            prev_hash=self.entry.prev_hash,
            hash=self.entry.hash,
        )


#: What a column's own result processing may raise on a value of another type (a time's
#: parse ``ValueError``, ``UTCDateTime``'s check that it got a datetime ``AssertionError``,
#: JSON's ``JSONDecodeError`` or, nested past the interpreter's depth, ``RecursionError``).
_DECODE_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, AssertionError)

#: What a column holds, for a message about a value that does not parse as it.
_KINDS = {"at": "a time", "details": "JSON"}


class _RowReader:
    """Reads rows selected by :func:`_read_columns` column by column (on SQLite from each
    column's bytes and ``typeof``, then processed as its type does — a time's parse,
    JSON's), recording a column that cannot be read rather than raising."""

    def __init__(self, dialect: Dialect) -> None:
        self._raw = dialect.name == "sqlite"
        self._columns = [c.name for c in audit_entries.c if c.name != "id"]
        self._process: dict[str, Callable[[Any], Any] | None] = {
            c.name: c.type.dialect_impl(dialect).result_processor(dialect, None)
            for c in audit_entries.c
        }

    def __call__(self, stored: RowMapping) -> _Decoded:
        values: dict[str, Any] = {}
        unreadable: dict[str, str] = {}
        for name in self._columns:
            try:
                values[name] = self._value(stored, name) if self._raw else stored[name]
            except _DECODE_ERRORS as exc:
                unreadable[name] = str(exc)
        details = values.get("details")
        if "details" in values and not isinstance(details, dict):
            unreadable["details"] = f"holds {_stored(details)}, not a JSON object"
        for name in _TEXT_COLUMNS:
            if name in values and not isinstance(values[name], str):
                unreadable[name] = f"holds {_stored(values[name])}, not text"
        if "at" in values and not isinstance(values["at"], datetime):
            unreadable["at"] = f"holds {_stored(values['at'])}, not a time"
        if unreadable:
            for name in _TEXT_COLUMNS:
                values[name] = UNREADABLE if name in unreadable else values[name]
            values["at"] = UNREADABLE_AT if "at" in unreadable else values["at"]
            values["details"] = {} if "details" in unreadable else details
        entry = AuditEntry(
            id=int(stored["id"]),
            at=values["at"],
            actor=values["actor"],
            action=values["action"],
            target=values["target"],
            details=values["details"],
            prev_hash=values["prev_hash"],
            hash=values["hash"],
        )
        return _Decoded(entry, unreadable, details)

    def _value(self, stored: RowMapping, name: str) -> Any:
        """Column ``name`` decoded from its SQLite bytes and ``typeof``."""
        kind = stored[f"{name}__type"]
        if kind != "text":
            article = "an" if str(kind)[:1] in "aeiou" else "a"
            raise TypeError(f"is stored as {article} {str(kind).upper()}, not text")
        raw = bytes(stored[name])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"holds {_stored(raw)}, not UTF-8 text") from exc
        process = self._process[name]
        if process is None:
            return text
        try:
            return process(text)
        except _DECODE_ERRORS as exc:
            what = _KINDS.get(name, "its type")
            raise ValueError(f"holds {_stored(text)}, not {what} ({exc})") from exc


def _stored(value: Any) -> str:
    """``value`` for a message: its repr, at most 80 characters."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:79] + "…"
