"""HEAD answers wherever GET does, as GET would without the body (RFC 9110 §9.1, §9.3.2).

The probes, the scrape and every FastAPI GET route answered HEAD 405 (``Allow: GET``)
while the OIP health routes (plain Starlette routes) answered 200: a load balancer or
uptime check configured with ``HEAD /healthz`` (HAProxy ``option httpchk HEAD /healthz``)
marked a healthy daemon down. HEAD is authenticated exactly as GET, and never reaches a
route that takes POST only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from tests.tunewatch.conftest import MODEL, Running
from tunewatch.api._app import HeadAsGetMiddleware


@pytest.fixture
def client(running: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.url, timeout=30) as client:
        yield client


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_head_on_a_probe_answers_200_with_get_content_type_and_no_body(
    client: httpx.Client, path: str
) -> None:
    got, head = client.get(path), client.head(path)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == got.headers["content-type"]


def test_head_on_healthz_keeps_the_content_length_get_sends(client: httpx.Client) -> None:
    got, head = client.get("/healthz"), client.head("/healthz")
    assert head.headers["content-length"] == got.headers["content-length"] != "0"


def test_head_on_a_guarded_route_with_a_viewer_token_answers_200_without_body(
    client: httpx.Client, running: Running
) -> None:
    head = client.head("/v1/models", headers=running.auth("viewer"))
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == "application/json"


def test_head_on_a_guarded_route_without_a_token_is_401_without_body(
    client: httpx.Client,
) -> None:
    head = client.head("/v1/models")
    assert (head.status_code, head.content) == (401, b"")


def test_head_on_a_dashboard_page_without_a_session_is_sent_to_sign_in_as_get_is(
    client: httpx.Client,
) -> None:
    got, head = client.get("/dashboard/"), client.head("/dashboard/")
    assert (head.status_code, head.headers.get("location")) == (303, "/dashboard/login")
    assert (got.status_code, got.headers.get("location")) == (303, "/dashboard/login")


def test_head_on_an_unknown_path_is_404(client: httpx.Client) -> None:
    head = client.head("/no/such/path")
    assert (head.status_code, head.content) == (404, b"")


def test_head_on_the_inference_route_is_405_naming_post(client: httpx.Client) -> None:
    head = client.head(f"/v2/models/{MODEL}/infer")
    assert (head.status_code, head.headers.get("allow")) == (405, "POST")


def test_head_on_a_post_only_route_is_405_and_queues_nothing(
    client: httpx.Client, running: Running
) -> None:
    admin = running.auth("admin")
    before = client.get("/v1/jobs", headers=admin).json()["jobs"]
    head = client.head(f"/v1/models/{MODEL}/retune", headers=admin)
    assert (head.status_code, head.headers.get("allow"), head.content) == (405, "POST", b"")
    assert client.get("/v1/jobs", headers=admin).json()["jobs"] == before


def test_a_405_on_a_get_route_lists_head_in_allow(client: httpx.Client) -> None:
    r = client.post("/healthz")
    assert (r.status_code, r.headers.get("allow")) == (405, "GET, HEAD")
    r = client.put(f"/v1/models/{MODEL}/versions")
    assert (r.status_code, r.headers.get("allow")) == (405, "GET, HEAD, POST")


def test_head_passes_on_a_streamed_answer_as_one_empty_body_message() -> None:
    seen: list[str] = []

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["method"])
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "HEAD", "path": "/x", "headers": [], "query_string": b""}
    asyncio.run(HeadAsGetMiddleware(streaming)(scope, receive, send))
    assert seen == ["GET"]
    assert sent == [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        },
        {"type": "http.response.body", "body": b""},
    ]
