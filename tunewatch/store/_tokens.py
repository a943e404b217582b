"""API tokens: only sha256 hashes are stored (hashing happens in the caller).

Creating, revoking and rotating a token write their audit entries inside the caller's
transaction, so a token and its record land together or not at all.

A rotation (:func:`rotate_token`) revokes a token and stores its successor under the name
:data:`~._governance.ROTATED_NAME` gives it, ``root`` → ``root#2`` → ``root#3``: one
person to the rule that a requester may not decide their own approval
(:func:`~._governance.person`). A name is never reused (the audit log names one token per
actor), so revoking a token and creating another was the only way to replace a secret, and
the new name was another person, who could approve the old one's request.

Nor is a name that reads as one already taken: each token stores its name's key
(:func:`token_name_key`, the name NFKC- and case-folded), unique in the database, so
``jose`` + a combining acute (NFD) is refused beside a precomposed ``josé`` (NFC), and
``Alice`` beside ``alice``, however concurrently they are created. Letters of other
scripts that only look alike (Cyrillic ``а`` for Latin ``a``) are not folded.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Row, func, select, update

from .._errors import ConflictError, InvalidValueError, NotFoundError
from ._audit import JOB_ACTORS, append_audit_in
from ._engine import dialect_insert
from ._governance import BOOTSTRAP_NAME, BOOTSTRAP_TOKEN_NAME, ROTATED_NAME, fold_token_name
from ._schema import api_tokens
from ._types import TokenRow, utcnow, valid_actor

#: A token's name is ``VARCHAR(100)`` (PostgreSQL enforces it; SQLite would not).
MAX_TOKEN_NAME = 100
#: A bootstrap admin's name as it reads: any script's digits, letters as NFKC and case fold them.
_READS_AS_BOOTSTRAP = re.compile(re.escape(BOOTSTRAP_TOKEN_NAME) + r"(-\d+)?")
#: A rotated token's name as it reads: any script's digits (``root#٣``), ``#1`` and
#: leading zeros too, the number sign as NFKC folds it (``root＃2``).
_READS_AS_ROTATED = re.compile(r".+#\d+")
#: The actors the daemon itself audits as: the comparison loop and the stored models
#: regulated from the config (``tunewatch``), the bootstrap token, evaluations and
#: triggers (``system``) and the retention purge (``scheduler``).
DAEMON_ACTORS = ("scheduler", "system", "tunewatch")
#: How a tuning job's actor begins (``job:<id>``, all of them :data:`JOB_ACTORS`).
JOB_ACTOR_PREFIX = JOB_ACTORS.removesuffix("*")


def reads_as_bootstrap(name: str) -> bool:
    """Whether ``name`` reads as a name of the bootstrap admin without being one
    (``bootstrap-admin-٣``, ``Bootstrap-Admin``): NFKC- and case-folded, it is one."""
    folded = fold_token_name(name)
    return not BOOTSTRAP_NAME.fullmatch(name) and bool(_READS_AS_BOOTSTRAP.fullmatch(folded))


def reads_as_rotated(name: str) -> bool:
    """Whether ``name`` reads as the name a rotation gives a token (``root#2``,
    ``root#٣``, ``root＃2``): NFKC-folded, it ends in ``#`` and digits after a first
    character. Only :func:`rotate_token` stores such a name, and only as
    :data:`~._governance.ROTATED_NAME` spells it."""
    return bool(_READS_AS_ROTATED.fullmatch(unicodedata.normalize("NFKC", name)))


def reads_as_daemon_actor(name: str) -> bool:
    """Whether ``name`` reads as an actor the daemon itself audits as: NFKC- and
    case-folded, it is one of :data:`DAEMON_ACTORS` (``System``) or begins with
    :data:`JOB_ACTOR_PREFIX` (``job:7``, ``Job：7``)."""
    folded = fold_token_name(name)
    return folded in DAEMON_ACTORS or folded.startswith(JOB_ACTOR_PREFIX)


def person_name_problem(name: str) -> str | None:
    """Why ``name``, given as a person's (the CLI's ``--actor``, or ``$USER`` without
    it), cannot name the actor of what they do, or ``None``: the rules a token's name
    follows but its length and rotations (the API's actors are tokens' names). It must
    have no space first or last, and not read as one of the daemon's own actors
    (:func:`reads_as_daemon_actor`) nor as the bootstrap admin (its token's names or
    names reading as them): ``job:1`` made a hand-registered version's report say tuning
    job 1 registered it, and ``tunewatch`` read as the daemon's own rollback."""
    if name.strip() != name:
        return "must have no space first or last"
    if reads_as_daemon_actor(name):
        return (
            f"must not read as one of the daemon's own actors in the audit log "
            f"({', '.join(map(repr, DAEMON_ACTORS))} or '{JOB_ACTOR_PREFIX}<id>', case and "
            f"width ignored)"
        )
    if BOOTSTRAP_NAME.fullmatch(name) or reads_as_bootstrap(name):
        return (
            f"must not read as a name of the bootstrap admin ({BOOTSTRAP_TOKEN_NAME!r} or "
            f"'{BOOTSTRAP_TOKEN_NAME}-<n>'), the token stored from TUNEWATCH_ADMIN_TOKEN"
        )
    return None


