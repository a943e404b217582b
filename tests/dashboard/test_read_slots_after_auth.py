"""Only callers who may read take the dashboard's read slots: the caller is known first.

A slot was taken before the caller was authenticated, so anyone who could reach the port
held them: with 8 loops sending requests without a valid session, a signed-in viewer
polling ``/v1/dashboard/overview`` got 13 × 200 and 21 × 429 in 8 s (33 × 200 without
them), and the pages answered it "busy" as often. Session look-ups, a database read each,
run under a small bound of their own instead (:data:`MAX_SESSION_LOOKUPS`).
"""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.dashboard.scenario import Served, session_cookie
from tests.tunewatch.conftest import holding, in_flight
from tunewatch.dashboard import _auth, _series
from tunewatch.dashboard._limit import MAX_READS_IN_PROGRESS

WAIT_S = 60  # a safety net for a broken build, never the thing a test measures
LOGIN = "/dashboard/login"


def _made_up_session() -> dict[str, str]:
    return {_auth.COOKIE: secrets.token_urlsafe(32)}


def _made_up_token() -> dict[str, str]:
    return {"Authorization": f"Bearer tw_{secrets.token_urlsafe(32)}"}


def test_callers_who_may_not_read_are_refused_while_signed_in_reads_hold_every_slot(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    cookie = session_cookie(served.url, served.tokens["viewer"])
    drift = f"{served.url}/v1/dashboard/models/{served.model}/drift"
    overview = f"{served.url}/v1/dashboard/overview"
    page = f"{served.url}/dashboard/"
    with holding(monkeypatch, _series, "drift", MAX_READS_IN_PROGRESS) as held:
        threads, answers = in_flight(
            [lambda: httpx.get(drift, cookies=cookie, timeout=WAIT_S)] * MAX_READS_IN_PROGRESS
        )
        try:
            for _ in threads:  # every slot is held by a signed-in read
                assert held.entered.acquire(timeout=WAIT_S)

            # a signed-in flood is still answered busy
            busy = httpx.get(overview, cookies=cookie, timeout=WAIT_S)
            assert busy.status_code == 429, busy.text
            assert busy.json()["code"] == "dashboard_busy"
            assert (
                httpx.get(overview, headers=served.auth("viewer"), timeout=WAIT_S).status_code
                == 429
            )

            # the rest are refused as they always were, never "busy"
            for refused in (
                httpx.get(overview, timeout=WAIT_S),
                httpx.get(overview, cookies=_made_up_session(), timeout=WAIT_S),
                httpx.get(overview, headers=_made_up_token(), timeout=WAIT_S),
                httpx.get(f"{overview}?nope=1", timeout=WAIT_S),  # 401 before the 400
            ):
                assert refused.status_code == 401, refused.text
                assert refused.json()["code"] in ("unauthenticated", "invalid_token")
                assert refused.headers["cache-control"] == "no-store"
            forbidden = httpx.get(overview, headers=served.auth("scorer"), timeout=WAIT_S)
            assert forbidden.status_code == 403, forbidden.text
            for signed_out in (
                httpx.get(page, timeout=WAIT_S),
                httpx.get(page, cookies=_made_up_session(), timeout=WAIT_S),
            ):
                assert signed_out.status_code == 303, signed_out.text
                assert signed_out.headers["location"] == LOGIN
            # the model's redirect reads nothing and still sends anyone to its A/B page
            model = httpx.get(f"{served.url}/dashboard/models/{served.model}", timeout=WAIT_S)
            assert model.status_code == 303
            assert model.headers["location"].endswith(f"/dashboard/models/{served.model}/ab")
        finally:
            held.release.set()
            for t in threads:
                t.join(WAIT_S)
    assert [a.status_code for a in answers] == [200] * MAX_READS_IN_PROGRESS


@pytest.mark.parametrize("path", ["/v1/dashboard/overview", "/dashboard/"])
def test_a_signed_in_read_is_answered_while_made_up_sessions_are_being_looked_up(
    served: Served, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    cookie = session_cookie(served.url, served.tokens["viewer"])
    url = f"{served.url}{path}"
    store = served.daemon.runtime.store
    # as many made-up sessions in flight as there are read slots, each held in its look-up
    with holding(monkeypatch, store, "session_token", MAX_READS_IN_PROGRESS) as held:
        threads, answers = in_flight(
            [
                lambda: httpx.get(url, cookies=_made_up_session(), timeout=WAIT_S),
            ]
            * MAX_READS_IN_PROGRESS
        )
        try:
            for _ in threads:
                assert held.entered.acquire(timeout=WAIT_S)
            signed_in = httpx.get(url, cookies=cookie, timeout=WAIT_S)
            assert signed_in.status_code == 200, signed_in.text
            by_token = httpx.get(url, headers=served.auth("viewer"), timeout=WAIT_S)
            assert by_token.status_code == 200, by_token.text
        finally:
            held.release.set()
            for t in threads:
                t.join(WAIT_S)
    refused = sorted(a.status_code for a in answers)
    assert refused == [401 if path.startswith("/v1") else 303] * MAX_READS_IN_PROGRESS
