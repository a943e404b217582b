"""Dashboard sign-in and sign-out: form posts from another site are refused (login CSRF)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.dashboard.scenario import Served, serve

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