def token_name_key(name: str) -> str:
    """The key that makes a token's name taken (``api_tokens.name_key``, unique): the
    sha256 hex of :func:`fold_token_name`, of a fixed length whatever the name's folding
    expands it to (NFKC makes 18 characters of ``ﷺ``)."""
    return hashlib.sha256(fold_token_name(name).encode("utf-8")).hexdigest()


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
    with the token would read as done by the daemon; and one that reads as a rotation's
    (``root#2``, ``root#٣``: :func:`reads_as_rotated`), which only :func:`rotate_token`
    gives: it would be ``root`` to the same-person rule without being their token.

    A name that reads as a token's already stored, revoked or not (:func:`token_name_key`
    the same: ``josé`` precomposed or decomposed, ``Alice`` and ``alice``), is refused
    (``ConflictError``, ``token_exists``), as the name itself is."""
    if len(token_hash) != 64:
        raise ValueError(f"`token_hash` must be a 64-character sha256 hex, got {len(token_hash)}")
    _check_name(name, bootstrap=bootstrap)
    if reads_as_rotated(name):
        raise InvalidValueError(
            f"token `name` must not end in '#<n>': that names a token's successor after "
            f"`tunewatch tokens rotate` (one person under both names); got {name!r}"
        )
    return _store_token(
        conn, name=name, role=role, token_hash=token_hash, actor=actor, details=details
    )


def _check_name(name: str, *, bootstrap: bool = False) -> None:
    """Refuse (``InvalidValueError``) a name :func:`add_token` refuses, but for a
    rotation's, which :func:`rotate_token` gives."""
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


