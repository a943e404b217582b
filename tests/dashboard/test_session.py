"""Dashboard sign-in and sign-out: form posts from another site are refused (login CSRF)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest

from tests.dashboard.scenario import Served, serve, session_cookie
from tunewatch._auth import hash_token
from tunewatch.dashboard._auth import MAX_FORM_BYTES

EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("session")) as running:
        yield running


def _post(served: Served, path: str, headers: dict[str, str], token: str = "") -> httpx.Response:
    return httpx.post(
        f"{served.url}{path}",
        content=f"token={token}" if token else "",
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        follow_redirects=False,
        timeout=30,
    )


CROSS_SITE = {
    "cross-site-browser": {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
    "sibling-subdomain": {"Origin": "https://other.example", "Sec-Fetch-Site": "same-site"},
    "old-browser-origin-only": {"Origin": EVIL},
    "opaque-origin": {"Origin": "null"},
    "old-browser-behind-a-proxy": {"Origin": EVIL, "X-Forwarded-Host": "tunewatch.example"},
    # urlsplit raises on it: the post was a 500
    "malformed-origin": {"Origin": "http://[::1"},
}


@pytest.mark.parametrize("headers", CROSS_SITE.values(), ids=CROSS_SITE.keys())
def test_a_login_posted_from_another_site_is_refused_without_a_session(
    served: Served, headers: dict[str, str]
) -> None:
    r = _post(served, "/dashboard/login", headers, served.tokens["viewer"])
    assert r.status_code == 403, r.text
    assert "set-cookie" not in r.headers
    assert "cross-site" in r.text and "text/html" in r.headers["content-type"]


@pytest.mark.parametrize(
    ("sec_fetch_site", "origin"),
    [("same-origin", True), (None, True), (None, False)],
    ids=["browser-same-origin", "old-browser-same-origin", "no-origin-like-curl"],
)
def test_a_login_from_the_dashboard_itself_or_without_an_origin_signs_in(
    served: Served, sec_fetch_site: str | None, origin: bool
) -> None:
    headers = {"Origin": served.url} if origin else {}
    if sec_fetch_site is not None:
        headers["Sec-Fetch-Site"] = sec_fetch_site
    r = _post(served, "/dashboard/login", headers, served.tokens["viewer"])
    assert r.status_code == 303, r.text
    assert r.headers["set-cookie"].startswith("tunewatch_session=")


@pytest.mark.parametrize(
    "forwarded",
    ["tunewatch.example", "tunewatch.example, 10.0.0.5:8080"],
    ids=["one-proxy", "a-chain-of-proxies"],
)
def test_a_login_from_the_dashboard_behind_a_proxy_rewriting_host_signs_in(
    served: Served, forwarded: str
) -> None:
    """nginx's and Apache's defaults send the daemon their own upstream as ``Host``; a
    browser without ``Sec-Fetch-Site`` (Safari before 16.4) sends the page's ``Origin``,
    which named another host than ``Host``: every sign-in was refused. The proxy's
    ``X-Forwarded-Host`` (a cross-site form cannot set it) names the page's host."""
    headers = {"Origin": "https://tunewatch.example", "X-Forwarded-Host": forwarded}
    r = _post(served, "/dashboard/login", headers, served.tokens["viewer"])
    assert r.status_code == 303, r.text
    assert r.headers["set-cookie"].startswith("tunewatch_session=")


def test_a_logout_posted_from_another_site_is_refused_and_keeps_the_session(
    served: Served,
) -> None:
    r = _post(served, "/dashboard/logout", {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert "set-cookie" not in r.headers
    own = {"Origin": served.url, "Sec-Fetch-Site": "same-origin"}
    same = _post(served, "/dashboard/logout", own)
    assert same.status_code == 303 and same.headers["location"] == "/dashboard/login"
    assert same.headers["set-cookie"].startswith('tunewatch_session=""')


NOT_PRINTABLE_ASCII = {
    # Starlette could not encode '€' into Set-Cookie: the sign-in was a 500
    "euro-sign": "tw_€uro-admin-token",
    # Latin-1 holds it, but an API client sends it as UTF-8 and the daemon reads headers
    # as Latin-1: a token the dashboard took that no Authorization header could match
    "latin-1-letter": "tw_café-admin-token",
    "control-character": "tw_bell\x07-admin-token",
}


@pytest.mark.parametrize("token", NOT_PRINTABLE_ASCII.values(), ids=NOT_PRINTABLE_ASCII.keys())
def test_login_with_non_ascii_token_is_refused_not_500(served: Served, token: str) -> None:
    """A stored token (``TUNEWATCH_ADMIN_TOKEN`` took any text) that is not printable
    ASCII is refused at sign-in like a wrong one, with the form and a message."""
    served.daemon.store.add_token(
        name=f"odd-{len(token)}-{ord(max(token))}",
        role="admin",
        token_hash=hash_token(token),
        actor="test",
    )
    r = httpx.post(
        f"{served.url}/dashboard/login",
        content=urlencode({"token": token}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 401, r.text
    assert "set-cookie" not in r.headers
    assert "text/html" in r.headers["content-type"]
    assert 'name="token"' in r.text  # the form again
    assert "token must be printable ASCII" in r.text
    assert token not in r.text  # the secret is not echoed


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/dashboard/models/credit/ab", {"limit": "101"}, "limit"),
        ("/dashboard/models/credit/events", {"limit": "x"}, "limit"),
        ("/dashboard/models/credit/events", {"type": "t" * 201}, "type"),
        ("/dashboard/models/credit/drift/abc/report", {}, "evaluation_id"),
        ("/dashboard/models/credit/drift/-1/report", {}, "evaluation_id"),
    ],
    ids=["ab-limit", "events-limit", "events-type", "report-id-text", "report-id-negative"],
)
def test_a_page_reads_its_parameters_after_the_session(
    served: Served, path: str, params: dict[str, str], named: str
) -> None:
    """FastAPI validated them first: a signed-out browser got a JSON 400 instead of the
    sign-in, and a signed-in one a JSON body instead of a page."""
    anonymous = httpx.get(f"{served.url}{path}", params=params, follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/dashboard/login"
    signed_in = httpx.get(
        f"{served.url}{path}",
        params=params,
        cookies=session_cookie(served.url, served.tokens["viewer"]),
        follow_redirects=False,
    )
    assert signed_in.status_code == 400
    assert signed_in.headers["content-type"].startswith("text/html")
    assert f"`{named}` must be" in signed_in.text


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_sign_in_form_past_its_limit_is_refused_before_it_is_read_or_inflated(
    served: Served, encoding: str
) -> None:
    """The sign-in is open to anyone: it read a body up to `server.max_body_bytes` (8 MiB)
    and inflated a gzip one before its 4 KiB form limit refused it, so 8 KB from anyone
    cost the server 16 MiB. The body limit now refuses a form past 4 KiB as it arrives,
    and stops inflating there."""
    form = b"token=" + b"a" * (256 * 1024)
    content = gzip.compress(form) if encoding == "gzip" else form
    r = httpx.post(
        f"{served.url}/dashboard/login",
        content=content,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Encoding": encoding,
        },
        follow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "body_too_large"
    # "... once decompressed" for the gzip body
    assert r.json()["error"].startswith(f"request body exceeds the limit of {MAX_FORM_BYTES} bytes")
    assert "set-cookie" not in r.headers
