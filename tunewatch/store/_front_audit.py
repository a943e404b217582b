"""``AuditFront``: the store's events, audit trail, tokens and dashboard sessions.

The part of :class:`~._store.Store` that records what happened and who may act: each
method opens one transaction and delegates to ``_events``, ``_audit`` (the hash-chained
log), ``_tokens`` or ``_sessions`` (the dashboard's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from . import _audit, _events, _sessions, _tokens
from ._front_base import StoreFront
from ._types import AuditBreak, AuditEntry, Event, TokenRow


class AuditFront(StoreFront):
    """Events (``_events``), audit (``_audit``), tokens and dashboard sessions."""

    def add_event(self, *, model: str | None, type: str, payload: Mapping[str, Any]) -> Event:
        with self._tx("add_event") as conn:
            return _events.add_event_in(conn, model=model, type=type, payload=payload)

    def add_event_after(
        self, *, model: str, type: str, payload: Mapping[str, Any], last: int | None
    ) -> Event | None:
        """Record ``type`` for ``model`` only if the newest event of that type is still the
        one of id ``last`` (``None``: there was none), the one the caller decided on; else
        ``None``: another process recorded one since (see :func:`._events.add_event_after_in`)."""
        with self._tx("add_event_after") as conn:
            return _events.add_event_after_in(
                conn, model=model, type=type, payload=payload, last=last
            )

    def list_events(
        self,
        *,
        model: str | None = None,
        type: str | None = None,
        types: Sequence[str] | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Event]:
        """Newest first; ``type`` or any of ``types``; with ``before_id`` only those older
        than that event (a lower id), the cursor of the next older page."""
        with self._read("list_events") as conn:
            return _events.list_events(
                conn, model=model, type=type, types=types, limit=limit, before_id=before_id
            )

    def event_type_stored(self, type: str, *, model: str | None = None) -> bool:
        """Whether any event of ``type`` is stored, looked for among ``model``'s first
        (see :func:`._events.event_type_stored`)."""
        with self._read("event_type_stored") as conn:
            return _events.event_type_stored(conn, type=type, model=model)

    def events_after(
        self, after_id: int, *, also: Sequence[int] = (), limit: int = 500
    ) -> list[Event]:
        """Oldest first: the events of an id above ``after_id`` and those of the ids
        ``also``, at most ``limit`` (see :func:`._events.events_after`)."""
        with self._read("events_after") as conn:
            return _events.events_after(conn, after_id=after_id, also=also, limit=limit)

    def last_event_id_before(self, before: datetime) -> int:
        """The id of the newest event stamped before ``before``; 0 when there is none."""
        with self._read("last_event_id_before") as conn:
            return _events.last_event_id_before(conn, before=before)

    def event_types(self, model: str | None = None) -> list[str]:
        """The distinct types of every event (of ``model``, if given), sorted."""
        with self._read("event_types") as conn:
            return _events.event_types(conn, model=model)

    def last_action(self, model: str, *, trigger: str, outcomes: Sequence[str]) -> Event | None:
        """The newest action event of ``model`` for ``trigger`` with one of ``outcomes``
        (the dispatcher records ``action_<outcome>`` with the trigger in its payload)."""
        with self._read("last_action") as conn:
            return _events.last_action(conn, model=model, trigger=trigger, outcomes=outcomes)

    def append_audit(
        self, *, actor: str, action: str, target: str, details: Mapping[str, Any]
    ) -> AuditEntry:
        with self._tx("append_audit") as conn:
            return _audit.append_audit_in(
                conn, actor=actor, action=action, target=target, details=details
            )

    def audit_once(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        details: Mapping[str, Any],
        recent: int,
    ) -> tuple[AuditEntry, bool]:
        """Audit ``action`` by ``actor`` about model ``target`` and record it as an event
        of that type (its payload ``details`` with ``actor``), in one transaction, unless
        one of the actor's latest ``recent`` such entries has the same ``details["digest"]``
        (a retry, sequential or concurrent): then that entry and ``False``, nothing added
        (see :func:`._audit.append_audit_once_in`)."""
        with self._tx("audit_once") as conn:
            entry, appended = _audit.append_audit_once_in(
                conn, actor=actor, action=action, target=target, details=details, recent=recent
            )
            if appended:
                _events.add_event_in(
                    conn, model=target, type=action, payload={**details, "actor": actor}
                )
            return entry, appended

    def audit_log(
        self,
        limit: int = 100,
        *,
        target: str | None = None,
        model: str | None = None,
        action: str | None = None,
        actor: str | None = None,
        before_id: int | None = None,
    ) -> list[AuditEntry]:
        """Newest first; only those about ``target`` (e.g. ``"model/v3"``), about
        ``model`` (the model or any of its versions), with ``action`` or by ``actor``, if
        given; with ``before_id`` only those older than that entry (a lower id), the
        cursor of the next older page."""
        with self._read("audit_log") as conn:
            return _audit.audit_log(
                conn,
                limit,
                target,
                model=model,
                action=action,
                actor=actor,
                before_id=before_id,
            )

    def audit_facets(self, model: str | None = None) -> tuple[list[str], list[str]]:
        """The filter values of the audit log (about ``model``, if given): the most recent
        actions and actors of its newest entries, every tuning job as ``job:*``
        (:func:`._audit.audit_facets`)."""
        with self._read("audit_facets") as conn:
            return _audit.audit_facets(conn, model)

    def verify_audit(self) -> AuditBreak | None:
        """The first break in the audit chain (an entry that does not chain or whose hash
        does not recompute, or a log that does not end at ``audit_head``); None if intact."""
        with self._read("verify_audit") as conn:
            return _audit.verify_audit(conn)

    def add_token(
        self,
        *,
        name: str,
        role: str,
        token_hash: str,
        actor: str,
        details: Mapping[str, Any] | None = None,
        bootstrap: bool = False,
    ) -> TokenRow:
        """Store a token and its ``create_token`` audit entry (by ``actor``, with the role
        and ``details``) in one transaction; only ``bootstrap`` may take the bootstrap
        admin's names (:func:`_tokens.add_token`)."""
        with self._tx("add_token") as conn:
            return _tokens.add_token(
                conn,
                name=name,
                role=role,
                token_hash=token_hash,
                actor=actor,
                details=details,
                bootstrap=bootstrap,
            )

    def revoke_token(
        self, name: str, *, actor: str, details: Mapping[str, Any] | None = None
    ) -> TokenRow:
        """Revoke a token, end its dashboard sessions and append its ``revoke_token``
        audit entry in one transaction."""
        with self._tx("revoke_token") as conn:
            revoked = _tokens.revoke_token(conn, name, actor=actor, details=details)
            _sessions.end_sessions_of(conn, revoked.name)  # as stored, however typed
            return revoked

    def rotate_token(
        self,
        name: str,
        *,
        token_hash: str,
        actor: str,
        details: Mapping[str, Any] | None = None,
    ) -> tuple[TokenRow, TokenRow]:
        """Revoke token ``name`` (unless it is already) and store its successor of the
        same role and person under the next rotated name (``root`` → ``root#2``), ending
        the old token's dashboard sessions, both audited, in one transaction;
        ``(old, new)`` (:func:`_tokens.rotate_token`)."""
        with self._tx("rotate_token") as conn:
            rotated = _tokens.rotate_token(
                conn, name, token_hash=token_hash, actor=actor, details=details
            )
            _sessions.end_sessions_of(conn, rotated[0].name)  # as stored, however typed
            return rotated

    def list_tokens(self) -> list[TokenRow]:
        with self._read("list_tokens") as conn:
            return _tokens.list_tokens(conn)

    def token_by_hash(self, token_hash: str) -> TokenRow | None:
        with self._read("token_by_hash") as conn:
            return _tokens.token_by_hash(conn, token_hash)

    # -- dashboard sessions -------------------------------------------------------------

    def start_session(self, *, session_hash: str, token_name: str, ttl_s: float) -> None:
        """Store a dashboard session of ``token_name`` ending ``ttl_s`` seconds from now by
        the database's clock (its idle window: :meth:`session_token` carries it on),
        deleting the sessions already ended."""
        with self._tx("start_session") as conn:
            _sessions.start_session(
                conn, session_hash=session_hash, token_name=token_name, ttl_s=ttl_s
            )

    def session_token(self, session_hash: str, *, idle_s: float, max_s: float) -> TokenRow | None:
        """The token of a live session (unexpired, not ended, under ``max_s`` old, its
        token unrevoked), whose expiry is carried on to now + ``idle_s`` (at most
        ``created_at`` + ``max_s``) by the database's clock. Read in a read-only
        transaction; the expiry is written in a transaction of its own, and only when it
        moves by more than a minute (or a tenth of ``idle_s``), so page loads do not each
        take the write lock."""
        with self._read("session_token") as conn:
            live = _sessions.live_session(conn, session_hash, idle_s=idle_s, max_s=max_s)
        if live is None:
            return None
        if live.extend_to is not None:
            with self._tx("extend_session") as conn:
                _sessions.extend_session(conn, session_hash, until=live.extend_to)
        return live.token

    def end_session(self, session_hash: str) -> bool:
        """End (delete) a dashboard session; False if there was none."""
        with self._tx("end_session") as conn:
            return _sessions.end_session(conn, session_hash)
