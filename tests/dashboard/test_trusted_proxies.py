"""The dashboard's session cookie is ``Secure`` when the sign-in page was served over HTTPS,
which behind a TLS proxy only its ``X-Forwarded-Proto`` says; `tunewatch serve` reads that
header from the addresses in ``server.trusted_proxies``. It read it from loopback only
(uvicorn's default, not configurable): behind a proxy on another host, an ingress pod or a
proxy container, the cookie went without ``Secure``, and a browser would send the session
id over any plain-HTTP request to the host (a redirect to HTTPS, a mistyped link).

127.0.0.2 stands for the proxy's host: a loopback address other than the one it listens on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.serve_process import START_S, free_port, serving
from tunewatch._auth import hash_token, new_token
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import ConfigError

PROXY = "127.0.0.2"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`tunewatch serve` trusting ``PROXY``'s forwarded headers: its URL and a viewer's
    token."""
    root = tmp_path_factory.mktemp("proxied")
    port = free_port()
    raw = {
        "data_dir": str(root / "data"),
        "server": {"host": "127.0.0.1", "port": port, "trusted_proxies": [PROXY]},
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0},
    }
    daemon = Daemon(build_config(raw, env={}), env={})
    token = new_token()
    daemon.store.add_token(name="viewer", role="viewer", token_hash=hash_token(token), actor="t")
    daemon.close()
    with serving(raw, root / "tunewatch.yaml"):
        yield f"http://127.0.0.1:{port}", token


def _sign_in_cookie(url: str, token: str, source: str) -> str:
    """The ``Set-Cookie`` a sign-in from ``source`` gets, forwarded as HTTPS."""
    transport = httpx.HTTPTransport(local_address=source, retries=3)
    with httpx.Client(transport=transport, timeout=START_S) as client:
        r = client.post(
            f"{url}/dashboard/login",
            data={"token": token},
            headers={"Sec-Fetch-Site": "same-origin", "X-Forwarded-Proto": "https"},
            follow_redirects=False,
        )
    assert r.status_code == 303, r.text
    return r.headers["set-cookie"]


def test_a_sign_in_forwarded_as_https_by_a_trusted_proxy_gets_a_secure_cookie(
    served: tuple[str, str],
) -> None:
    url, token = served
    assert "secure" in _sign_in_cookie(url, token, PROXY).lower()


def test_a_forwarded_https_from_an_address_not_trusted_is_not_believed(
    served: tuple[str, str],
) -> None:
    url, token = served
    assert "secure" not in _sign_in_cookie(url, token, "127.0.0.1").lower()


@pytest.mark.parametrize("entry", ["*", "proxy.internal", "10.0.0.0/33"])
def test_trusted_proxies_must_be_addresses_or_networks(tmp_path: Path, entry: str) -> None:
    with pytest.raises(ConfigError, match="trusted_proxies"):
        build_config({"data_dir": str(tmp_path), "server": {"trusted_proxies": [entry]}}, env={})
