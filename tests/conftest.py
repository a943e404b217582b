"""Shared fixtures: store URLs for both backends and the service-marker policy.

Tests that need a service carry a marker (``postgres``, ``prometheus``, ``browser``).
Locally a missing service skips them with the reason; under ``CI=true`` it fails them,
so a green CI run can never hide a test that did not run.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

PG_BASE_URL = os.environ.get(
    "TUNEWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def service_missing(reason: str) -> None:
    """Skip locally, fail under CI: a missing service must never pass silently there."""
    if IN_CI:
        pytest.fail(f"required service missing under CI=true: {reason}")
    pytest.skip(reason)


def _pg_available() -> str | None:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a pinned dependency
        return f"psycopg not importable: {exc}"
    try:
        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3
        ):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at 127.0.0.1:5432 not reachable: {exc}"


@pytest.fixture(scope="session")
def pg_available() -> None:
    problem = _pg_available()
    if problem is not None:
        service_missing(problem)


PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def drop_pg_schema(schema: str, *, end_holders: bool = False) -> None:
    """Drop ``schema`` and everything in it, waiting at most 60 s for its locks: a session
    a test leaked in a transaction on one of its tables made ``DROP SCHEMA`` wait for ever
    and hung the whole run. ``end_holders``: first end every other session holding a lock
    in it (the outage tests', whose cut connections leave sessions that no one ends)."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute("SET lock_timeout = '60s'")
        if end_holders:
            c.execute(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
                "JOIN pg_class r ON r.oid = l.relation "
                "JOIN pg_namespace n ON n.oid = r.relnamespace "
                "WHERE n.nspname = %s AND l.pid <> pg_backend_pid()",
                (schema,),
            )
        c.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextmanager
def fresh_pg_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped on leaving (for a
    fixture of a wider scope than :func:`pg_url`'s; check ``pg_available`` first)."""
    import psycopg

    schema = f"tw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    finally:
        drop_pg_schema(schema)


@pytest.fixture
def pg_url(pg_available: None) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture(scope="session")
def trained() -> list[Any]:
    """The example champion (logistic) and challenger (gradient boosting), trained once."""
    from tunewatch._example import example_models

    return example_models(seed=0, n_rows=1500)


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/tunewatch.db"  # type: ignore[str-bytes-safe]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Parametrises a test over both store backends (the contract-suite fixture)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/tunewatch.db"  # type: ignore[str-bytes-safe]
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(autouse=True)
def _store_warnings_logged_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test logs the store's "database unavailable" warnings as a process starting
    does: the process-wide throttle (at most one a minute) is not one another test used."""
    from tunewatch import _outage_log

    monkeypatch.setattr(_outage_log, "UNAVAILABLE_STORE", _outage_log.ThrottledWarnings())


@pytest.fixture(autouse=True, scope="session")
def _in_process_workers_keep_the_test_process_priority() -> Iterator[None]:
    """A worker run inside the test process (``main([... "worker" ...])``, ``retune
    --run``) leaves the process's priority alone: lowered to ``tuning.worker_nice`` it
    stayed so for every later test and process the session starts. Worker processes the
    tests start lower themselves (tests/tunewatch/test_worker_priority.py).

    Session-scoped: module fixtures run workers too (test_greater_is_better_display.py's
    ``retune --run``), before any function fixture, and a test's ``monkeypatch.undo()``
    would undo a function fixture's patch."""
    from tunewatch import _worker_priority

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            _worker_priority, "lower_priority", lambda nice: os.getpriority(os.PRIO_PROCESS, 0)
        )
        yield


@pytest.fixture(autouse=True, scope="session")
def _httpx_clients_share_one_tls_context() -> Iterator[None]:
    """Every httpx client a test makes (``httpx.get`` and ``httpx.post`` make one each)
    built a TLS context of its own, loading certifi's CA bundle: 23 ms, over thousands of
    calls a run. The tests speak plain HTTP to loopback: their clients share one."""
    import httpx._transports.default as transport

    build = transport.create_ssl_context
    shared = build()

    def create(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if verify is True and cert is None and trust_env:
            return shared
        return build(verify=verify, cert=cert, trust_env=trust_env)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transport, "create_ssl_context", create)
        yield


class _MigratedStores:
    """Stores this build's migrations made, one per backend, made on first use in this
    test process: a SQLite file, and the SQL ``pg_dump`` wrote of a PostgreSQL schema."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._sqlite: Path | None = None
        self._pg: tuple[str, str] | None = None

    def sqlite(self, migrate: Callable[..., object]) -> Path:
        if self._sqlite is None:
            from tunewatch.store import Store

            made = self._tmp.mktemp("migrated-store") / "tunewatch.db"
            with Store(f"sqlite:///{made}") as store:
                migrate(store)
            self._sqlite = made
        return self._sqlite

    def postgres(self, migrate: Callable[..., object]) -> tuple[str, str]:
        """The SQL, and the schema name it holds (to be replaced by the new store's)."""
        if self._pg is None:
            import psycopg

            from tunewatch.store import Store

            made = f"tw_template_{uuid.uuid4().hex}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f'CREATE SCHEMA "{made}"')
            try:
                with Store(f"{PG_BASE_URL}?options=-csearch_path%3D{made}") as store:
                    migrate(store)
                dump = subprocess.run(
                    ["pg_dump", "--no-owner", "--no-privileges", "--inserts", "-n", made, PG_ADMIN],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=60,
                ).stdout
            finally:
                with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                    c.execute(f'DROP SCHEMA "{made}" CASCADE')
            # the tables, not the schema (the store's exists) nor psql's meta-commands
            # (`\restrict`) nor a search_path for the session that runs it
            kept = [
                line
                for line in dump.splitlines()
                if not line.startswith(("\\", "CREATE SCHEMA", "SELECT pg_catalog.set_config"))
            ]
            self._pg = "\n".join(kept), made
        return self._pg


@pytest.fixture(scope="session")
def _migrated_stores(tmp_path_factory: pytest.TempPathFactory) -> _MigratedStores:
    return _MigratedStores(tmp_path_factory)


@pytest.fixture(autouse=True)
def _a_new_store_starts_as_a_migrated_copy(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store this test process opens with no tables yet (a new SQLite file, an empty
    PostgreSQL schema) gets a copy of the tables this build's migrations made, not the
    migrations: the same schema, made by ``Store.migrate`` once per process (~1 ms or
    ~0.1 s a store, where migrating took ~0.2 s on SQLite and ~0.3 s on PostgreSQL — over
    the suite's thousands of stores, minutes of CI). Tests about making or migrating a
    store are marked ``new_store`` and migrate; so does every store a process the tests
    start (``tunewatch serve``, a worker) makes."""
    if request.node.get_closest_marker("new_store") is not None:
        return
    from sqlalchemy import make_url

    from tunewatch.store import Store
    from tunewatch.store._engine import sqlite_file
    from tunewatch.store._migrate import Migration, log_migration, newest_revision

    migrate = Store.migrate
    stores: _MigratedStores = request.getfixturevalue("_migrated_stores")

    def copied(self: Store, *, to: str | None = None, keep_artefacts: Any = None) -> Any:
        url = self.engine.url
        path = sqlite_file(url.render_as_string(hide_password=False))
        if to is not None or (path is None and self.dialect == "sqlite"):
            return migrate(self, to=to, keep_artefacts=keep_artefacts)
        with self._read("migrate") as conn:
            tables = conn.exec_driver_sql(
                "SELECT count(*) FROM sqlite_master"
                if self.dialect == "sqlite"
                else "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
            ).scalar_one()
            schema = (
                None
                if self.dialect == "sqlite"
                else conn.exec_driver_sql("SELECT current_schema()").scalar_one()
            )
        if tables or (self.dialect == "postgresql" and schema is None):  # refused there
            return migrate(self, to=to, keep_artefacts=keep_artefacts)
        if self.dialect == "sqlite":
            template = sqlite3.connect(stores.sqlite(migrate))
            raw = self.engine.raw_connection()
            try:
                target = raw.driver_connection
                assert isinstance(target, sqlite3.Connection)
                template.backup(target)
            finally:
                raw.close()
                template.close()
        else:
            import psycopg

            sql, made = stores.postgres(migrate)
            libpq = make_url(url).set(drivername="postgresql")
            with psycopg.connect(libpq.render_as_string(hide_password=False)) as c:
                c.execute(sql.replace(made, str(schema)))
        migration = Migration(from_revisions=(), to=newest_revision(), downgrade=False)
        log_migration(migration)
        return migration

    monkeypatch.setattr(Store, "migrate", copied)