def _store_token(
    conn: Connection,
    *,
    name: str,
    role: str,
    token_hash: str,
    actor: str,
    details: Mapping[str, Any] | None,
) -> TokenRow:
    """Insert a token whose name was checked, and audit it (``create_token``); refuse
    (``token_exists``) a name whose key a token holds."""
    key = token_name_key(name)
    # one statement: a check before the insert read nothing on PostgreSQL while another
    # transaction held an uncommitted token of the name, and the insert then hit the
    # unique index with the driver's message. The key is the arbiter: a token of the
    # same name holds the same key (of those stored with lookalikes before revision
    # 0022, the first holds the name's key)
    token_id = conn.execute(
        dialect_insert(conn, api_tokens)
        .values(name=name, name_key=key, role=role, token_hash=token_hash, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=[api_tokens.c.name_key])
        .returning(api_tokens.c.id)
    ).scalar_one_or_none()
    if token_id is None:
        taken = conn.execute(
            select(api_tokens.c.name).where(api_tokens.c.name_key == key)
        ).scalar_one_or_none()
        if taken is None or taken == name:
            raise ConflictError(
                f"an API token named {name!r} exists (a revoked token keeps its name, so "
                "that the audit log names one token per actor): choose another name",
                code="token_exists",
            )
        raise ConflictError(
            f"an API token named {taken!r} exists, and {name!r} reads as that name once "
            f"Unicode compatibility forms and case are folded ({name!a} beside {taken!a}); "
            "a revoked token keeps its name, so that the audit log names one token per "
            "actor: choose another name",
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


def stored_name(conn: Connection, name: str) -> str:
    """The name of the token ``name`` names: ``name`` itself where a token is stored so,
    else the one whose name Unicode reads as the same (:func:`token_name_key`; a name
    typed on a keyboard that decomposes ``é`` found no token ``josé`` to revoke), else
    ``name`` (which no token has)."""
    if conn.execute(select(api_tokens.c.id).where(api_tokens.c.name == name)).first():
        return name
    found: str | None = conn.execute(
        select(api_tokens.c.name).where(api_tokens.c.name_key == token_name_key(name))
    ).scalar_one_or_none()
    return name if found is None else found


def revoke_token(
    conn: Connection, name: str, *, actor: str, details: Mapping[str, Any] | None = None
) -> TokenRow:
    """Revoke an active token and audit it (``revoke_token``); ``name`` in any spelling
    Unicode reads as its name (:func:`stored_name`)."""
    name = stored_name(conn, name)
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


def rotate_token(
    conn: Connection,
    name: str,
    *,
    token_hash: str,
    actor: str,
    details: Mapping[str, Any] | None = None,
) -> tuple[TokenRow, TokenRow]:
    """Replace token ``name`` by a new one of the same role and person: ``(old, new)``.

    The new token is named as :data:`~._governance.ROTATED_NAME` says, the next number
    after the person's highest (``root`` → ``root#2``, ``root#2`` → ``root#3``); only the
    person's newest token is rotated (``ConflictError``, ``token_rotated``, naming it),
    so their names make one line. ``name`` is revoked (``revoke_token``, its details
    ``details`` and ``rotated_to``) unless it is already — a leaked token revoked at once
    gets its successor all the same — and the new token stored (``create_token``,
    ``details``, its role and ``rotated_from``). The bootstrap admin's token is refused
    (``InvalidValueError``): a new ``TUNEWATCH_ADMIN_TOKEN`` rotates it, and the daemon
    refuses to start on a variable whose token was revoked. So is a rotation whose name
    would be longer than the column, and nothing is changed. ``name`` may be spelt as
    Unicode reads it (:func:`stored_name`)."""
    name = stored_name(conn, name)
    old = conn.execute(
        select(api_tokens).where(api_tokens.c.name == name).with_for_update()
    ).one_or_none()
    if old is None:
        raise NotFoundError(f"no API token named {name!r}")
    if BOOTSTRAP_NAME.fullmatch(name):
        raise InvalidValueError(
            f"API token {name!r} is the bootstrap admin's: rotate it by setting a new "
            "TUNEWATCH_ADMIN_TOKEN and restarting the daemon"
        )
    rotated = ROTATED_NAME.fullmatch(name)
    first = name if rotated is None else rotated["first"]
    numbers = {first: 1}
    prefix = f"{first}#"
    for (taken,) in conn.execute(
        select(api_tokens.c.name).where(func.substr(api_tokens.c.name, 1, len(prefix)) == prefix)
    ):
        later = ROTATED_NAME.fullmatch(taken)
        if later is not None and later["first"] == first:
            numbers[taken] = int(later["n"])
    newest = max(numbers, key=lambda taken: numbers[taken])
    if newest != name:
        raise ConflictError(
            f"API token {name!r} was rotated: its successor is {newest!r}; rotate that one",
            code="token_rotated",
        )
    new_name = f"{first}#{numbers[newest] + 1}"
    if len(new_name) > MAX_TOKEN_NAME:
        raise InvalidValueError(
            f"API token {name!r} cannot be rotated: its successor's name {new_name!r:.60} "
            f"would be {len(new_name)} characters, and a token's name is at most "
            f"{MAX_TOKEN_NAME} characters"
        )
    if len(token_hash) != 64:
        raise ValueError(f"`token_hash` must be a 64-character sha256 hex, got {len(token_hash)}")
    # a name stored before the rules (`Bootstrap-Admin`, `System`) is not carried on
    _check_name(new_name)
    if old.revoked_at is None:
        revoke_token(conn, name, actor=actor, details={**(details or {}), "rotated_to": new_name})
    new = _store_token(
        conn,
        name=new_name,
        role=old.role,
        token_hash=token_hash,
        actor=actor,
        details={**(details or {}), "rotated_from": name},
    )
    revoked = conn.execute(select(api_tokens).where(api_tokens.c.name == name)).one()
    return _token(revoked), new


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
