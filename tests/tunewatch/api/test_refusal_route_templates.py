"""An answer given before the router ran (a body past ``server.max_body_bytes``, a
refusal of the auth-less daemon) is counted under the template of the route its path and
method match, for the included routers' routes too.

Matching the app's routes for the template read each one's ``path``; FastAPI holds an
included router's routes in one entry that has none, so a 413 on any ``/v1`` router's
route (or the dashboard's) raised ``AttributeError`` in the metrics middleware, after
the answer, and was counted nowhere."""

from __future__ import annotations

import pytest

from tests.tunewatch.conftest import MODEL, Running
from tunewatch.api._app import _template_of


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        pytest.param(
            "POST", f"/v1/models/{MODEL}/rollback", "/v1/models/{model}/rollback", id="v1"
        ),
        pytest.param("GET", f"/v1/models/{MODEL}", "/v1/models/{model}", id="v1-get"),
        pytest.param("POST", "/dashboard/login", "/dashboard/login", id="dashboard"),
        pytest.param("POST", "/v1/alerts/alertmanager", "/v1/alerts/alertmanager", id="plain"),
        pytest.param("GET", f"/v1/models/{MODEL}/rollback", "unmatched", id="other-method"),
        pytest.param("GET", "/no/such/path", "unmatched", id="unknown-path"),
    ],
)
def test_a_request_answered_before_routing_is_named_by_the_route_it_matches(
    running: Running, method: str, path: str, template: str
) -> None:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [],
        "query_string": b"",
        "app": running.daemon.app.app,
    }
    assert _template_of(scope) == template
