"""A write blocked by a lock fails with ``StoreUnavailableError`` (503) after the store's
lock timeout, on both backends, instead of waiting for as long as the lock is held; on
PostgreSQL a scoring log write whose connection stops answering (a frozen proxy) fails
with it too, at a client-side deadline."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from frozen_proxy import FreezableProxy
from record_helpers import table_locked
from sqlalchemy import event, make_url

from tunewatch import StoreUnavailableError
from tunewatch.store import LabelItem, RequestRecord, Store, make_engine

#: The timeout the tests configure, and how long a test waits for the blocked write
#: before it gives up (releasing the lock, so a store that does not time out fails the
#: test instead of hanging it).
TIMEOUT_S = 0.5
GIVE_UP_S = 10.0


def _record(request_id: str) -> RequestRecord:
    return RequestRecord("m", request_id, datetime.now(UTC), "infer", 1, 1, b"\0" * 4)


def _blocked_call(
    call: Callable[[], object],
    release: Callable[[], None],
    *,
    give_up_s: float = GIVE_UP_S,
    blocked_by: str = "another session's lock",
) -> tuple[BaseException, float]:
    """What ``call`` raises while ``blocked_by`` holds it up, and the seconds it took to
    raise it; after ``give_up_s`` the test fails, releasing the block first so the worker
    thread can end."""
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        future = pool.submit(call)
        try:
            error = future.exception(timeout=give_up_s)
        except TimeoutError:
            release()  # lets the blocked write finish, so the pool can shut down
            pytest.fail(f"the write held up by {blocked_by} still waited after {give_up_s} s")
        elapsed = time.monotonic() - started
    assert error is not None, f"the write succeeded though held up by {blocked_by}"
    return error, elapsed


@pytest.fixture
def timed_store(store_url: str) -> Iterator[Store]:
    store = Store.open(store_url, lock_timeout_s=TIMEOUT_S)
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a"])
        store.write_records([_record("r1")], [])
        yield store
    finally:
        store.close()


def test_a_scoring_log_write_blocked_by_a_lock_fails_as_unavailable_after_the_timeout(
    store_url: str, timed_store: Store
) -> None:
    """The recorder's group commit: on PostgreSQL a `LOCK TABLE`, a plain `CREATE INDEX`
    or `VACUUM FULL` made every scoring request wait with no limit."""
    with table_locked(store_url) as release:
        error, elapsed = _blocked_call(
            lambda: timed_store.write_records([_record("r2")], []), release
        )
        assert elapsed < GIVE_UP_S / 2, f"the write waited {elapsed:.1f} s"
    assert isinstance(error, StoreUnavailableError), repr(error)
    assert "timeout" in error.message or "locked" in error.message, error.message
    assert timed_store.write_records([_record("r2")], []) == [True]  # the store recovers


def test_a_label_write_blocked_by_a_lock_fails_as_unavailable_after_the_timeout(
    store_url: str, timed_store: Store
) -> None:
    """Every writing transaction, not only the scoring log's, has the lock timeout
    (PostgreSQL's `lock_not_available`); the label's foreign key reads `requests`."""
    with table_locked(store_url) as release:
        error, elapsed = _blocked_call(
            lambda: timed_store.add_labels("m", [LabelItem("r1", 1.0)]), release
        )
        assert elapsed < GIVE_UP_S / 2, f"the write waited {elapsed:.1f} s"
    assert isinstance(error, StoreUnavailableError), repr(error)
    if timed_store.dialect == "postgresql":
        assert isinstance(error.__cause__, Exception)
        assert isinstance(getattr(error.__cause__, "orig", None), psycopg.errors.LockNotAvailable)
    assert timed_store.add_labels("m", [LabelItem("r1", 1.0)]) == ["created"]


@pytest.mark.postgres
def test_postgres_connections_bound_connecting_and_detect_a_dead_peer(pg_url: str) -> None:
    """libpq's connect_timeout and TCP keepalives: a half-open connection fails the
    transaction on it instead of leaving it waiting for an answer that never comes."""
    engine = make_engine(pg_url, lock_timeout_s=TIMEOUT_S)
    try:
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            params = driver.info.get_parameters()
            settings = {
                name: conn.exec_driver_sql(f"SHOW {name}").scalar()
                for name in ("lock_timeout", "statement_timeout")
            }
    finally:
        engine.dispose()
    assert params["connect_timeout"] == "10"
    assert params["keepalives"] == "1"
    assert (
        int(params["keepalives_idle"])
        + int(params["keepalives_interval"]) * int(params["keepalives_count"])
        <= 30
    )
    # Reads and migrations keep no statement limit: only the scoring log's writes do.
    assert settings == {"lock_timeout": "500ms", "statement_timeout": "0"}


@pytest.mark.postgres
def test_connect_options_in_the_url_win_over_the_defaults(pg_url: str) -> None:
    engine = make_engine(f"{pg_url}&connect_timeout=3&keepalives_idle=7")
    try:
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            params = driver.info.get_parameters()
            search_path = conn.exec_driver_sql("SHOW search_path").scalar()
    finally:
        engine.dispose()
    assert (params["connect_timeout"], params["keepalives_idle"]) == ("3", "7")
    assert search_path == str(make_url(pg_url).query["options"]).removeprefix("-csearch_path=")


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True])
def test_a_lock_timeout_that_is_no_positive_finite_number_is_refused(
    sqlite_url: str, value: float
) -> None:
    with pytest.raises(ValueError, match="`lock_timeout_s` must be"):
        make_engine(sqlite_url, lock_timeout_s=value)


@pytest.mark.postgres
def test_a_read_only_postgresql_is_unavailable_not_an_error(pg_url: str) -> None:
    """A failover that left the URL on a standby (or `default_transaction_read_only`):
    psycopg raises "cannot execute INSERT in a read-only transaction" as InternalError,
    which became a plain StoreError: a 500 per request, and the recorder retried every
    group record by record."""
    Store.open(pg_url).close()  # the schema, migrated
    store = Store(pg_url + "%20-cdefault_transaction_read_only%3Don")
    try:
        with pytest.raises(StoreUnavailableError, match="read-only"):
            store.write_records([_record("r1")], [])
        with pytest.raises(StoreUnavailableError, match="read-only"):
            store.ensure_model(name="m", task="binary", feature_names=["a"])
    finally:
        store.close()


#: The frozen-proxy tests' lock timeout, and how long they wait for a write through a
#: frozen connection before they give up (thawing the proxy, so a write that waits with
#: no limit fails the test instead of hanging it).
FROZEN_LOCK_TIMEOUT_S = 1.0
FROZEN_GIVE_UP_S = 30.0


def _freeze_at(store: Store, proxy: FreezableProxy, frozen_at: str) -> None:
    """Freeze ``proxy`` once, at a step of the store's next scoring log write: its
    checkout (the pool's pre-ping), the ``INSERT`` of its requests or its ``COMMIT``."""
    if frozen_at == "checkout":
        proxy.freeze()
        return
    pending = [True]

    def freeze(*args: Any) -> None:
        if pending and (frozen_at == "commit" or args[2].startswith("INSERT INTO requests")):
            pending.clear()
            proxy.freeze()

    event.listen(
        store.log_engine, "commit" if frozen_at == "commit" else "before_cursor_execute", freeze
    )


@pytest.mark.postgres
@pytest.mark.parametrize("frozen_at", ["checkout", "insert", "commit"])
def test_a_scoring_log_write_through_a_frozen_connection_fails_as_unavailable_by_its_deadline(
    pg_url: str, caplog: pytest.LogCaptureFixture, frozen_at: str
) -> None:
    """A proxy (pgbouncer, a middlebox) that keeps the connection open but stops
    forwarding: no server-side timeout answers through it, and keepalives see a live
    peer. The group commit waited forever: every scoring request with it, nothing logged.
    A client-side deadline (lock timeout + 5 s) shuts the connection down, whatever step
    it hangs in; the pool drops it, and once the proxy forwards again writes succeed."""
    with FreezableProxy() as proxy:
        # a reconnect through the frozen proxy gives up within 2 s, not libpq's 10 s
        store = Store.open(
            f"{proxy.url(pg_url)}&connect_timeout=2", lock_timeout_s=FROZEN_LOCK_TIMEOUT_S
        )
        invalidated: list[object] = []
        try:
            store.ensure_model(name="m", task="binary", feature_names=["a"])
            assert store.write_records([_record("r1")], []) == [True]
            event.listen(store.log_engine, "invalidate", lambda *args: invalidated.append(args[0]))
            _freeze_at(store, proxy, frozen_at)
            with caplog.at_level(logging.WARNING, logger="tunewatch.store"):
                error, elapsed = _blocked_call(
                    lambda: store.write_records([_record("r2")], []),
                    proxy.thaw,
                    give_up_s=FROZEN_GIVE_UP_S,
                    blocked_by="a frozen proxy",
                )
            proxy.thaw()
            assert isinstance(error, StoreUnavailableError), repr(error)
            assert "deadline of 6 s" in error.message, error.message
            assert elapsed < FROZEN_LOCK_TIMEOUT_S + 15, f"the write waited {elapsed:.1f} s"
            assert any("deadline of 6 s" in r.getMessage() for r in caplog.records)
            assert len(invalidated) == 1  # the broken connection left the pool
            assert store.write_records([_record("r3")], []) == [True]
            # a COMMIT the proxy held may reach the server once it forwards again (as on
            # any connection lost in a commit: the client cannot know); nothing else does
            if frozen_at != "commit":
                assert store.get_request("m", "r2") is None
        finally:
            proxy.thaw()
            store.close()
