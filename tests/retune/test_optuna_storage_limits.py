"""An Optuna storage on PostgreSQL is opened with limits: a server that never answers
ends the call with a ``StudyError`` instead of holding it (a job ran 300 s past its
``wall_time_s``; the dashboard's tuning page waited psycopg's default of 130 s), and a
connection the server dropped is replaced, not failed on (a trial failed after
``pg_terminate_backend``). An operator's own URL parameters win over the defaults."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator

import optuna
import psycopg
import pytest
from sqlalchemy import make_url

from retune import StudyError, study_progress
from retune._optuna import close_storage, make_storage, open_study
from retune._optuna._storage import PG_CONNECT_DEFAULTS

pytestmark = pytest.mark.postgres

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


class _StallProxy:
    """A loopback proxy in front of PostgreSQL that accepts connections and forwards
    nothing: a middlebox (or a paused VM) that keeps TCP open while no byte passes."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener closed: the test is over
                return
            self._held.append(client)  # open, never read from nor answered

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone does not)
        self._listener.close()
        self._thread.join()
        for held in self._held:
            held.close()


@pytest.fixture
def stall_proxy() -> Iterator[_StallProxy]:
    proxy = _StallProxy()
    yield proxy
    proxy.close()


def _through(url: str, proxy: _StallProxy, **query: str) -> str:
    """``url`` pointed at ``proxy``, with ``query`` added to its own."""
    parsed = make_url(url)
    parsed = parsed.set(host="127.0.0.1", port=proxy.port).update_query_dict(query)
    return parsed.render_as_string(hide_password=False)


def _connection_parameters(backend: optuna.storages.BaseStorage) -> dict[str, str]:
    """The libpq parameters a pooled connection of ``backend`` was opened with."""
    assert isinstance(backend, optuna.storages.RDBStorage)
    pooled = backend.engine.raw_connection()
    try:
        driver = pooled.driver_connection
        assert isinstance(driver, psycopg.Connection)
        return driver.info.get_parameters()
    finally:
        pooled.close()


def test_progress_read_through_a_silent_server_fails_with_a_study_error(
    pg_url: str, stall_proxy: _StallProxy
) -> None:
    """The dashboard's read of a study: it waited psycopg's default of 130 s, every
    request to the tuning page behind it. The URL's ``connect_timeout`` bounds it here;
    without one the default of 10 s does."""
    url = _through(pg_url, stall_proxy, connect_timeout="2")
    with pytest.raises(StudyError, match="timeout") as raised:
        study_progress(url, "s")
    assert raised.value.study_name == "s"


def test_opening_a_study_through_a_silent_server_fails_with_a_study_error(
    pg_url: str, stall_proxy: _StallProxy
) -> None:
    """A worker opening its study fails the job as for an unreachable database."""
    url = _through(pg_url, stall_proxy, connect_timeout="2")
    with pytest.raises(StudyError, match="opening storage"):
        open_study(
            storage=url,
            study_name="s",
            seed=0,
            plan=None,
            pruner="none",
            heartbeat_interval=5,
        )


def test_connections_carry_the_limits_by_default(pg_url: str) -> None:
    backend = make_storage(pg_url, heartbeat_interval=None)
    try:
        parameters = _connection_parameters(backend)
    finally:
        close_storage(backend)
    assert {key: parameters.get(key) for key in PG_CONNECT_DEFAULTS} == {
        key: str(value) for key, value in PG_CONNECT_DEFAULTS.items()
    }


def test_url_parameters_win_over_the_defaults(pg_url: str) -> None:
    url = make_url(pg_url).update_query_dict({"connect_timeout": "3", "keepalives_idle": "7"})
    backend = make_storage(url.render_as_string(hide_password=False), heartbeat_interval=None)
    try:
        parameters = _connection_parameters(backend)
    finally:
        close_storage(backend)
    assert parameters["connect_timeout"] == "3"
    assert parameters["keepalives_idle"] == "7"
    assert parameters["tcp_user_timeout"] == str(PG_CONNECT_DEFAULTS["tcp_user_timeout"])


def test_libpq_environment_wins_over_the_default_connect_timeout(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PGCONNECT_TIMEOUT`` is the operator's too: a keyword argument would override it."""
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "4")
    backend = make_storage(pg_url, heartbeat_interval=None)
    try:
        parameters = _connection_parameters(backend)
    finally:
        close_storage(backend)
    assert parameters["connect_timeout"] == "4"


def test_a_connection_the_server_dropped_is_replaced_not_failed_on(pg_url: str) -> None:
    """After a restart, a failover or ``pg_terminate_backend``, the pooled connections
    are dead: the next call failed (a trial, and the job with it) although the server
    answered. Each is pinged when taken from the pool and replaced."""
    tag = f"optuna-limits-{uuid.uuid4().hex[:12]}"
    url = make_url(pg_url).update_query_dict({"application_name": tag})
    handle = open_study(
        storage=url.render_as_string(hide_password=False),
        study_name="s",
        seed=0,
        plan=None,
        pruner="none",
        heartbeat_interval=None,
    )
    try:
        assert handle.trials() == []
        with contextlib.closing(psycopg.connect(ADMIN, autocommit=True)) as admin:
            row = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (tag,),
            ).fetchone()
        assert row is not None and row[0] >= 1
        assert handle.trials() == []
    finally:
        handle.close()
