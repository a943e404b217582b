"""API tokens: only sha256 hashes are stored (hashing happens in the caller).

Creating and revoking a token write its audit entry inside the caller's transaction, so
a token and its record land together or not at all.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Row, select, update

from .._errors import ConflictError, InvalidValueError, NotFoundError
from ._audit import JOB_ACTORS, append_audit_in
from ._engine import dialect_insert
from ._governance import BOOTSTRAP_NAME, BOOTSTRAP_TOKEN_NAME
from ._schema import api_tokens
from ._types import TokenRow, utcnow, valid_actor

#: A token's name is ``VARCHAR(100)`` (PostgreSQL enforces it; SQLite would not).
MAX_TOKEN_NAME = 100
#: A bootstrap admin's name as it reads: any script's digits, letters as NFKC and case fold them.
_READS_AS_BOOTSTRAP = re.compile(re.escape(BOOTSTRAP_TOKEN_NAME) + r"(-\d+)?")
#: The actors the daemon itself audits as: the comparison loop and the stored models
#: regulated from the config (``tunewatch``), the bootstrap token, evaluations and
#: triggers (``system``) and the retention purge (``scheduler``).
DAEMON_ACTORS = ("scheduler", "system", "tunewatch")
#: How a tuning job's actor begins (``job:<id>``, all of them :data:`JOB_ACTORS`).
JOB_ACTOR_PREFIX = JOB_ACTORS.removesuffix("*")


def reads_as_bootstrap(name: str) -> bool:
    """Whether ``name`` reads as a name of the bootstrap admin without being one
    (``bootstrap-admin-٣``, ``Bootstrap-Admin``): NFKC- and case-folded, it is one."""
    folded = _folded(name)
    return not BOOTSTRAP_NAME.fullmatch(name) and bool(_READS_AS_BOOTSTRAP.fullmatch(folded))


def reads_as_daemon_actor(name: str) -> bool:
    """Whether ``name`` reads as an actor the daemon itself audits as: NFKC- and
    case-folded, it is one of :data:`DAEMON_ACTORS` (``System``) or begins with
    :data:`JOB_ACTOR_PREFIX` (``job:7``, ``Job：7``)."""
    folded = _folded(name)
    return folded in DAEMON_ACTORS or folded.startswith(JOB_ACTOR_PREFIX)


def _folded(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()


def add_token(
    conn: Connection,
    *,
    name: str,
    role: str,
    token_hash: str,
    actor: str,
    details: Mapping[str, Any] | None = None,
    bootstrap: bool = False,
) -> TokenRow:
    """Store a token and audit it (``create_token``; ``details`` adds to its role).

    ``name`` is the actor of everything done with the token, so it follows the audit
    log's rule for actors (printable: no newline can forge a line of the log), within
    the column's ``MAX_TOKEN_NAME`` characters, and, as a model's name, with no space
    first or last (``"ops "`` would print as ``"ops"``) (``InvalidValueError``). The
    bootstrap admin's names (``bootstrap-admin``, ``bootstrap-admin-<n>`` in ASCII digits)
    are one person to the rule that a requester may not decide their own approval, and a
    change of ``TUNEWATCH_ADMIN_TOKEN`` revokes the tokens holding them: only the daemon
    storing that variable's token takes one (``bootstrap``; ``InvalidValueError``
    otherwise). A name that only reads as one of them (``bootstrap-admin-٣``,
    ``bootstrap-admin-３``) is refused to everyone: it would be another person under a
    bootstrap admin's name. So is a name that reads as an actor the daemon itself audits
    as (``tunewatch``, ``System``, ``job:7``: :func:`reads_as_daemon_actor`): what is done
    with the token would read as done by the daemon."""
    if len(token_hash) != 64:
        raise ValueError(f"`token_hash` must be a 64-character sha256 hex, got {len(token_hash)}")
    if not (valid_actor(name) and len(name) <= MAX_TOKEN_NAME and name.strip() == name):
        raise InvalidValueError(
            f"token `name` must be 1 to {MAX_TOKEN_NAME} printable characters with no space "
            f"first or last (it names the actor in the audit log), got {len(name)} "
            f"characters: {name!r:.60}"
        )
    if BOOTSTRAP_NAME.fullmatch(name):
        if not bootstrap:
            raise InvalidValueError(
                f"token `name` must not be {BOOTSTRAP_TOKEN_NAME!r} or "
                f"'{BOOTSTRAP_TOKEN_NAME}-<n>': those name the admin token stored from "
                f"TUNEWATCH_ADMIN_TOKEN (one person under all of them, and revoked when it "
                f"changes), got {name!r}"
            )
    elif reads_as_bootstrap(name):
        raise InvalidValueError(
            f"token `name` reads as a name of the bootstrap admin ({BOOTSTRAP_TOKEN_NAME!r} "
            f"or '{BOOTSTRAP_TOKEN_NAME}-<n>', in ASCII digits) without being one: another "
            f"person would act under it; got {name!r}"
        )
    if reads_as_daemon_actor(name):
        raise InvalidValueError(
            f"token `name` must not read as one of the daemon's own actors in the audit log "
            f"({', '.join(map(repr, DAEMON_ACTORS))} or '{JOB_ACTOR_PREFIX}<id>', case and "
            f"width ignored): what is done with the token would read as done by the daemon; "
            f"got {name!r}"
        )
    # one statement: a check before the insert read nothing on PostgreSQL while another
    # transaction held an uncommitted token of the name, and the insert then hit the
    # unique index with the driver's message
    token_id = conn.execute(
        dialect_insert(conn, api_tokens)
        .values(name=name, role=role, token_hash=token_hash, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=[api_tokens.c.name])
        .returning(api_tokens.c.id)
    ).scalar_one_or_none()
    if token_id is None:
        raise ConflictError(
            f"an API token named {name!r} exists (a revoked token keeps its name, so that "
            "the audit log names one token per actor): choose another name",
            code="token_exists",
        )
    append_audit_in(
        conn,
        actor=actor,
        action="create_token",
        target=name,
        details={**(details or {}), "role": role},
    )
    return _token(conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).one())


def revoke_token(
    conn: Connection, name: str, *, actor: str, details: Mapping[str, Any] | None = None
) -> TokenRow:
    """Revoke an active token and audit it (``revoke_token``)."""
    revoked = conn.execute(
        update(api_tokens)
        .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    ).rowcount
    row = conn.execute(select(api_tokens).where(api_tokens.c.name == name)).one_or_none()
    if row is None:
        raise NotFoundError(f"no API token named {name!r}")
    if not revoked:
        raise ConflictError(
            f"API token {name!r} is already revoked (since {row.revoked_at:%Y-%m-%d %H:%M} UTC)",
            code="token_revoked",
        )
    append_audit_in(conn, actor=actor, action="revoke_token", target=name, details=details or {})
    return _token(row)


def list_tokens(conn: Connection) -> list[TokenRow]:
    return [_token(r) for r in conn.execute(select(api_tokens).order_by(api_tokens.c.id))]


def token_by_hash(conn: Connection, token_hash: str) -> TokenRow | None:
    row = conn.execute(
        select(api_tokens).where(
            api_tokens.c.token_hash == token_hash, api_tokens.c.revoked_at.is_(None)
        )
    ).one_or_none()
    return None if row is None else _token(row)


def _token(row: Row[Any]) -> TokenRow:
    return TokenRow(
        id=row.id,
        name=row.name,
        role=row.role,
        token_hash=row.token_hash,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
