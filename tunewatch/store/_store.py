"""``Store``: the thin front of the persistence layer.

Each public method opens one transaction through :func:`transaction` (which commits,
rolls back and translates SQLAlchemy errors) and delegates to a module named after the
concern: ``_registry_rows`` (models, versions), ``_records`` (requests, outputs,
labels), ``_artefact_blobs`` (artefacts' bytes), ``_events``, ``_audit``, ``_tokens`` and
``_sessions`` (the dashboard's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import SQLAlchemyError

from .._errors import StoreError
from . import (
    _alert_episodes,
    _artefact_blobs,
    _audit,
    _clock,
    _evaluations,
    _events,
    _governance,
    _job_cancel,
    _jobs,
    _records,
    _registry_rows,
    _run_tallies,
    _sessions,
    _tokens,
    _windows,
)
from ._checkpoint import WalCheckpointer
from ._engine import (
    BOUNDED_WRITE_OPTION,
    DEFAULT_LOCK_TIMEOUT_S,
    READ_ONLY_OPTION,
    SqliteSynchronous,
    make_engine,
    sqlite_file,
    sqlite_write,
    transaction,
)
from ._evaluations import EvaluationRow
from ._governance import ApprovalRow
from ._jobs import JobRow, JobStatus
from ._migrate import (
    ArtefactKeeper,
    Migration,
    log_migration,
    migrate_to,
    needs_migration,
)
from ._retention import PurgeCounts, purge_and_audit
from ._split_checks import SplitWindow, latest_split_window, new_settings_since
from ._types import (
    AuditBreak,
    AuditEntry,
    Event,
    LabelItem,
    LabelRow,
    LabelStatus,
    ModelRow,
    OutputRecord,
    RequestRecord,
    Role,
    RunTally,
    Stage,
    Task,
    TokenRow,
    VersionRow,
    utcnow,
)
from ._windows import Window


class Store:
    """SQLite (embedded default) or PostgreSQL store for the registry, log and audit trail.

    Thread-safe: share one instance across threads. After ``fork`` call
    ``store.engine.dispose(close=False)`` in the child. A SQLite file store checkpoints
    its WAL from a thread of its own (:class:`WalCheckpointer`), never in a commit.
    """

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: SqliteSynchronous = "NORMAL",
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        path = sqlite_file(url)
        try:
            self._engine = make_engine(
                url,
                sqlite_synchronous=sqlite_synchronous,
                wal_autocheckpoint=path is None,
                lock_timeout_s=lock_timeout_s,
            )
        except SQLAlchemyError as exc:
            raise StoreError(f"store `url` is not usable: {exc}") from exc
        self._read_engine = self._engine.execution_options(**{READ_ONLY_OPTION: True})
        # The scoring log's group commit has a connection of its own (one writer thread):
        # from the shared pool, store traffic that held every connection (label writes
        # queued on a locked row, long reads) held each scoring answer for the pool's 30 s.
        # (Not an in-memory or URI-named SQLite database: another engine's connections
        # would open another database.)
        log_engine = self._engine
        if path is not None or self._engine.dialect.name != "sqlite":
            try:
                log_engine = make_engine(
                    url,
                    sqlite_synchronous=sqlite_synchronous,
                    wal_autocheckpoint=path is None,
                    lock_timeout_s=lock_timeout_s,
                    connections=1,
                )
            except SQLAlchemyError as exc:
                self._engine.dispose()
                raise StoreError(f"store `url` is not usable: {exc}") from exc
        self._log_engine = log_engine.execution_options(**{BOUNDED_WRITE_OPTION: True})
        self._checkpointer: WalCheckpointer | None = None
        if path is not None:
            self._checkpointer = WalCheckpointer(path)
            self._checkpointer.start()

    @classmethod
    def open(
        cls,
        url: str,
        *,
        sqlite_synchronous: SqliteSynchronous = "NORMAL",
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> Store:
        """Construct and migrate to the newest schema. ``lock_timeout_s``: see
        :func:`~tunewatch.store.make_engine`."""
        store = cls(url, sqlite_synchronous=sqlite_synchronous, lock_timeout_s=lock_timeout_s)
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
        return store

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def log_engine(self) -> Engine:
        """The scoring log's group commit's own engine (one connection; :attr:`engine`
        for an in-memory SQLite database)."""
        return self._log_engine.engine

    @property
    def dialect(self) -> Literal["sqlite", "postgresql"]:
        return "postgresql" if self._engine.dialect.name == "postgresql" else "sqlite"

    def migrate(
        self, *, to: str | None = None, keep_artefacts: ArtefactKeeper | None = None
    ) -> Migration | None:
        """Upgrade or downgrade the schema to revision ``to`` (default: the newest) and
        return what was done; ``None``, a no-op, when already there. The migration is
        logged once committed: logged inside the transaction, a commit that failed (a
        full disk) left a log saying "upgraded" of a store still at its revision.
        ``keep_artefacts``: given every stored artefact before a downgrade drops the
        table holding them (see :func:`~tunewatch.store._migrate.migrate_to`).

        The revision is read first in a read transaction: a store already at ``to`` is
        opened without the write lock, so a command that only reads does not queue
        behind SQLite's writer (nor hold up its group commit). The write transaction
        (and PostgreSQL's migration lock) is taken only to migrate, and the revision
        read again in it. ``StoreError``: ``to`` is not a revision this build knows
        (``unknown_revision``), or the store is at one it does not (``schema_too_new``); on
        PostgreSQL, the connection has no current schema (``no_store_schema``).
        """
        with self._read("migrate") as conn:
            if not needs_migration(conn, to):
                return None
        with self._tx("migrate") as conn:
            migration = migrate_to(conn, to, keep_artefacts=keep_artefacts)
        if migration is not None:
            log_migration(migration)
        return migration

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.log_engine.dispose()
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def ping(self) -> None:
        """Raise ``StoreUnavailableError`` if the database cannot be reached."""
        with self._read("ping") as conn:
            conn.execute(text("SELECT 1"))

    @contextmanager
    def _tx(self, operation: str) -> Iterator[Connection]:
        with transaction(self._engine, operation) as conn:
            yield conn

    @contextmanager
    def _read(self, operation: str) -> Iterator[Connection]:
        with transaction(self._read_engine, operation) as conn:
            yield conn

    def database_now(self) -> datetime:
        """The database's clock, read now: the time hosts compare (see :mod:`._clock`)."""
        with self._read("database_now") as conn:
            now: datetime = conn.execute(select(_clock.db_now(conn))).scalar_one()
            return now

    def clock_offset(self, now: Callable[[], datetime] = utcnow) -> timedelta:
        """The database's clock minus this process's (see :func:`._clock.clock_offset`)."""
        with self._read("clock_offset") as conn:
            return _clock.clock_offset(conn, now)

    # -- models and versions ------------------------------------------------------------

    def ensure_model(
        self, *, name: str, task: Task, feature_names: Sequence[str], regulated: bool = False
    ) -> ModelRow:
        with self._tx("ensure_model") as conn:
            return _registry_rows.ensure_model(
                conn, name=name, task=task, feature_names=feature_names, regulated=regulated
            )

    def regulate_model(self, name: str, *, actor: str, reason: str) -> bool:
        """Mark the model regulated, audited in the same transaction; ``False`` when it
        was already. There is no way back: regulation only tightens."""
        with self._tx("regulate_model") as conn:
            return _registry_rows.regulate_model(conn, name, actor=actor, reason=reason)

    def get_model(self, name: str) -> ModelRow:
        with self._read("get_model") as conn:
            return _registry_rows.get_model(conn, name)

    def list_models(self) -> list[ModelRow]:
        with self._read("list_models") as conn:
            return _registry_rows.list_models(conn)

    def add_version(
        self,
        *,
        model: str,
        artefact_sha256: str,
        hyperparameters: Mapping[str, Any],
        size_bytes: int,
        actor: str,
        dataset_version: str | None = None,
        parent_version: int | None = None,
        study: str | None = None,
        details: Mapping[str, Any] | None = None,
        load_memory_bytes: int | None = None,
        stage: Literal["shadow", "champion", "retired"] = "shadow",
        once_per_study: bool = False,
    ) -> VersionRow:
        """Add the model's next version; with ``once_per_study``, raise ``ConflictError``
        (``study_registered``) if ``study`` has registered a version already. As the
        champion only where the model has none (``champion_exists``) and is not regulated
        (``approval_required``), both read under the model's lock; ``retired`` adds it out
        of service in the same transaction (a bundle's version its source retired)."""
        with self._tx("add_version") as conn:
            return _registry_rows.add_version(
                conn,
                model=model,
                artefact_sha256=artefact_sha256,
                hyperparameters=hyperparameters,
                size_bytes=size_bytes,
                actor=actor,
                dataset_version=dataset_version,
                parent_version=parent_version,
                study=study,
                details=details,
                load_memory_bytes=load_memory_bytes,
                stage=stage,
                once_per_study=once_per_study,
            )

    def register_version(
        self,
        *,
        model: str,
        task: Task,
        feature_names: Sequence[str],
        artefact_sha256: str,
        hyperparameters: Mapping[str, Any],
        size_bytes: int,
        actor: str,
        regulated: bool = False,
        regulate_reason: str = "a registration asked for regulated=true",
        check_model: Callable[[ModelRow], None] | None = None,
        dataset_version: str | None = None,
        parent_version: int | None = None,
        study: str | None = None,
        details: Mapping[str, Any] | None = None,
        load_memory_bytes: int | None = None,
        stage: Literal["shadow", "champion", "retired"] = "shadow",
        once_per_study: bool = False,
        for_job: int | None = None,
    ) -> VersionRow:
        """Register a version in one transaction: the model added unless it exists (as
        :meth:`ensure_model`), ``check_model`` called with it as stored, the model marked
        regulated when ``regulated`` and it is not (as :meth:`regulate_model`, audited
        with ``regulate_reason``), and the version added (as :meth:`add_version`). A
        refusal anywhere (``check_model``'s error, the parent, ``champion_exists``,
        ``approval_required``, ``study_registered``; ``job_cancelled``: ``for_job``, the
        re-tuning job whose study chose the version, was cancelled) rolls all of it back."""
        with self._tx("register_version") as conn:
            return _registry_rows.register_version(
                conn,
                model=model,
                task=task,
                feature_names=feature_names,
                regulated=regulated,
                regulate_reason=regulate_reason,
                check_model=check_model,
                artefact_sha256=artefact_sha256,
                hyperparameters=hyperparameters,
                size_bytes=size_bytes,
                actor=actor,
                dataset_version=dataset_version,
                parent_version=parent_version,
                study=study,
                details=details,
                load_memory_bytes=load_memory_bytes,
                stage=stage,
                once_per_study=once_per_study,
                for_job=for_job,
            )

    def get_version(self, model: str, version: int) -> VersionRow:
        with self._read("get_version") as conn:
            return _registry_rows.get_version(conn, model, version)

    def get_versions(self, model: str, versions: Sequence[int]) -> list[VersionRow]:
        """``versions`` of ``model`` as one read saw them (:class:`NotFoundError` if any
        is missing)."""
        with self._read("get_versions") as conn:
            return _registry_rows.get_versions(conn, model, versions)

    def list_versions(self, model: str, stage: Stage | None = None) -> list[VersionRow]:
        with self._read("list_versions") as conn:
            return _registry_rows.list_versions(conn, model, stage)

    def champion(self, model: str) -> VersionRow | None:
        with self._read("champion") as conn:
            return _registry_rows.champion(conn, model)

    def promote(
        self,
        model: str,
        version: int,
        *,
        actor: str,
        reason: str,
        expected_champion: int | None = None,
        expected_stage: Stage | None = None,
    ) -> tuple[VersionRow, VersionRow | None]:
        """Make ``version`` the champion; returns (new champion, retired old champion).
        With ``expected_champion``, ``ConflictError`` (``champion_changed``) unless that
        version is still the champion; with ``expected_stage``, ``ConflictError``
        (``stage_changed``) unless ``version`` is still in that stage (both checked under
        the model's lock)."""
        with self._tx("promote") as conn:
            return _registry_rows.promote(
                conn,
                model,
                version,
                actor=actor,
                reason=reason,
                expected_champion=expected_champion,
                expected_stage=expected_stage,
            )

    def set_stage(
        self,
        model: str,
        version: int,
        stage: Literal["shadow", "retired", "rolled_back"],
        *,
        actor: str,
        reason: str,
        close_approvals: bool = True,
    ) -> VersionRow:
        with self._tx("set_stage") as conn:
            return _registry_rows.set_stage(
                conn,
                model,
                version,
                stage,
                actor=actor,
                reason=reason,
                close_approvals=close_approvals,
            )

    # -- artefacts ----------------------------------------------------------------------

    def put_artefact(self, data: bytes, suffix: str = ".onnx") -> bool:
        """Keep ``data`` under its SHA-256 and ``suffix`` (``.onnx``, ``.npz``, ``.html``)
        for every host sharing the store; ``False`` when it was kept already."""
        with self._tx("put_artefact") as conn:
            return _artefact_blobs.put_artefact(conn, data, suffix)

    def missing_artefacts(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Those of ``keys`` (SHA-256, suffix) whose bytes the store does not keep."""
        with self._read("missing_artefacts") as conn:
            return _artefact_blobs.missing_artefacts(conn, keys)

    def get_artefact(self, sha256: str, suffix: str = ".onnx") -> bytes | None:
        """The bytes kept under ``sha256`` and ``suffix``, or ``None``. Not verified: the
        caller checks them against ``sha256`` (``ArtefactStore.get`` does)."""
        with self._read("get_artefact") as conn:
            return _artefact_blobs.get_artefact(conn, sha256, suffix)

    # -- scoring log --------------------------------------------------------------------

    def write_records(
        self,
        requests: Sequence[RequestRecord],
        outputs: Sequence[OutputRecord],
        shadow_outputs: Sequence[OutputRecord] = (),
        tallies: Sequence[RunTally] = (),
    ) -> list[bool]:
        """Write a batch in one transaction; per request, True if it was new.

        ``outputs`` of a request of this batch whose id was already stored are not
        written (they belong to the replay, not to the stored request); outputs of
        requests not in this batch are. An id twice in ``requests`` is stored once, the
        first copy (the others are False); ``outputs`` are not told apart by copy, so pass
        only the first copy's (the recorder does). ``shadow_outputs`` are results for requests
        recorded earlier (challengers scoring in shadow): always written, whatever
        requests ride in the same batch; one already stored is ignored. ``tallies`` are
        added to the versions' run counts (:meth:`run_tally`).
        """
        if self.dialect == "sqlite":
            with sqlite_write(self._log_engine, "write_records") as cursor:
                return _records.write_records_sqlite(
                    cursor, requests, outputs, shadow_outputs, tallies
                )
        with transaction(self._log_engine, "write_records") as conn:
            return _records.write_records(conn, requests, outputs, shadow_outputs, tallies)

    def run_tally(self, model: str, version: int, role: Role) -> RunTally | None:
        """``version``'s runs in ``role`` counted so far, with their failures (shadow runs,
        counted by the recorder: ``role="challenger"``); ``None`` before the first."""
        with self._read("run_tally") as conn:
            return _run_tallies.get_tally(conn, model, version, role)

    def get_request(self, model: str, request_id: str) -> RequestRecord | None:
        with self._read("get_request") as conn:
            return _records.get_request(conn, model, request_id)

    def get_outputs(self, model: str, request_id: str) -> list[OutputRecord]:
        with self._read("get_outputs") as conn:
            return _records.get_outputs(conn, model, request_id)

    def get_external_records(
        self, model: str, request_ids: Sequence[str]
    ) -> dict[str, _records.ExternalRecord]:
        """The stored requests among ``request_ids`` by id, each with its outputs of role
        ``external``; in one read transaction, a few statements per 500 ids."""
        with self._read("get_external_records") as conn:
            return _records.get_external_records(conn, model, request_ids)

    def count_requests(self, model: str) -> int:
        with self._read("count_requests") as conn:
            return _records.count_requests(conn, model)

    def count_outputs(self, model: str, version: int | None = None) -> int:
        with self._read("count_outputs") as conn:
            return _records.count_outputs(conn, model, version)

    def request_ids(self, model: str) -> set[str]:
        with self._read("request_ids") as conn:
            return _records.request_ids(conn, model)

    def add_labels(self, model: str, items: Sequence[LabelItem]) -> list[LabelStatus]:
        with self._tx("add_labels") as conn:
            return _records.add_labels(conn, model, items)

    def get_label(self, model: str, request_id: str) -> LabelRow | None:
        with self._read("get_label") as conn:
            return _records.get_label(conn, model, request_id)

    def purge_records(
        self, *, before: datetime, batch: int = 2000, actor: str = "scheduler"
    ) -> PurgeCounts:
        """Delete the requests received before ``before`` with their labels and outputs,
        and outputs created before it whose request is gone, ``batch`` requests per
        transaction (see :mod:`._retention`). Audited once a run (``purge_records``, its
        cut-off and counts); a run that fails after deleting rows is audited with what it
        deleted and the error, and the error raised."""
        return purge_and_audit(
            lambda: self._tx("purge_records"),
            lambda: self._read("purge_records"),
            before=before,
            batch=batch,
            actor=actor,
        )

    # -- live-split checks --------------------------------------------------------------

    def latest_split_window(self, model: str) -> SplitWindow | None:
        """The newest sample-ratio check of ``model``'s live split, whatever split it
        checked, with the count it judged (see :class:`SplitWindow`)."""
        with self._read("latest_split_window") as conn:
            return latest_split_window(conn, model)

    def new_split_settings_since(self, model: str, now: datetime) -> datetime:
        """Where the count of ``model``'s live split starts when a check first sees its
        new challenger, salt or share at ``now`` (see :func:`new_settings_since`)."""
        with self._read("new_split_settings_since") as conn:
            return new_settings_since(conn, model, now)

    # -- events, audit, tokens ----------------------------------------------------------

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
        """The distinct actions and actors of the audit log (about ``model``, if given)."""
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
            _sessions.end_sessions_of(conn, name)
            return revoked

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

    # -- evaluation ---------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, *, ttl_s: float) -> bool:
        """Take or renew the lease ``name``; False while another holder's is unexpired."""
        with self._tx("acquire_lease") as conn:
            return _evaluations.acquire_lease(conn, name, holder, ttl_s)

    def release_lease(self, name: str, holder: str) -> None:
        with self._tx("release_lease") as conn:
            _evaluations.release_lease(conn, name, holder)

    def add_evaluation(
        self,
        *,
        model: str,
        version: int | None,
        kind: str,
        status: str,
        window_start: datetime | None,
        window_end: datetime,
        payload: Mapping[str, Any],
    ) -> EvaluationRow:
        with self._tx("add_evaluation") as conn:
            return _evaluations.add_evaluation(
                conn,
                model=model,
                version=version,
                kind=kind,
                status=status,
                window_start=window_start,
                window_end=window_end,
                payload=payload,
            )

    def list_evaluations(
        self,
        model: str,
        *,
        kind: str | None = None,
        version: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_id: int | None = None,
        limit: int = 1000,
    ) -> list[EvaluationRow]:
        """Newest first; ``since`` and ``until`` bound ``window_end``, both inclusive;
        ``version`` means, per kind, what :func:`._evaluations.list_evaluations` says (a
        telemetry row is of every version it measured); ``before_id``: only the rows
        listed after that evaluation of ``model`` (``NotFoundError`` if it is none)."""
        with self._read("list_evaluations") as conn:
            return _evaluations.list_evaluations(
                conn,
                model=model,
                kind=kind,
                version=version,
                since=since,
                until=until,
                before_id=before_id,
                limit=limit,
            )

    def get_evaluation(self, model: str, evaluation_id: int) -> EvaluationRow:
        with self._read("get_evaluation") as conn:
            return _evaluations.get_evaluation(conn, model=model, evaluation_id=evaluation_id)

    def window(
        self,
        model: str,
        *,
        n_features: int,
        start: datetime | None = None,
        end: datetime | None = None,
        last_n: int | None = None,
        with_features: bool = True,
    ) -> Window:
        """The model's log as arrays (features, production outputs, labels) per row;
        without ``with_features`` the input blobs are not read (``features`` is empty)."""
        with self._read("window") as conn:
            return _windows.read_window(
                conn,
                model,
                n_features=n_features,
                start=start,
                end=end,
                last_n=last_n,
                with_features=with_features,
            )

    def latencies(
        self,
        model: str,
        *,
        since: datetime | None = None,
        versions: Sequence[int] | None = None,
        newest: int | None = None,
        aligned_to: int | None = None,
        roles: Mapping[int, str] | None = None,
    ) -> dict[int, np.ndarray]:
        """Recorded single-request latencies (seconds) per version since ``since``; of
        ``versions`` only when given, and with ``newest`` only that many per version, the
        newest (a bounded read; ``newest`` needs ``versions``). With ``aligned_to`` (one
        of ``versions``) the others' are read over the period of its newest instead,
        weighted alike in time and at most as many. With ``roles`` a version it names is
        read in that role only (``{1: "champion"}``)."""
        with self._read("latencies") as conn:
            return _windows.read_latencies(
                conn,
                model,
                since=since,
                versions=versions,
                newest=newest,
                aligned_to=aligned_to,
                roles=roles,
            )

    # -- governance -----------------------------------------------------------------------

    def request_approval(
        self,
        model: str,
        version: int,
        *,
        requested_by: str,
        reason: str,
        rules: Sequence[str],
        expected_champion: int | None = None,
        expected_stage: Stage | None = None,
    ) -> ApprovalRow:
        """A promotion that waits for an approver (idempotent per pending version). With
        ``expected_champion`` or ``expected_stage``, refused as :meth:`promote` refuses
        (``champion_changed``, ``stage_changed``); ``reason`` is cut to the column."""
        with self._tx("request_approval") as conn:
            return _governance.request_approval(
                conn,
                model,
                version,
                requested_by=requested_by,
                reason=reason,
                rules=rules,
                expected_champion=expected_champion,
                expected_stage=expected_stage,
            )

    def decide_approval(
        self, approval_id: int, *, approver: str, approve: bool, reason: str
    ) -> tuple[ApprovalRow, tuple[VersionRow, VersionRow | None] | None]:
        """Approve (promoting in the same transaction) or reject; never by the requester."""
        with self._tx("decide_approval") as conn:
            return _governance.decide_approval(
                conn, approval_id, approver=approver, approve=approve, reason=reason
            )

    def get_approval(self, approval_id: int) -> ApprovalRow:
        with self._read("get_approval") as conn:
            return _governance.get_approval(conn, approval_id)

    def list_approvals(
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        limit: int = 100,
        version: int | None = None,
    ) -> list[ApprovalRow]:
        """Approval requests, newest first; ``version`` needs ``model`` to mean one."""
        with self._read("list_approvals") as conn:
            return _governance.list_approvals(
                conn, model=model, status=status, limit=limit, version=version
            )

    def rollback(
        self, model: str, *, actor: str, reason: str, expected_champion: int | None = None
    ) -> tuple[VersionRow, VersionRow]:
        """Restore the champion the current one replaced; ``(restored, rolled_back)``.

        Raises ``ConflictError`` (code ``no_previous_champion``) when there is none, and
        (``champion_changed``) when ``expected_champion`` is given and no longer serves.
        """
        with self._tx("rollback") as conn:
            return _governance.rollback(
                conn, model, actor=actor, reason=reason, expected_champion=expected_champion
            )

    # -- jobs and alerts ----------------------------------------------------------------

    def create_job(
        self,
        *,
        model: str,
        kind: str,
        trigger: Mapping[str, Any],
        spec: Mapping[str, Any],
        dedupe_key: str | None = None,
        max_active: int | None = None,
        cooldown: timedelta | None = None,
        audit: _jobs.JobAudit | None = None,
    ) -> tuple[JobRow, bool]:
        """Queue a job; ``(job, created)``. A repeated ``dedupe_key`` returns the first.
        ``ConflictError`` with code ``quota`` when ``max_active`` jobs are queued or
        running already, ``cooldown`` when a job of the model was queued less than
        ``cooldown`` ago by the database's clock; both checked atomically with the insert.
        With ``audit``, its entry for the job returned is appended in the same transaction
        (see :func:`._jobs.create_job`): a failure queues nothing."""
        with self._tx("create_job") as conn:
            return _jobs.create_job(
                conn,
                model=model,
                kind=kind,
                trigger=trigger,
                spec=spec,
                dedupe_key=dedupe_key,
                max_active=max_active,
                cooldown=cooldown,
                audit=audit,
            )

    def get_job(self, job_id: int) -> JobRow:
        with self._read("get_job") as conn:
            return _jobs.get_job(conn, job_id)

    def list_jobs(
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        limit: int = 100,
        oldest_first: bool = False,
    ) -> list[JobRow]:
        """Jobs newest first (or oldest first), at most ``limit``."""
        with self._read("list_jobs") as conn:
            return _jobs.list_jobs(
                conn, model=model, status=status, limit=limit, oldest_first=oldest_first
            )

    def count_active_jobs(self, model: str | None = None) -> int:
        with self._read("count_active_jobs") as conn:
            return _jobs.count_active(conn, model)

    def claim_job(
        self, job_id: int, worker: str, *, alive_within: timedelta | None = None
    ) -> JobRow:
        """Run or join job ``job_id`` as ``worker``; with ``alive_within``, a job another
        worker heartbeated within it stays that worker's (see :func:`_jobs.claim_job`)."""
        with self._tx("claim_job") as conn:
            return _jobs.claim_job(conn, job_id, worker, alive_within=alive_within)

    def requeue_job(self, job_id: int, worker: str) -> bool:
        with self._tx("requeue_job") as conn:
            return _jobs.requeue_job(conn, job_id, worker)

    def update_job_progress(
        self, job_id: int, progress: Mapping[str, Any], *, spec: Mapping[str, Any] | None = None
    ) -> None:
        """Merge ``progress`` (and ``spec``) into a running job's (see
        :func:`_jobs.update_progress`)."""
        with self._tx("update_job_progress") as conn:
            _jobs.update_progress(conn, job_id, progress, spec=spec)

    def record_job_window_start(self, job_id: int, start: datetime) -> None:
        """Record when running job ``job_id``'s training window begins, unless recorded
        before (see :func:`_jobs.record_window_start`)."""
        with self._tx("record_job_window_start") as conn:
            _jobs.record_window_start(conn, job_id, start)

    def earliest_job_window_start(self) -> tuple[int, datetime] | None:
        """The earliest training window start a queued or running job recorded, and the
        job's id (see :func:`_jobs.earliest_window_start`): the retention purge deletes
        nothing received from then on."""
        with self._read("earliest_job_window_start") as conn:
            return _jobs.earliest_window_start(conn)

    def cancel_job(self, job_id: int, *, actor: str, reason: str) -> JobRow:
        """Cancel a queued or running job, audited as ``cancel_job`` in the same
        transaction (see :func:`_job_cancel.cancel_job`): ``job_not_found``, or ``job_finished``
        for one already finished or whose study registered its version."""
        with self._tx("cancel_job") as conn:
            return _job_cancel.cancel_job(conn, job_id, actor=actor, reason=reason)

    def heartbeat_job(self, job_id: int) -> None:
        """A running job's worker is alive (see :meth:`requeue_stale_jobs`)."""
        with self._tx("heartbeat_job") as conn:
            _jobs.heartbeat(conn, job_id)

    def requeue_stale_jobs(self, *, older_than: timedelta, max_crashes: int) -> list[JobRow]:
        """Queue again (or fail, past ``max_crashes``) the running jobs with no heartbeat
        for ``older_than`` (:func:`_jobs.requeue_stale`); returns them. Looks first in a
        read, so the usual case takes no write lock (on SQLite, the one the scoring log's
        writer needs)."""
        with self._read("requeue_stale_jobs") as conn:
            if not _jobs.any_stale(conn, older_than):
                return []
        with self._tx("requeue_stale_jobs") as conn:
            return _jobs.requeue_stale(conn, older_than, max_crashes)

    def requeue_crashed_job(self, job: JobRow, *, error: str, max_crashes: int) -> JobRow | None:
        """See :func:`_jobs.requeue_crashed`."""
        with self._tx("requeue_crashed_job") as conn:
            return _jobs.requeue_crashed(conn, job, error=error, max_crashes=max_crashes)

    def finish_job(
        self,
        job_id: int,
        *,
        status: JobStatus,
        result: Mapping[str, Any] | None = None,
        error: str | None = None,
        replacing: tuple[str, ...] = _jobs.ACTIVE,
        worker: str | None = None,
    ) -> JobRow:
        """See :func:`_jobs.finish_job`."""
        with self._tx("finish_job") as conn:
            return _jobs.finish_job(
                conn,
                job_id,
                status=status,
                result=result,
                error=error,
                replacing=replacing,
                worker=worker,
            )

    def claim_alert_episode(
        self,
        *,
        fingerprint: str,
        starts_at: str,
        model: str | None,
        alertname: str,
        labels: Mapping[str, Any],
        stale_after: timedelta = _alert_episodes.CLAIM_TIMEOUT,
        started: datetime | None = None,
    ) -> str | None:
        """Store a firing episode and claim it for this delivery: the claim while it
        still needs a decision, None when it is decided, resolved or held by another
        delivery (at-least-once and concurrent delivery). ``started``: the database's
        time as the delivery began (:meth:`database_now`), which a resolve must precede
        by ``REFIRE_AFTER`` for the delivery to reopen it. See
        :func:`_alert_episodes.claim_alert_episode`."""
        with self._tx("claim_alert_episode") as conn:
            return _alert_episodes.claim_alert_episode(
                conn,
                fingerprint=fingerprint,
                starts_at=starts_at,
                model=model,
                alertname=alertname,
                labels=labels,
                stale_after=stale_after,
                started=started,
            )

    def alert_episode_state(
        self, *, fingerprint: str, starts_at: str, owed: str, started: datetime | None = None
    ) -> _alert_episodes.EpisodeState:
        """What a firing delivery has to do with the episode (``settled``, ``held`` or
        ``open``), read without taking a write lock: a decided one needs no write. See
        :func:`_alert_episodes.alert_episode_state`."""
        with self._read("alert_episode_state") as conn:
            return _alert_episodes.alert_episode_state(
                conn, fingerprint=fingerprint, starts_at=starts_at, owed=owed, started=started
            )

    def claim_owed_alert_episode(
        self, *, fingerprint: str, starts_at: str, owed: str
    ) -> str | None:
        """Claim a firing episode whose retune is owed (its decision is ``owed``) for this
        delivery's retry; None when it is not owed or another delivery holds it. See
        :func:`_alert_episodes.claim_owed_alert_episode`."""
        with self._tx("claim_owed_alert_episode") as conn:
            return _alert_episodes.claim_owed_alert_episode(
                conn, fingerprint=fingerprint, starts_at=starts_at, owed=owed
            )

    def alert_episode_claimed(self, *, fingerprint: str, starts_at: str) -> bool:
        """Whether a delivery holds this firing episode's claim: it is being decided, or
        the delivery died before it could release it (taken over after the timeout)."""
        with self._read("alert_episode_claimed") as conn:
            return _alert_episodes.alert_episode_claimed(
                conn, fingerprint=fingerprint, starts_at=starts_at
            )

    def settle_alert_episode(
        self,
        *,
        fingerprint: str,
        starts_at: str,
        claim: str,
        decision: str | None,
        firing: bool = False,
    ) -> bool:
        """The final ``decision`` of a claimed episode, or None to release it; with
        ``firing``, only while it fires."""
        with self._tx("settle_alert_episode") as conn:
            return _alert_episodes.settle_alert_episode(
                conn,
                fingerprint=fingerprint,
                starts_at=starts_at,
                claim=claim,
                decision=decision,
                firing=firing,
            )

    def resolve_alert_episode(self, *, fingerprint: str, starts_at: str) -> bool:
        with self._tx("resolve_alert_episode") as conn:
            return _alert_episodes.resolve_alert_episode(
                conn, fingerprint=fingerprint, starts_at=starts_at
            )
