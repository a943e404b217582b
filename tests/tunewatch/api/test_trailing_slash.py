"""A path with a trailing slash is an unknown path: 404 ``{"error", "code"}``, never a
redirect.

``POST /v1/models/bin/feedback/`` was answered 307 with an empty body and a
``Location`` built from the client's ``Host`` header (``http://evil.example/...``), to
callers without a token and for models that do not exist (Starlette's slash redirect).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, serving
from tunewatch._example import ExampleModel

WAIT_S = 60  # a safety net for a broken build, never the thing a test measures
GETS = (
    f"/v1/models/{MODEL}/",
    "/v1/models/",
    f"/v1/models/{MODEL}/versions/",
    "/v1/jobs/",
    "/healthz/",
    "/metrics/",
)


@pytest.fixture(scope="module")
def slashing(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    with serving(tmp_path_factory.mktemp("trailing-slash"), trained) as served:
        yield served


def _post_paths(running: Running) -> list[str]:
    """Every ``/v1`` POST route the API describes, its parameters filled in."""
    spec = httpx.get(f"{running.url}/openapi.json", timeout=WAIT_S).json()
    paths = [
        p for p, methods in spec["paths"].items() if p.startswith("/v1/") and "post" in methods
    ]
    assert "/v1/models/{model}/feedback" in paths and "/v1/models/{model}/records" in paths
    return [re.sub(r"\{[^}]+\}", "1", p.replace("{model}", MODEL)) for p in paths]


def _assert_not_found(answer: httpx.Response) -> None:
    assert answer.status_code == 404, (answer.request.url, answer.status_code, answer.text)
    assert "location" not in answer.headers, answer.headers
    body = answer.json()
    assert set(body) == {"error", "code"}, body


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param("admin", id="admin"),
        pytest.param("", id="no-token"),
        pytest.param("evil-host", id="foreign-host"),
    ],
)
def test_a_trailing_slash_on_a_v1_post_route_is_a_json_404(slashing: Running, headers: str) -> None:
    sent = {} if headers == "" else dict(slashing.auth("admin"))
    if headers == "evil-host":
        sent["Host"] = "evil.example"
    paths = [*_post_paths(slashing), "/v1/models/nomodel/feedback", "/v1/models/nomodel/records"]
    for path in paths:
        answer = httpx.post(
            f"{slashing.url}{path}/",
            json={"items": [{"request_id": "x", "label": 1}]},
            headers=sent,
            timeout=WAIT_S,
        )
        _assert_not_found(answer)


@pytest.mark.parametrize("path", GETS)
def test_a_trailing_slash_on_a_get_route_is_a_json_404(slashing: Running, path: str) -> None:
    answer = httpx.get(f"{slashing.url}{path}", headers=slashing.auth("admin"), timeout=WAIT_S)
    _assert_not_found(answer)


def test_the_dashboard_without_its_slash_is_sent_to_its_overview_by_path(
    slashing: Running,
) -> None:
    """The README and the demo give the dashboard's address as ``/dashboard``."""
    answer = httpx.get(
        f"{slashing.url}/dashboard", headers={"Host": "evil.example"}, timeout=WAIT_S
    )
    assert answer.status_code == 307, answer.text
    assert answer.headers["location"] == "/dashboard/"
