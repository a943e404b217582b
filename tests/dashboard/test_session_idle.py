"""Dashboard sessions end after `server.dashboard_session_idle_s` without a request, and
never later than `server.dashboard_session_max_s` after sign-in.

A session ended only 8 h after sign-in: a browser left signed in on an operator's desk
kept operator rights for the whole 8 h. Time is moved by backdating the session's row
(its ``created_at`` and ``expires_at`` alike), never by sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update

from tests.dashboard.scenario import Served, serve, session_cookie
from tunewatch._auth import hash_token, new_token
from tunewatch._config import build_config
from tunewatch._errors import ConfigError
from tunewatch.dashboard._auth import COOKIE
from tunewatch.store import Store
from tunewatch.store._schema import dashboard_sessions

IDLE_S = 600.0
MAX_S = 1800.0
TOKEN = "idle-viewer"


def _times(store: Store, session_hash: str) -> tuple[datetime, datetime]:
    with store.engine.connect() as conn:
        created, expires = conn.execute(
            select(dashboard_sessions.c.created_at, dashboard_sessions.c.expires_at).where(
                dashboard_sessions.c.session_hash == session_hash
            )
        ).one()
    return created, expires


# -- the store, on both backends ----------------------------------------------------------


@pytest.fixture
def session(store_url: str) -> Iterator[tuple[Store, str]]:
    """A store with a viewer's session started (``expires_at`` one idle window on)."""
    with Store.open(store_url) as store:
        store.add_token(name=TOKEN, role="viewer", token_hash=hash_token(new_token()), actor="test")
        session_hash = hash_token(new_token())
        store.start_session(session_hash=session_hash, token_name=TOKEN, ttl_s=IDLE_S)
        yield store, session_hash


def _read(store: Store, session_hash: str) -> str | None:
    token = store.session_token(session_hash, idle_s=IDLE_S, max_s=MAX_S)
    return None if token is None else token.name


def _age(store: Store, session_hash: str, seconds: float) -> None:
    """Move the session ``seconds`` into the past, as if that long had gone by."""
    created, expires = _times(store, session_hash)
    by = timedelta(seconds=seconds)
    with store.engine.begin() as conn:
        conn.execute(
            update(dashboard_sessions)
            .where(dashboard_sessions.c.session_hash == session_hash)
            .values(created_at=created - by, expires_at=expires - by)
        )


def test_a_session_idle_past_its_window_reads_as_ended(session: tuple[Store, str]) -> None:
    store, session_hash = session
    assert _read(store, session_hash) == TOKEN
    _age(store, session_hash, IDLE_S + 60)
    assert _read(store, session_hash) is None


def test_a_session_used_within_its_window_outlives_its_first_deadline(
    session: tuple[Store, str],
) -> None:
    store, session_hash = session
    _age(store, session_hash, IDLE_S - 120)
    assert _read(store, session_hash) == TOKEN  # used: extended to a full window from now
    _age(store, session_hash, 240)  # past the first deadline by 120 s
    assert _read(store, session_hash) == TOKEN


def test_a_session_used_again_at_once_is_not_written(session: tuple[Store, str]) -> None:
    """A page load within a minute of the last extension reads, and writes nothing."""
    store, session_hash = session
    before = _times(store, session_hash)
    assert _read(store, session_hash) == TOKEN
    assert _times(store, session_hash) == before
    _age(store, session_hash, 120)
    aged = _times(store, session_hash)
    assert _read(store, session_hash) == TOKEN
    created, expires = _times(store, session_hash)
    assert created == aged[0] and expires - aged[1] >= timedelta(seconds=110)


def test_an_active_session_never_outlives_its_maximum(session: tuple[Store, str]) -> None:
    store, session_hash = session
    step = IDLE_S - 60
    used = 0.0
    while used + step < MAX_S:  # used within every idle window
        _age(store, session_hash, step)
        used += step
        assert _read(store, session_hash) == TOKEN, f"ended {used} s after sign-in"
    created, expires = _times(store, session_hash)
    assert expires == created + timedelta(seconds=MAX_S)
    _age(store, session_hash, MAX_S - used + 1)
    assert _read(store, session_hash) is None


