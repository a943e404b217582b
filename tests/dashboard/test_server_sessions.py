"""Dashboard sessions live on the server: the cookie names a session, never the token.

The cookie held the API token itself, so sign-out only asked the browser to forget it: a
copy taken before sign-out kept the pages open, and worked as an ``Authorization: Bearer``
token for the whole /v1 API, until the token was revoked.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from tests.dashboard.scenario import Served, serve
from tunewatch._auth import hash_token, new_token
from tunewatch.dashboard._auth import COOKIE

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("server-sessions")) as running:
        yield running


def _sign_in(served: Served, token: str, cookie: str | None = None) -> str:
    r = httpx.post(
        f"{served.url}/dashboard/login",
        data={"token": token},
        headers=SAME_ORIGIN,
        cookies={COOKIE: cookie} if cookie else None,
        follow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 303, r.text
    cookie = r.cookies.get(COOKIE)
    assert cookie
    return cookie


def _overview(served: Served, cookie: str) -> httpx.Response:
    return httpx.get(
        f"{served.url}/dashboard/", cookies={COOKIE: cookie}, follow_redirects=False, timeout=30
    )


def _signed_out(r: httpx.Response) -> bool:
    return r.status_code == 303 and r.headers["location"] == "/dashboard/login"


def test_a_cookie_replayed_after_sign_out_goes_to_the_sign_in(served: Served) -> None:
    cookie = _sign_in(served, served.tokens["operator"])
    assert _overview(served, cookie).status_code == 200
    out = httpx.post(
        f"{served.url}/dashboard/logout",
        cookies={COOKIE: cookie},
        headers={"Origin": served.url, **SAME_ORIGIN},
        follow_redirects=False,
        timeout=30,
    )
    assert _signed_out(out)
    assert _signed_out(_overview(served, cookie))
    api = httpx.get(f"{served.url}/v1/dashboard/overview", cookies={COOKIE: cookie}, timeout=30)
    assert api.status_code == 401


def test_the_cookie_is_not_the_token_and_is_no_bearer_token(served: Served) -> None:
    token = served.tokens["operator"]
    cookie = _sign_in(served, token)
    assert token not in cookie and hash_token(token) not in cookie
    r = httpx.post(
        f"{served.url}/v1/models/credit/evaluate",
        headers={"Authorization": f"Bearer {cookie}"},
        timeout=30,
    )
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "invalid_token"


def test_a_session_past_its_expiry_goes_to_the_sign_in(served: Served) -> None:
    from tunewatch.store._schema import dashboard_sessions

    cookie = _sign_in(served, served.tokens["viewer"])
    assert _overview(served, cookie).status_code == 200
    store = served.daemon.store
    past = store.database_now() - timedelta(minutes=1)
    with store.engine.begin() as conn:
        conn.execute(
            update(dashboard_sessions)
            .where(dashboard_sessions.c.session_hash == hash_token(cookie))
            .values(expires_at=past)
        )
    assert _signed_out(_overview(served, cookie))


def test_revoking_the_token_ends_its_sessions(served: Served) -> None:
    token = new_token()
    served.daemon.store.add_token(
        name="session-revoked-viewer", role="viewer", token_hash=hash_token(token), actor="test"
    )
    cookies = [_sign_in(served, token), _sign_in(served, token)]
    assert all(_overview(served, c).status_code == 200 for c in cookies)
    served.daemon.store.revoke_token("session-revoked-viewer", actor="test")
    assert all(_signed_out(_overview(served, c)) for c in cookies)


def test_a_session_reads_with_its_token_s_role_only(served: Served) -> None:
    """A viewer's session may read; a scorer's token (no ``read``) signs nobody in."""
    cookie = _sign_in(served, served.tokens["viewer"])
    assert _overview(served, cookie).status_code == 200
    r = httpx.post(
        f"{served.url}/dashboard/login",
        data={"token": served.tokens["scorer"]},
        headers=SAME_ORIGIN,
        follow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 403 and "set-cookie" not in r.headers


def test_signing_in_again_ends_the_browser_s_previous_session(served: Served) -> None:
    """The operator's session outlived a viewer's sign-in from the same browser (two
    sessions stored, the old cookie still opened the pages as the operator, up to 8 h):
    on a shared workstation the second person took the first one's access for gone."""
    first = _sign_in(served, served.tokens["operator"])
    second = _sign_in(served, served.tokens["viewer"], cookie=first)
    assert second != first
    assert _signed_out(_overview(served, first))
    assert _overview(served, second).status_code == 200
