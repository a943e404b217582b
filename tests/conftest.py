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
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def _migrated_pg_schema(pg_available: None) -> Iterator[tuple[str, str]]:
    """The SQL that makes a PostgreSQL store this build's migrations made, as ``pg_dump``
    wrote it of one (its schema's name in it, the second item): each test's ``pg_url``
    starts as a copy under a name of its own. A migration takes ~0.3 s, a copy ~0.1 s."""
    import psycopg

    from tunewatch.store import Store

    made = f"tw_template_{uuid.uuid4().hex}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{made}"')
    try:
        Store.open(f"{PG_BASE_URL}?options=-csearch_path%3D{made}").close()
        dump = subprocess.run(
            ["pg_dump", "--no-owner", "--no-privileges", "--inserts", "-n", made, PG_ADMIN],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        # not psql's meta-commands (`\restrict`): the SQL is run by psycopg
        yield "\n".join(line for line in dump.splitlines() if not line.startswith("\\")), made
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'DROP SCHEMA "{made}" CASCADE')


@contextmanager
def _pg_schema(request: pytest.FixtureRequest, *, migrated: bool) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a schema of its own, dropped afterwards:
    ``migrated``, a store at this build's newest revision; else an empty schema."""
    import psycopg

    schema = f"tw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        if migrated:
            sql, made = request.getfixturevalue("_migrated_pg_schema")
            c.execute(sql.replace(made, schema))
        else:
            c.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, pg_available: None) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema, dropped afterwards
    (a store or an Optuna storage: each makes its tables there)."""
    with _pg_schema(request, migrated=False) as url:
        yield url


@pytest.fixture(scope="session")
def trained() -> list[Any]:
    """The example champion (logistic) and challenger (gradient boosting), trained once."""
    from tunewatch._example import example_models

    return example_models(seed=0, n_rows=1500)


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store this build's migrations made, in one file (no WAL beside it): each
    test's ``sqlite_url`` starts as a copy. Migrating a new store takes ~0.2 s (23
    Alembic revisions), a copy ~1 ms; over the suite's stores that was minutes of CI."""
    from tunewatch.store import Store

    made = tmp_path_factory.mktemp("migrated-store")
    with Store.open(f"sqlite:///{made}/made.db"):
        pass
    template = made / "tunewatch.db"
    with sqlite3.connect(made / "made.db") as source, sqlite3.connect(template) as copy:
        source.backup(copy)
    source.close()
    copy.close()
    return template


def _sqlite_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite URL under ``tmp_path``: a store already at this build's newest revision,
    or, for a test marked ``new_store`` (one about creating or migrating a store), no
    file yet."""
    path = tmp_path / "tunewatch.db"
    if request.node.get_closest_marker("new_store") is None:
        template = request.getfixturevalue("_migrated_sqlite")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # as the store makes it
        with os.fdopen(fd, "wb") as copy:
            copy.write(template.read_bytes())
    return f"sqlite:///{path}"


@pytest.fixture
def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _sqlite_store_url(request, tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Parametrises a test over both store backends (the contract-suite fixture): a store
    already at this build's newest revision, or, for a test marked ``new_store``, none
    yet (no SQLite file; an empty PostgreSQL schema)."""
    if request.param == "sqlite":
        yield _sqlite_store_url(request, tmp_path)
        return
    request.getfixturevalue("pg_available")
    migrated = request.node.get_closest_marker("new_store") is None
    with _pg_schema(request, migrated=migrated) as url:
        yield url


@pytest.fixture(autouse=True)
def _store_warnings_logged_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test logs the store's "database unavailable" warnings as a process starting
    does: the process-wide throttle (at most one a minute) is not one another test used."""
    from tunewatch import _outage_log

    monkeypatch.setattr(_outage_log, "UNAVAILABLE_STORE", _outage_log.ThrottledWarnings())


@pytest.fixture(autouse=True)
def _in_process_workers_keep_the_test_process_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker run inside the test process (``main([... "worker" ...])``, ``retune
    --run``) leaves the process's priority alone: lowered to ``tuning.worker_nice`` it
    stayed so for every later test and process the session starts. Worker processes the
    tests start lower themselves (tests/tunewatch/test_worker_priority.py)."""
    from tunewatch import _worker_priority

    monkeypatch.setattr(
        _worker_priority, "lower_priority", lambda nice: os.getpriority(os.PRIO_PROCESS, 0)
    )
