"""``/docs`` is gone; ``/openapi.json`` stays, and a browser will not read it as a page.

``/docs`` was FastAPI's Swagger UI: a page loading ``swagger-ui-dist@5`` (no pinned
version, no Subresource Integrity) from cdn.jsdelivr.net, with no Content-Security-Policy
and framable by any site, in the dashboard's origin. A hostile bundle there read
``/v1/dashboard/overview`` with a signed-in viewer's session and signed the browser in as
the attacker (the sign-in post was same-origin), and an admin token pasted into its
Authorize box was its to read. The dashboard's pages carry no script and forbid them; the
API's description is ``/openapi.json``, which any OpenAPI viewer or generator reads."""

from __future__ import annotations

import httpx
import pytest

from tests.tunewatch.conftest import Running

WAIT_S = 30.0  # a bound, so that a request left unanswered fails rather than hangs


@pytest.mark.parametrize("path", ["/docs", "/docs/oauth2-redirect", "/redoc"])
def test_no_swagger_page_is_served(running: Running, path: str) -> None:
    r = httpx.get(f"{running.url}{path}", timeout=WAIT_S)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.json()["code"] == "not_found" and set(r.json()) == {"error", "code"}
    assert "<script" not in r.text and "cdn.jsdelivr.net" not in r.text


def test_the_openapi_description_is_served_as_json_a_browser_will_not_sniff_or_frame(
    running: Running,
) -> None:
    r = httpx.get(f"{running.url}/openapi.json", timeout=WAIT_S)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["info"]["title"] == "tunewatch"
    assert r.headers["x-content-type-options"] == "nosniff"
    policy = {p.strip() for p in r.headers["content-security-policy"].split(";")}
    assert {"default-src 'none'", "frame-ancestors 'none'"} <= policy
    assert "<script" not in r.text and "cdn.jsdelivr.net" not in r.text
    head = httpx.head(f"{running.url}/openapi.json", timeout=WAIT_S)
    assert head.headers["x-content-type-options"] == "nosniff" and head.content == b""


def test_the_description_lists_no_swagger_page(running: Running) -> None:
    paths = httpx.get(f"{running.url}/openapi.json", timeout=WAIT_S).json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/openapi"))]
