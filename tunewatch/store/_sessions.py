"""Dashboard sessions: a sign-in's random id, stored only as its sha256 (hashed in the
caller), with the token it signed in with and when it ends.

Times are the database's (:mod:`._clock`), as the leases' are: every daemon serving the
dashboard agrees when a session ends. A session reads as its token only while it is
unexpired and its token unrevoked, so revoking a token ends its sessions at once.

Expiry slides: a session starts one idle window long, and reading it while live carries
its ``expires_at`` a full window on, never past ``created_at`` + the maximum. The row is
written only when that moves it by more than :func:`_slack` (a minute at most), so a
burst of page loads reads without writing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, update

from ._clock import db_now
from ._schema import api_tokens, dashboard_sessions
from ._tokens import _token
from ._types import TokenRow


def start_session(conn: Connection, *, session_hash: str, token_name: str, ttl_s: float) -> None:
    """Store a session of the token ``token_name`` that ends ``ttl_s`` seconds from now
    (one idle window, which reading it carries on); sessions already ended are deleted
    first."""
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


@dataclass(frozen=True, slots=True)
class LiveSession:
    """A live session's token, and the expiry to carry it to (``None``: leave it)."""

    token: TokenRow
    extend_to: datetime | None


def live_session(
    conn: Connection, session_hash: str, *, idle_s: float, max_s: float
) -> LiveSession | None:
    """The token a live session signed in with; ``None`` when the session is unknown,
    ended, expired or ``max_s`` old, its token revoked, or its expiry past now +
    ``idle_s`` (written under a longer idle window). Reads only: the new expiry,
    the earlier of now + ``idle_s`` and ``created_at`` + ``max_s``, is returned to write
    (:func:`extend_session`) when it is more than :func:`_slack` later than the stored."""
    if idle_s <= 0:
        raise ValueError(f"`idle_s` must be positive, got {idle_s}")
    if idle_s > max_s:
        raise ValueError(f"`idle_s` ({idle_s}) must be at most `max_s` ({max_s})")
    now = db_now(conn)
    row = conn.execute(
        select(
            api_tokens,
            dashboard_sessions.c.created_at.label("session_created_at"),
            dashboard_sessions.c.expires_at.label("session_expires_at"),
            now.label("database_now"),
        )
        .join(dashboard_sessions, dashboard_sessions.c.token_name == api_tokens.c.name)
        .where(
            dashboard_sessions.c.session_hash == session_hash,
            dashboard_sessions.c.expires_at > now,
            api_tokens.c.revoked_at.is_(None),
        )
    ).one_or_none()
    if row is None:
        return None
    ends = row.session_created_at + timedelta(seconds=max_s)
    if ends <= row.database_now:  # started under a longer maximum than the one in force
        return None
    target = min(ends, row.database_now + timedelta(seconds=idle_s))
    if row.session_expires_at > target + _WRITTEN_LATER:
        # written under a longer idle window (signed in before idle windows, or before
        # this one was lowered): when it was last used is not known, so it has ended —
        # read as live, an 8-hour session stayed open however long it sat unused
        return None
    moved = target - row.session_expires_at > timedelta(seconds=_slack(idle_s))
    return LiveSession(token=_token(row), extend_to=target if moved else None)


def extend_session(conn: Connection, session_hash: str, *, until: datetime) -> bool:
    """Carry a live session's expiry on to ``until``; never back (another daemon may have
    carried it further) and never for a session that ended meanwhile. False if it did
    not move."""
    moved = conn.execute(
        update(dashboard_sessions)
        .where(
            dashboard_sessions.c.session_hash == session_hash,
            dashboard_sessions.c.expires_at > db_now(conn),
            dashboard_sessions.c.expires_at < until,
        )
        .values(expires_at=until)
    ).rowcount
    return bool(moved)


#: How far past now + the idle window a stored expiry may lie and still have been written
#: under that window: the database's clock read at the write, a moment before this read.
_WRITTEN_LATER = timedelta(seconds=1)


def _slack(idle_s: float) -> float:
    """How far an expiry may lag behind a full idle window before a read writes it on: a
    minute, or a tenth of a short window (a session read in it lives at least 90 % of
    the window on)."""
    return min(60.0, idle_s / 10)


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
