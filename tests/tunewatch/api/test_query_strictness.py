"""A ``/v1`` route refuses a query parameter it does not declare, and a repeated one it
takes a single value of: 400 ``invalid_request`` naming the parameter and listing those
the route takes, after the caller's token is checked (as a body's unknown field is).

The API ignored them: ``GET /v1/jobs?stauts=failed`` listed every job, 200, as if
unfiltered; ``?limit=5&limit=6`` read 6; ``POST .../rollback?dry_run=1`` rolled back.
The routes that read no token or are called by other programs' clients (``/v2``, the
probes, the scrape, the Alertmanager webhook) are left as they were; the dashboard's JSON
refuses them too.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.routing import iter_route_contexts

from tests.tunewatch.conftest import MODEL, Running
from tunewatch._background import BackgroundServer
from tunewatch.api._errors import install_error_handlers
from tunewatch.api._route import ApiRoute, public

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
REFUSED_AS_UNKNOWN = "takes no query parameter"


def _get(running: Running, path: str, role: str = "viewer") -> httpx.Response:
    return httpx.get(f"{running.url}{path}", headers=running.auth(role), timeout=30)


def _post(running: Running, path: str, role: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{running.url}{path}", json=body, headers=running.auth(role), timeout=30)


def _refusal(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request", r.text
    assert set(r.json()) == {"error", "code"}
    return str(r.json()["error"])


def test_a_misspelt_job_filter_is_refused_naming_it_and_the_filters_jobs_take(
    running: Running,
) -> None:
    error = _refusal(_get(running, "/v1/jobs?stauts=failed"))
    assert error == (
        "query.stauts: GET /v1/jobs takes no query parameter 'stauts'; it takes model, "
        "status, limit, before_id"
    )
    assert _get(running, "/v1/jobs?status=failed").status_code == 200


def test_a_misspelt_event_filter_is_refused_and_every_unknown_one_counted(
    running: Running,
) -> None:
    error = _refusal(_get(running, "/v1/events?tpye=promotion&model=credit&lmit=5"))
    assert error == (
        "query.tpye: GET /v1/events takes no query parameter 'tpye' (nor 1 more: 'lmit'); "
        "it takes model, type, limit, before_id"
    )


def test_a_repeated_limit_is_refused_with_the_values_it_was_given(running: Running) -> None:
    for path in ("/v1/jobs", "/v1/events", f"/v1/models/{MODEL}/drift"):
        error = _refusal(_get(running, f"{path}?limit=5&limit=6"))
        template = path.replace(MODEL, "{model}")
        assert error == f"query.limit: GET {template} takes one value of 'limit', got 2: '5', '6'"


def test_a_route_with_a_path_parameter_refuses_an_unknown_query_parameter(
    running: Running,
) -> None:
    error = _refusal(_get(running, f"/v1/models/{MODEL}/versions/1?verbose=1"))
    assert error == (
        "query.verbose: GET /v1/models/{model}/versions/{version} takes no query parameter "
        "'verbose'; it takes none"
    )
    error = _refusal(_get(running, f"/v1/models/{MODEL}/drift?versoin=2"))
    assert "'versoin'; it takes version, limit" in error
    assert _get(running, f"/v1/models/{MODEL}/drift?version=2&limit=1").status_code == 200


def test_an_unknown_parameter_on_a_rollback_is_refused_and_rolls_nothing_back(
    running: Running,
) -> None:
    promoted = _post(
        running, f"/v1/models/{MODEL}/versions/2/promote", "operator", {"reason": "it won"}
    )
    assert promoted.status_code == 200, promoted.text
    audit_before = _get(running, "/v1/audit?limit=1000").json()["entries"]
    r = _post(running, f"/v1/models/{MODEL}/rollback?dry_run=1", "operator", {"reason": "try it"})
    assert _refusal(r) == (
        "query.dry_run: POST /v1/models/{model}/rollback takes no query parameter 'dry_run'; "
        "it takes none"
    )
    assert _get(running, f"/v1/models/{MODEL}").json()["champion"] == 2
    assert _get(running, "/v1/audit?limit=1000").json()["entries"] == audit_before
    # the same request without it rolls back: the refusal, not the request, stopped it
    r = _post(running, f"/v1/models/{MODEL}/rollback", "operator", {"reason": "try it"})
    assert r.status_code == 200, r.text
    assert _get(running, f"/v1/models/{MODEL}").json()["champion"] == 1


def test_mirror_and_feedback_refuse_an_unknown_parameter_and_record_nothing(
    running: Running,
) -> None:
    record = {"records": [{"id": "q-1", "version": 1, "inputs": [ROW], "outputs": [[0.3, 0.7]]}]}
    path = f"/v1/models/{MODEL}/records"
    r = _post(running, f"{path}?async=1", "scorer", record)
    assert "query.async: POST /v1/models/{model}/records takes no query" in _refusal(r)
    accepted = _post(running, path, "scorer", record)
    assert accepted.json() == {"accepted": 1, "duplicates": [], "conflicts": []}

    path = f"/v1/models/{MODEL}/feedback"
    label = {"items": [{"request_id": "q-1", "label": 1}]}
    r = _post(running, f"{path}?overwrite=true", "labeller", label)
    assert "query.overwrite: POST /v1/models/{model}/feedback takes no query" in _refusal(r)
    r = _post(running, path, "labeller", label)
    assert r.json() == {"results": [{"request_id": "q-1", "status": "created"}]}, r.text


def test_the_token_is_checked_before_the_query(running: Running) -> None:
    """As for a body's unknown fields: a caller without a token is 401 and one whose role
    may not is 403, whatever else the request gets wrong."""
    r = httpx.get(f"{running.url}/v1/jobs?stauts=failed", timeout=30)
    assert (r.status_code, r.json()["code"]) == (401, "unauthenticated")
    r = httpx.post(
        f"{running.url}/v1/models/{MODEL}/rollback?dry_run=1", json={"reason": "x"}, timeout=30
    )
    assert (r.status_code, r.json()["code"]) == (401, "unauthenticated")
    r = _post(running, f"/v1/models/{MODEL}/rollback?dry_run=1", "viewer", {"reason": "x"})
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = _get(running, "/v1/jobs?stauts=failed", "scorer")
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = _post(running, f"/v1/models/{MODEL}/records?async=1", "viewer", {"records": []})
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")


def test_every_parameter_a_v1_route_declares_is_taken(running: Running) -> None:
    """Each declared query parameter of every ``/v1`` GET route is read (its value may
    still be refused by the parameter's own rules), and a HEAD is held to the same."""
    checked = []
    for context in iter_route_contexts(running.daemon.app.app.routes):
        route = context.original_route
        if not isinstance(route, ApiRoute) or not context.path.startswith("/v1/"):
            continue
        path = context.path.replace("{model}", MODEL).replace("{version}", "1")
        path = path.replace("{challenger}", "2").replace("{evaluation_id}", "1")
        path = path.replace("{job_id}", "1")
        for field in route.dependant.query_params:
            r = _get(running, f"{path}?{field.alias}=1")
            assert REFUSED_AS_UNKNOWN not in r.text, f"{context.path}: {r.text}"
            checked.append(f"{context.path}?{field.alias}")
    assert len(checked) >= 20
    r = httpx.head(f"{running.url}/v1/jobs?stauts=failed", headers=running.auth("viewer"))
    assert r.status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        f"/v2/models/{MODEL}?trace=1",
        "/v2/health/ready?x=1",
        "/healthz?probe=lb",
        "/readyz?probe=lb",
        "/metrics?name[]=x",
    ],
)
def test_routes_other_clients_call_keep_ignoring_parameters(running: Running, path: str) -> None:
    assert _get(running, path).status_code == 200


