"""On PostgreSQL every store call's checkout of a pooled connection (the pool's pre-ping,
or a reconnect) has the client-side deadline of the lock timeout + 5 s: a proxy that keeps
TCP open but stops forwarding made every call other than the scoring log's writes wait
with no limit (the webhook, ``GET /v1/models``), where it should answer 503."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from frozen_proxy import FreezableProxy

from tunewatch._errors import DatabaseUnavailableError
from tunewatch.store import Store

#: The tests' lock timeout (a checkout deadline of 1 + 5 = 6 s), libpq's connect timeout
#: for the pool's reconnect after the cut-off check (its least, against the 10 s default),
#: and how long a test waits for a call through the frozen proxy before it gives up
#: (thawing the proxy, so a call that waits with no limit fails the test instead of
#: hanging it).
LOCK_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 2
GIVE_UP_S = 30.0


def _error_while_frozen(call: Callable[[], object], proxy: FreezableProxy) -> BaseException:
    """What ``call`` raises through the frozen ``proxy``; after :data:`GIVE_UP_S` the test
    fails, thawing the proxy first so the worker thread can end."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(call)
        try:
            error = future.exception(timeout=GIVE_UP_S)
        except TimeoutError:
            proxy.thaw()
            pytest.fail(f"the call through a frozen proxy still waited after {GIVE_UP_S} s")
    assert error is not None, "the call succeeded through a frozen proxy"
    return error


_CALLS: dict[str, Callable[[Store], object]] = {
    "list_models": lambda store: store.list_models(),
    "get_model": lambda store: store.get_model("m"),
    "ensure_model": lambda store: store.ensure_model(name="n", task="binary", feature_names=["a"]),
}


@pytest.mark.postgres
@pytest.mark.parametrize("call", sorted(_CALLS))
def test_a_store_call_through_a_frozen_pooled_connection_fails_as_unavailable_by_its_deadline(
    pg_url: str, caplog: pytest.LogCaptureFixture, call: str
) -> None:
    """The pool holds a connection; the proxy in front of PostgreSQL stops forwarding.
    The pre-ping of the call's checkout gets no answer: the watchdog shuts the connection
    down at the deadline, the pool's reconnect gives up at libpq's ``connect_timeout``,
    and the call fails with ``DatabaseUnavailableError`` (503) naming the deadline. Once
    the proxy forwards again, the store answers."""
    with FreezableProxy() as proxy:
        store = Store.open(
            f"{proxy.url(pg_url)}&connect_timeout={CONNECT_TIMEOUT_S}",
            lock_timeout_s=LOCK_TIMEOUT_S,
        )
        try:
            store.ensure_model(name="m", task="binary", feature_names=["a"])
            assert [m.name for m in store.list_models()] == ["m"]  # a pooled connection
            proxy.freeze()
            with caplog.at_level(logging.WARNING, logger="tunewatch.store"):
                error = _error_while_frozen(lambda: _CALLS[call](store), proxy)
            proxy.thaw()
            assert isinstance(error, DatabaseUnavailableError), repr(error)
            assert f"store {call}: database unavailable" in error.message, error.message
            assert "deadline of 6 s" in error.message, error.message
            assert any("deadline of 6 s" in r.getMessage() for r in caplog.records)
            assert [m.name for m in store.list_models()] == ["m"]
            assert store.get_model("m").name == "m"
        finally:
            proxy.thaw()
            store.close()
