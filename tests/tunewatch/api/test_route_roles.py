"""Who may call what: every role without a route's permission is refused with 403
``forbidden`` before the route does anything, and the roles that hold it get past the
check. The bearer scheme is case-insensitive, and a token created after it was first
tried is accepted once the token cache's time has passed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running
from tunewatch._auth import ROLES, Authenticator, AuthError, hash_token

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
REASON = {"reason": "role check"}


@dataclass(frozen=True)
class Guarded:
    """A route, the roles that may call it (written out, not read from the role table
    the daemon enforces, so a role given a permission it should not hold is caught), and
    what such a caller gets back: the targets do not exist (or, for a rollback, the
    model has no previous champion), so no call changes the daemon's state."""

    method: str
    path: str
    roles: frozenset[str]
    allowed: tuple[int, str | None]  # (status, code) for a caller that gets past the check
    body: Callable[[str], dict[str, Any] | None] = lambda role: None


OPERATORS = frozenset({"operator", "admin"})

ROUTES = {
    "retire": Guarded(
        "POST",
        f"/v1/models/{MODEL}/versions/99/retire",
        OPERATORS,
        (404, "version_not_found"),
        lambda role: REASON,
    ),
    "retune": Guarded(
        "POST",
        "/v1/models/no-such-model/retune",
        OPERATORS,
        (404, None),  # the dispatcher's `not_found` (inference says `model_not_found`)
        lambda role: REASON,
    ),
    "rollback": Guarded(
        "POST",
        f"/v1/models/{MODEL}/rollback",
        OPERATORS,
        (409, "no_previous_champion"),
        lambda role: REASON,
    ),
    "reject": Guarded(
        "POST",
        "/v1/approvals/999/reject",
        frozenset({"approver", "admin"}),
        (404, "approval_not_found"),
        lambda role: REASON,
    ),
    "records": Guarded(
        "POST",
        f"/v1/models/{MODEL}/records",
        frozenset({"scorer", "admin"}),
        (200, None),
        lambda role: {
            "records": [{"id": f"roles-{role}", "inputs": [ROW], "outputs": [[0.3, 0.7]]}]
        },
    ),
    "model_metadata": Guarded(
        "GET",
        f"/v2/models/{MODEL}",
        frozenset({"viewer", "scorer", "operator", "approver", "admin"}),
        (200, None),
    ),
    "register": Guarded(
        "POST",
        "/v1/models/no-such-model/versions",
        OPERATORS,
        (400, "invalid_request"),  # no artefact: refused before anything is stored
        lambda role: {},
    ),
    "promote": Guarded(
        "POST",
        f"/v1/models/{MODEL}/versions/99/promote",
        OPERATORS,
        (404, "version_not_found"),
        lambda role: REASON,
    ),
    "approve": Guarded(
        "POST",
        "/v1/approvals/999/approve",
        frozenset({"approver", "admin"}),
        (404, "approval_not_found"),
        lambda role: REASON,
    ),
    "evaluate": Guarded(
        "POST", "/v1/models/no-such-model/evaluate", OPERATORS, (404, "model_not_found")
    ),
    "compare": Guarded(
        "POST", "/v1/models/no-such-model/compare", OPERATORS, (404, "model_not_found")
    ),
    "feedback": Guarded(
        "POST",
        "/v1/models/no-such-model/feedback",
        frozenset({"labeller", "admin"}),
        (404, "model_not_found"),
        lambda role: {"items": [{"request_id": "r1", "label": 1}]},
    ),
    "alert_webhook": Guarded(
        "POST",
        "/v1/alerts/alertmanager",
        frozenset({"alertmanager", "admin"}),
        (200, None),  # no alerts: nothing queued
        lambda role: {"version": "4", "status": "firing", "alerts": []},
    ),
}


CASES = [pytest.param(name, role, id=f"{name}-{role}") for name in ROUTES for role in ROLES]


def _call(running: Running, route: Guarded, role: str) -> httpx.Response:
    return httpx.request(
        route.method,
        f"{running.url}{route.path}",
        json=route.body(role),
        headers=running.auth(role),
    )


@pytest.mark.parametrize(("name", "role"), CASES)
def test_a_role_without_the_routes_permission_is_forbidden_and_one_with_it_passes(
    running: Running, name: str, role: str
) -> None:
    route = ROUTES[name]
    r = _call(running, route, role)
    if role not in route.roles:
        assert (r.status_code, r.json()["code"]) == (403, "forbidden"), r.text
        assert f"role {role!r} may not" in r.json()["error"]
        return
    status, code = route.allowed
    assert r.status_code == status, r.text
    if code is not None:
        assert r.json()["code"] == code


def test_model_metadata_for_a_viewer_is_the_served_signature(running: Running) -> None:
    r = httpx.get(f"{running.url}/v2/models/{MODEL}", headers=running.auth("viewer"))
    assert r.status_code == 200, r.text
    assert r.json()["name"] == MODEL and r.json()["versions"] == ["1", "2"]


def test_the_bearer_scheme_is_case_insensitive(running: Running) -> None:
    url = f"{running.url}/v2/models/{MODEL}"
    for scheme in ("bearer", "BEARER", "Bearer"):
        headers = {"Authorization": f"{scheme} {running.tokens['viewer']}"}
        r = httpx.get(url, headers=headers)
        assert r.status_code == 200, (scheme, r.text)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_tried_before_it_exists_is_accepted_once_the_cache_time_passed(
    running: Running,
) -> None:
    """An unknown token's refusal is cached like a known token's answer, for the
    configured ``auth.token_cache_ttl_s``; a token created meanwhile then works."""
    store = running.daemon.store

    def lookup(digest: str) -> tuple[str, str, str] | None:  # as the daemon reads tokens
        row = store.token_by_hash(digest)
        return None if row is None else (row.name, row.role, row.token_hash)

    ttl = running.daemon.config.auth.token_cache_ttl_s
    clock = _Clock()
    auth = Authenticator(lookup, ttl_s=ttl, clock=clock)
    token = "tw_created_after_it_was_first_tried_" + "x" * 16
    header = f"Bearer {token}"
    with pytest.raises(AuthError) as info:
        auth.authenticate(header, "score")
    assert (info.value.status, info.value.code) == (401, "invalid_token")
    store.add_token(name="late", role="scorer", token_hash=hash_token(token), actor="test")
    clock.now += max(ttl, 1.0) + 0.001  # the cache keeps any answer at least one second
    assert auth.authenticate(header, "score").name == "late"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "/v1/models/nosuch/retune", {"reason": "x"}, id="retune"),
        pytest.param("POST", "/v2/models/nosuch/infer", {"inputs": []}, id="infer"),
        pytest.param("GET", "/v1/models/nosuch/versions", None, id="versions"),
    ],
)
def test_an_unknown_model_is_model_not_found_on_every_route(
    running: Running, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """Inference answered `model_not_found` and the store's routes `not_found`."""
    r = httpx.request(method, f"{running.url}{path}", json=body, headers=running.auth("admin"))
    assert (r.status_code, r.json()["code"]) == (404, "model_not_found"), r.text