def test_the_alertmanager_webhook_keeps_ignoring_parameters(running: Running) -> None:
    r = _post(running, "/v1/alerts/alertmanager?receiver=tw", "alertmanager", {"alerts": []})
    assert r.status_code == 200, r.text


def _page(offset: int = 0) -> int:
    return offset


def test_a_list_parameter_may_repeat_and_a_dependency_s_parameter_is_taken() -> None:
    router = APIRouter(prefix="/v1", route_class=ApiRoute)

    @router.get("/tagged", dependencies=[Depends(public)])
    def tagged(
        tag: Annotated[list[str], Query()], offset: Annotated[int, Depends(_page)]
    ) -> dict[str, Any]:
        return {"tag": tag, "offset": offset}

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    with BackgroundServer(app) as server:
        r = httpx.get(f"{server.url}/v1/tagged?tag=a&tag=b&offset=3")
        assert r.json() == {"tag": ["a", "b"], "offset": 3}
        error = _refusal(httpx.get(f"{server.url}/v1/tagged?tag=a&offset=1&offset=2"))
        assert error == "query.offset: GET /v1/tagged takes one value of 'offset', got 2: '1', '2'"
        error = _refusal(httpx.get(f"{server.url}/v1/tagged?tag=a&ofset=1"))
        assert error.endswith("'ofset'; it takes tag, offset")


def test_the_dashboard_s_json_refuses_a_misspelt_parameter_once_the_caller_is_known(
    running: Running,
) -> None:
    """``?max_point=50`` read the default 400 points, 200."""
    path = f"/v1/dashboard/models/{MODEL}/ab"
    error = _refusal(_get(running, f"{path}?max_point=50"))
    assert error == (
        "query.max_point: GET /v1/dashboard/models/{model}/ab takes no query parameter "
        "'max_point'; it takes max_points, limit, decided_points"
    )
    assert _refusal(_get(running, "/v1/dashboard/overview?refresh=1")).startswith("query.refresh")
    assert httpx.get(f"{running.url}{path}?max_point=50").status_code == 401
    ok = _get(running, f"{path}?max_points=50")
    assert ok.status_code == 200, ok.text
    assert ok.headers["cache-control"] == "no-store"
