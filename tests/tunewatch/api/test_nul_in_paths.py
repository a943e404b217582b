"""A model name holding a NUL in a path: registration refuses one (PostgreSQL cannot
hold it), so no such model exists, and every route answers it as it answers any unknown
model, on both backends. On PostgreSQL the driver refused the query parameter and the
same request was a 400 `invalid_value` naming the driver's message."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.tunewatch.conftest import make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel

NAME = "a%00b"
ROUTES = [
    ("GET", f"/v1/models/{NAME}", "viewer"),
    ("GET", f"/v1/models/{NAME}/versions", "viewer"),
    ("GET", f"/v1/models/{NAME}/versions/1", "viewer"),
    ("GET", f"/v1/models/{NAME}/versions/1/report", "viewer"),
    ("GET", f"/v1/models/{NAME}/evaluations", "viewer"),
    ("GET", f"/v1/models/{NAME}/evaluations/1/report", "viewer"),
    ("GET", f"/dashboard/models/{NAME}/drift/1/report", "viewer"),  # an HTML error page
    ("GET", f"/v1/models/{NAME}/comparisons", "viewer"),
    ("GET", f"/v1/models/{NAME}/comparisons/2/history", "viewer"),
    ("POST", f"/v1/models/{NAME}/rollback", "operator"),
    ("POST", f"/v1/models/{NAME}/versions/1/retire", "operator"),
    ("POST", f"/v1/models/{NAME}/versions/1/promote", "operator"),
    ("POST", f"/v1/models/{NAME}/evaluate", "operator"),
    ("POST", f"/v1/models/{NAME}/compare", "operator"),
    ("POST", f"/v1/models/{NAME}/retune", "operator"),
]
# the POST routes whose body is a reason
_REASONED = ("/rollback", "/retire", "/promote", "/retune")
# filters: no stored row holds a NUL, so none matches (PostgreSQL refused the query: 400)
FILTERS = [
    f"/v1/events?model={NAME}",
    f"/v1/approvals?model={NAME}",
    f"/v1/jobs?model={NAME}",
]


def test_a_model_name_holding_a_nul_is_not_found_on_either_backend(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    daemon, tokens = make_daemon(tmp_path / "data", trained, store_url=store_url)

    def answer(client: httpx.Client, method: str, path: str, role: str) -> tuple[int, str | None]:
        r = client.request(
            method,
            path,
            headers={"Authorization": f"Bearer {tokens[role]}"},
            # a reason for the routes that take one; evaluate and compare take no body
            json={"reason": "test"} if method == "POST" and path.endswith(_REASONED) else None,
        )
        if r.headers["content-type"].startswith("application/json"):
            return r.status_code, r.json().get("code")
        return r.status_code, None  # a dashboard page: its status only

    try:
        with (
            BackgroundServer(daemon.app) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            wrong = {}
            for method, path, role in ROUTES:
                unknown = answer(client, method, path.replace(NAME, "nosuch"), role)
                nul = answer(client, method, path, role)
                if nul != unknown or unknown[0] != 404:
                    wrong[f"{method} {path}"] = (nul, unknown)
            viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
            for path in FILTERS:
                r = client.get(path, headers=viewer)
                if r.status_code != 200 or any(r.json().values()):
                    wrong[path] = (r.status_code, r.text[:160])
            # a type holding a NUL is neither recorded nor stored: refused, not a 500
            r = client.get(f"/v1/events?type={NAME}", headers=viewer)
            if (r.status_code, r.json().get("code")) != (400, "invalid_request"):
                wrong["/v1/events?type="] = (r.status_code, r.text[:160])
    finally:
        daemon.close()
    assert wrong == {}
