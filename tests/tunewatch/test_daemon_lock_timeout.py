"""The store's lock timeout comes from the config (`store.lock_timeout_s`): the daemon's
store waits for a lock that long, and a stop gives requests in flight longer than that."""

from __future__ import annotations

from tunewatch._config import build_config
from tunewatch._daemon import request_grace_s
from tunewatch._open_store import open_store
from tunewatch.store._write_deadline import WRITE_DEADLINE_MARGIN_S


def test_the_daemon_s_store_waits_for_a_lock_as_long_as_the_config_says(store_url: str) -> None:
    """`open_store` never passed a lock timeout: every store waited the fixed 30 s."""
    config = build_config({"store": {"url": store_url, "lock_timeout_s": 2.5}}, env={})
    store = open_store(config)
    try:
        with store.engine.connect() as conn:
            if store.dialect == "sqlite":
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
            else:
                assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "2500ms"
    finally:
        store.close()


def test_requests_in_flight_at_a_stop_get_longer_than_the_lock_timeout_and_write_deadline() -> None:
    """A request held up by another process's lock ends in its answer or a JSON 503 only
    if uvicorn waits past the commit's lock timeout and its write deadline; a grace of
    the default timeout's 40 s cut off the requests of a store configured to wait longer."""
    config = build_config({"store": {"lock_timeout_s": 600}}, env={})
    assert request_grace_s(config) > 600 + WRITE_DEADLINE_MARGIN_S
    short = build_config({"store": {"lock_timeout_s": 0.5}}, env={})
    assert request_grace_s(short) > 0.5 + WRITE_DEADLINE_MARGIN_S
    # the stop budget the README gives (docker --stop-timeout 100) counts on the default's
    assert request_grace_s(build_config({}, env={})) == 40
