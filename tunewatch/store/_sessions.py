"""Dashboard sessions: a sign-in's random id, stored only as its sha256 (hashed in the
caller), with the token it signed in with and when it ends.

Times are the database's (:mod:`._clock`), as the leases' are: every daemon serving the
dashboard agrees when a session ends. A session reads as its token only while it is
unexpired and its token unrevoked, so revoking a token ends its sessions at once.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, delete, select

from ._clock import db_now
from ._schema import api_tokens, dashboard_sessions
from ._tokens import _token
from ._types import TokenRow


def start_session(conn: Connection, *, session_hash: str, token_name: str, ttl_s: float) -> None:
    """Store a session of the token ``token_name`` that ends ``ttl_s`` seconds from now;
    sessions already ended are deleted first."""
    if len(session_hash) != 64:
        raise ValueError(
            f"`session_hash` must be a 64-character sha256 hex, got {len(session_hash)}"
        )
    if ttl_s <= 0:
        raise ValueError(f"`ttl_s` must be positive, got {ttl_s}")
    conn.execute(delete(dashboard_sessions).where(dashboard_sessions.c.expires_at <= db_now(conn)))
    conn.execute(
        dashboard_sessions.insert().values(
            session_hash=session_hash,
            token_name=token_name,
            created_at=db_now(conn),
            expires_at=db_now(conn, timedelta(seconds=ttl_s)),
        )
    )


def session_token(conn: Connection, session_hash: str) -> TokenRow | None:
    """The token a live session signed in with; ``None`` when the session is unknown,
    ended or expired, or its token revoked."""
    row = conn.execute(
        select(api_tokens)
        .join(dashboard_sessions, dashboard_sessions.c.token_name == api_tokens.c.name)
        .where(
            dashboard_sessions.c.session_hash == session_hash,
            dashboard_sessions.c.expires_at > db_now(conn),
            api_tokens.c.revoked_at.is_(None),
        )
    ).one_or_none()
    return None if row is None else _token(row)


def end_session(conn: Connection, session_hash: str) -> bool:
    """Delete a session; False if there was none."""
    ended = conn.execute(
        delete(dashboard_sessions).where(dashboard_sessions.c.session_hash == session_hash)
    ).rowcount
    return bool(ended)


def end_sessions_of(conn: Connection, token_name: str) -> int:
    """Delete every session of the token ``token_name``; how many there were."""
    ended: int = conn.execute(
        delete(dashboard_sessions).where(dashboard_sessions.c.token_name == token_name)
    ).rowcount
    return ended