def test_a_session_past_a_lowered_maximum_reads_as_ended(session: tuple[Store, str]) -> None:
    """Its expiry was set under a longer maximum; the one in force now ends it."""
    store, session_hash = session
    _age(store, session_hash, IDLE_S / 2)
    shorter = IDLE_S / 4
    assert store.session_token(session_hash, idle_s=shorter, max_s=shorter) is None


def test_a_session_stored_under_a_longer_idle_window_has_ended(
    store_url: str,
) -> None:
    """Signed in before idle windows (its expiry 8 h on), or before the window was
    lowered: when it was last used is not known, and read as live it stayed open for the
    whole 8 h however long it sat unused."""
    with Store.open(store_url) as store:
        store.add_token(name=TOKEN, role="viewer", token_hash=hash_token(new_token()), actor="test")
        session_hash = hash_token(new_token())
        store.start_session(session_hash=session_hash, token_name=TOKEN, ttl_s=8 * 3600)
        assert store.session_token(session_hash, idle_s=IDLE_S, max_s=8 * 3600) is None
        kept = hash_token(new_token())  # one written under the window in force is live
        store.start_session(session_hash=kept, token_name=TOKEN, ttl_s=IDLE_S)
        assert _read(store, kept) == TOKEN


def test_reading_a_session_refuses_an_idle_window_past_the_maximum(
    session: tuple[Store, str],
) -> None:
    store, session_hash = session
    with pytest.raises(ValueError, match=r"`idle_s` \(1800.0\) must be at most `max_s` \(60.0\)"):
        store.session_token(session_hash, idle_s=1800.0, max_s=60.0)


# -- the dashboard (SQLite, as the other session tests) ----------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("session-idle")) as running:
        yield running


def _page(served: Served, cookie: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{served.url}/dashboard/", cookies=cookie, follow_redirects=False, timeout=30)


def _signed_out(r: httpx.Response) -> bool:
    return r.status_code == 303 and r.headers["location"] == "/dashboard/login"


def test_a_dashboard_left_idle_goes_to_the_sign_in(served: Served) -> None:
    idle = served.daemon.config.server.dashboard_session_idle_s
    cookie = session_cookie(served.url, served.tokens["operator"])
    assert _page(served, cookie).status_code == 200
    _age(served.daemon.store, hash_token(cookie[COOKIE]), idle + 60)
    assert _signed_out(_page(served, cookie))
    api = httpx.get(f"{served.url}/v1/dashboard/overview", cookies=cookie, timeout=30)
    assert api.status_code == 401


def test_a_dashboard_in_use_stays_signed_in_past_its_first_idle_deadline(
    served: Served,
) -> None:
    idle = served.daemon.config.server.dashboard_session_idle_s
    cookie = session_cookie(served.url, served.tokens["operator"])
    session_hash = hash_token(cookie[COOKIE])
    _age(served.daemon.store, session_hash, idle - 120)
    assert _page(served, cookie).status_code == 200
    _age(served.daemon.store, session_hash, 240)
    assert _page(served, cookie).status_code == 200


def test_the_cookie_lasts_the_session_s_maximum(served: Served) -> None:
    r = httpx.post(
        f"{served.url}/dashboard/login",
        data={"token": served.tokens["viewer"]},
        headers={"Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
        timeout=30,
    )
    maximum = served.daemon.config.server.dashboard_session_max_s
    assert f"Max-Age={int(maximum)}" in r.headers["set-cookie"]


# -- configuration ------------------------------------------------------------------------


def test_an_idle_window_longer_than_the_maximum_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        build_config(
            {"server": {"dashboard_session_idle_s": 7200, "dashboard_session_max_s": 3600}},
            env={},
        )
    message = info.value.message
    assert "`dashboard_session_idle_s` (7200.0)" in message
    assert "`dashboard_session_max_s` (3600.0)" in message


def test_session_durations_default_to_half_an_hour_idle_and_eight_hours_in_all() -> None:
    server = build_config({}, env={}).server
    assert (server.dashboard_session_idle_s, server.dashboard_session_max_s) == (1800, 8 * 3600)
