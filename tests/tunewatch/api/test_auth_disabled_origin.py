"""With ``auth.disabled: true`` a change must come from the daemon's own origin or from a
client that is no browser, and every request must name a loopback host.

Auth-less mode makes every caller the anonymous admin and is allowed on a loopback host
only; but any web page the user opens runs on this machine. A page of another site sent
``fetch(".../rollback", {mode: "no-cors", method: "POST", body: new Blob([json])})`` (a
"simple" request: no preflight, and a body without ``Content-Type`` is JSON here) and
rolled the champion back, audited as ``anonymous``; a page whose name was rebound to
127.0.0.1 read the whole API as its own origin, the daemon answering any ``Host``. curl
and tritonclient send no ``Origin`` nor ``Sec-Fetch-Site`` and are answered as before;
with authentication on, the token decides and nothing here applies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel

WAIT_S = 30.0  # a bound, so that a request left unanswered fails rather than hangs
ROLLBACK = f"/v1/models/{MODEL}/rollback"
PROMOTE = f"/v1/models/{MODEL}/versions/2/promote"


@pytest.fixture
def local(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    """An auth-less daemon whose champion is version 2, promoted over version 1: a
    rollback would bring version 1 back."""
    daemon, tokens = make_daemon(
        tmp_path, trained, extra={"auth": {"disabled": True}, "scheduler": {"enabled": False}}
    )
    with BackgroundServer(daemon.app) as server:
        promoted = httpx.post(f"{server.url}{PROMOTE}", json={"reason": "set up"}, timeout=WAIT_S)
        assert promoted.status_code == 200, promoted.text
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


def _champion(daemon: Running) -> int:
    return int(httpx.get(f"{daemon.url}/v1/models/{MODEL}", timeout=WAIT_S).json()["champion"])


def _rollbacks(daemon: Running) -> list[str]:
    return [e.actor for e in daemon.daemon.store.audit_log(limit=10, action="rollback")]


def _simple_post(daemon: Running, path: str, headers: dict[str, str]) -> httpx.Response:
    """A page's ``no-cors`` post: a JSON body with no ``Content-Type``."""
    return httpx.post(
        f"{daemon.url}{path}", content=b'{"reason": "from another site"}', headers=headers
    )


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "http://evil.example"}, id="origin-of-another-site"),
        pytest.param({"Origin": "http://127.0.0.2:8000"}, id="origin-of-another-local-port"),
        pytest.param({"Origin": "null"}, id="opaque-origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="sec-fetch-cross-site"),
        pytest.param({"Sec-Fetch-Site": "same-site"}, id="sec-fetch-same-site"),
    ],
)
def test_a_post_from_another_origin_is_refused_and_changes_nothing(
    local: Running, headers: dict[str, str]
) -> None:
    r = _simple_post(local, ROLLBACK, headers)
    assert r.status_code == 403, r.text
    assert set(r.json()) == {"error", "code"} and r.json()["code"] == "cross_site"
    assert "auth.disabled" in r.json()["error"]
    assert _champion(local) == 2 and _rollbacks(local) == []


def test_a_post_from_another_site_with_the_own_origin_claimed_by_sec_fetch_is_refused(
    local: Running,
) -> None:
    """The browser's ``Sec-Fetch-Site`` decides when sent, as for the dashboard's sign-in."""
    headers = {"Origin": local.url, "Sec-Fetch-Site": "cross-site"}
    assert _simple_post(local, ROLLBACK, headers).status_code == 403
    assert _champion(local) == 2


def test_inference_from_another_site_is_refused(local: Running) -> None:
    r = httpx.post(
        f"{local.url}/v2/models/{MODEL}/infer",
        content=b"{}",
        headers={"Origin": "http://evil.example"},
        timeout=WAIT_S,
    )
    assert (r.status_code, r.json()["code"]) == (403, "cross_site")


def test_a_post_without_origin_as_curl_sends_it_is_taken(local: Running) -> None:
    r = _simple_post(local, ROLLBACK, {})
    assert r.status_code == 200, r.text
    assert _champion(local) == 1 and _rollbacks(local) == ["anonymous"]


def test_a_post_from_the_daemons_own_origin_is_taken(local: Running) -> None:
    headers = {"Origin": local.url, "Sec-Fetch-Site": "same-origin"}
    r = _simple_post(local, ROLLBACK, headers)
    assert r.status_code == 200, r.text
    assert _champion(local) == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_request_naming_a_host_off_loopback_is_refused(local: Running, method: str) -> None:
    """A page of a name rebound to 127.0.0.1 sends its own name as ``Host``."""
    path = "/v1/audit" if method == "GET" else ROLLBACK
    r = httpx.request(
        method,
        f"{local.url}{path}",
        headers={"Host": f"evil.example:{local.server.port}"},
        json={"reason": "rebound"} if method == "POST" else None,
        timeout=WAIT_S,
    )
    assert r.status_code == 421, r.text
    assert set(r.json()) == {"error", "code"} and r.json()["code"] == "misdirected_request"
    assert "'evil.example:" in r.json()["error"] and "loopback" in r.json()["error"]
    assert _champion(local) == 2 and _rollbacks(local) == []


def test_a_head_request_naming_a_host_off_loopback_is_refused_without_a_body(
    local: Running,
) -> None:
    r = httpx.head(f"{local.url}/healthz", headers={"Host": "evil.example"}, timeout=WAIT_S)
    assert r.status_code == 421 and r.content == b""


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("localhost:{port}", id="localhost"),
        pytest.param("LocalHost", id="localhost-any-case-no-port"),
        pytest.param("127.0.0.2:{port}", id="another-127-address"),
        pytest.param("[::1]:{port}", id="ipv6-loopback"),
    ],
)
def test_a_request_naming_a_loopback_host_is_answered(local: Running, host: str) -> None:
    headers = {"Host": host.format(port=local.server.port)}
    r = httpx.get(f"{local.url}/v1/models/{MODEL}", headers=headers, timeout=WAIT_S)
    assert r.status_code == 200, r.text


def test_with_auth_on_origin_and_host_decide_nothing(running: Running) -> None:
    """A token is the caller's proof: a page of another site cannot send one (the
    dashboard's session cookie is ``SameSite=Strict``)."""
    foreign = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    promoted = httpx.post(
        f"{running.url}{PROMOTE}",
        json={"reason": "with a token"},
        headers={**running.auth("admin"), **foreign, "Host": "evil.example"},
        timeout=WAIT_S,
    )
    assert promoted.status_code == 200, promoted.text
    back = httpx.post(
        f"{running.url}{ROLLBACK}",
        json={"reason": "with a token"},
        headers={**running.auth("operator"), **foreign},
        timeout=WAIT_S,
    )
    assert back.status_code == 200, back.text
    without = _simple_post(running, ROLLBACK, foreign)
    assert (without.status_code, without.json()["code"]) == (401, "unauthenticated")


def test_a_refusal_is_counted_under_its_route_and_code(local: Running) -> None:
    registry = local.daemon.metrics.registry

    def counted() -> tuple[float, float]:
        answers = registry.get_sample_value(
            "tunewatch_http_requests_total",
            {"route": "/v1/models/{model}/rollback", "status": "403"},
        )
        errors = registry.get_sample_value("tunewatch_http_errors_total", {"code": "cross_site"})
        return answers or 0.0, errors or 0.0

    before = counted()
    assert _simple_post(local, ROLLBACK, {"Origin": "http://evil.example"}).status_code == 403
    after = counted()
    assert (after[0] - before[0], after[1] - before[1]) == (1.0, 1.0)
