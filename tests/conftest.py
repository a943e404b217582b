"""Shared fixtures: store URLs for both backends and the service-marker policy.

Tests that need a service carry a marker (``postgres``, ``prometheus``, ``browser``).
Locally a missing service skips them with the reason; under ``CI=true`` it fails them,
so a green CI run can never hide a test that did not run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
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


@pytest.fixture
def pg_url(pg_available: None) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    import psycopg

    schema = f"tw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True
    ) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True
        ) as c:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')


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
