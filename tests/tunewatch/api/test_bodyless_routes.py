"""A ``/v1`` POST route that takes no body (``/evaluate``, ``/compare``, and any added
later: they are read from the app's routes) holds a body it is sent to the rules every
``/v1`` body follows: JSON with or without ``Content-Type: application/json`` (another
type, such as the form ``curl -d`` sends, is 415), strict (``invalid_json``,
``duplicate_key``), and with no fields the route does not take, so nothing but ``{}``.
They read any body and ignored it. No body, as ``curl -X POST`` sends, and ``{}`` are
the route's to answer."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from tests.tunewatch.conftest import Running
from tunewatch.api._route import ApiRoute

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# the model does not exist: a request the route answers is 404, and changes nothing
UNKNOWN = "no-such-model"


def _bodyless_posts(running: Running) -> list[tuple[str, str]]:
    """(path template, URL) of every ``/v1`` POST route that declares no body field."""
    paths = sorted(
        {
            context.path
            for context in iter_route_contexts(running.daemon.app.app.routes)
            if isinstance(context.original_route, ApiRoute)
            and "POST" in (context.methods or ())
            and context.original_route.body_field is None
        }
    )
    return [(path, re.sub(r"\{(\w+)(?::\w+)?\}", _fill, path)) for path in paths]


def _fill(match: re.Match[str]) -> str:
    return UNKNOWN if match[1] == "model" else "1"


def _post(running: Running, url: str, body: bytes, content_type: str | None) -> httpx.Response:
    headers = running.auth("operator")
    if content_type is not None:
        headers["Content-Type"] = content_type
    return httpx.post(f"{running.url}{url}", content=body, headers=headers)


def test_the_bodyless_routes_are_found(running: Running) -> None:
    paths = [path for path, _ in _bodyless_posts(running)]
    assert {"/v1/models/{model}/compare", "/v1/models/{model}/evaluate"} <= set(paths)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "message"),
    [
        pytest.param(
            b"a=b",
            FORM,
            415,
            "unsupported_media_type",
            f"the body must be JSON (Content-Type: application/json or none), got "
            f"Content-Type {FORM!r}",
            id="form",
        ),
        pytest.param(
            b"x",
            "text/plain",
            415,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json or none), got "
            "Content-Type 'text/plain'",
            id="text",
        ),
        pytest.param(
            b"{bad",
            JSON,
            400,
            "invalid_json",
            "invalid JSON: Expecting property name enclosed in double quotes at position 1",
            id="malformed",
        ),
        pytest.param(
            b'{"a":1,"a":2}', JSON, 400, "duplicate_key", "duplicate JSON key 'a'", id="dupe"
        ),
        pytest.param(
            b'{"a":1,"a":2}',
            None,
            400,
            "duplicate_key",
            "duplicate JSON key 'a'",
            id="dupe-untyped",
        ),
        pytest.param(
            b'{"reason": "now"}',
            JSON,
            400,
            "invalid_request",
            "reason: POST {route} takes no body fields (send no body, or {{}}), got ['reason']",
            id="field",
        ),
        pytest.param(
            b"[]",
            JSON,
            400,
            "invalid_request",
            "body: POST {route} takes no body (send none, or {{}}), got a JSON array",
            id="array",
        ),
        pytest.param(
            b"null",
            JSON,
            400,
            "invalid_request",
            "body: POST {route} takes no body (send none, or {{}}), got JSON null",
            id="null",
        ),
    ],
)
def test_a_body_a_bodyless_route_is_sent_is_held_to_the_v1_body_rules(
    running: Running,
    body: bytes,
    content_type: str | None,
    status: int,
    code: str,
    message: str,
) -> None:
    for route, url in _bodyless_posts(running):
        response = _post(running, url, body, content_type)
        assert (response.status_code, response.json()) == (
            status,
            {"code": code, "error": message.format(route=route)},
        ), url


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"", None, id="none"),
        pytest.param(b"", FORM, id="none-form-typed"),
        pytest.param(b"{}", JSON, id="empty-object"),
        pytest.param(b"{}", None, id="empty-object-untyped"),
        pytest.param(b" { }\n", "application/json; charset=utf-8", id="empty-object-spaced"),
    ],
)
def test_no_body_or_an_empty_object_reaches_a_bodyless_route(
    running: Running, body: bytes, content_type: str | None
) -> None:
    for _, url in _bodyless_posts(running):
        response = _post(running, url, body, content_type)
        assert (response.status_code, response.json()["code"]) == (404, "model_not_found"), url
