"""On PostgreSQL every writing transaction carries the store's lock timeout itself
(``SET LOCAL lock_timeout``), not only the session it was set on at connect: behind a
transaction pooler (PgBouncer) the server connection a client connection's transaction
runs on changes, and one the pooler opened later (``server_lifetime``, ``RECONNECT``, a
growing pool) never got the session setting, so a lease renewal blocked by a lock waited
for as long as the lock was held (14 s with ``lock_timeout_s: 2``)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import make_url

from tunewatch import StoreUnavailableError
from tunewatch.store import Store

pytestmark = pytest.mark.postgres

#: The store's lock timeout, and how long the test waits for the blocked write before it
#: gives up (releasing the lock, so a write that does not time out fails the test
#: instead of hanging it).
TIMEOUT_S = 0.5
GIVE_UP_S = 10.0


@contextmanager
def _leases_locked(pg_url: str) -> Iterator[psycopg.Connection]:
    """Another session holds ``leases`` in ACCESS EXCLUSIVE mode until the block ends
    (or the connection it yields is rolled back)."""
    url = make_url(pg_url)
    schema = str(url.query["options"]).removeprefix("-csearch_path=")
    locker = psycopg.connect(
        f"host={url.host} port={url.port or 5432} user={url.username} dbname={url.database}"
    )
    try:
        locker.execute(f'LOCK TABLE "{schema}".leases IN ACCESS EXCLUSIVE MODE')
        yield locker
    finally:
        locker.rollback()
        locker.close()


def test_a_write_on_a_connection_without_the_session_lock_timeout_still_times_out(
    pg_url: str,
) -> None:
    with Store.open(pg_url, lock_timeout_s=TIMEOUT_S) as store:
        store.engine.dispose()  # the pool's one connection is the one reset below
        raw = store.engine.raw_connection()
        try:
            # standing in for a server connection the pooler opened after the client's
            # connect: the session has the server's default, no lock timeout
            driver = raw.driver_connection
            assert isinstance(driver, psycopg.Connection)
            driver.execute("RESET lock_timeout")
            driver.commit()
            assert driver.execute("SHOW lock_timeout").fetchone() == ("0",)
        finally:
            raw.close()
        assert store.engine.pool.checkedin() == 1

        with _leases_locked(pg_url) as locker, ThreadPoolExecutor(1) as pool:
            future = pool.submit(store.acquire_lease, "scheduler", "a", ttl_s=60)
            try:
                error = future.exception(timeout=GIVE_UP_S)
            except TimeoutError:
                locker.rollback()  # lets the blocked write finish, so the pool can shut down
                pytest.fail(f"the lease acquisition still waited for the lock after {GIVE_UP_S} s")

        assert isinstance(error, StoreUnavailableError), repr(error)
        assert isinstance(getattr(error.__cause__, "orig", None), psycopg.errors.LockNotAvailable)
        assert store.acquire_lease("scheduler", "a", ttl_s=60)  # the store recovers
