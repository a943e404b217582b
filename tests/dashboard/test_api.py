"""The JSON endpoints under /v1/dashboard and the pages' auth, without a browser."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.dashboard.scenario import Served, add_year_of_windows, serve, session_cookie
from tunewatch._config import build_config
from tunewatch.store import Store

PAGES = ("ab", "drift", "decay", "telemetry", "tuning", "events")


def _get(served: Served, path: str, role: str | None = "viewer", **params: str) -> httpx.Response:
    headers = served.auth(role) if role else {}
    return httpx.get(f"{served.url}{path}", headers=headers, params=params, timeout=60)


def test_overview_lists_the_demo_model_with_its_champion(served: Served) -> None:
    body = _get(served, "/v1/dashboard/overview").json()
    (model,) = [m for m in body["models"] if m["name"] == served.model]
    assert model["champion"]["version"] >= 2
    assert {"drift", "decay", "telemetry"} <= set(model["latest_evaluations"])


@pytest.mark.parametrize("page", PAGES)
def test_every_model_endpoint_answers_a_viewer(served: Served, page: str) -> None:
    r = _get(served, f"/v1/dashboard/models/{served.model}/{page}")
    assert r.status_code == 200, r.text
    assert r.json()["model"] == served.model


@pytest.mark.parametrize("page", PAGES)
def test_unknown_model_is_a_404_not_a_500(served: Served, page: str) -> None:
    r = _get(served, f"/v1/dashboard/models/nope/{page}")
    assert r.status_code == 404
    assert r.json()["code"] == "model_not_found"  # as on every route
    page_r = httpx.get(
        f"{served.url}/dashboard/models/nope/{page}",
        cookies=session_cookie(served.url, served.tokens["viewer"]),
        timeout=60,
    )
    assert page_r.status_code == 404
    assert "text/html" in page_r.headers["content-type"]


def test_endpoints_refuse_a_missing_token_and_a_scorer(served: Served) -> None:
    assert _get(served, "/v1/dashboard/overview", role=None).status_code == 401
    assert _get(served, "/v1/dashboard/overview", role="scorer").status_code == 403


def test_ab_series_narrows_and_marks_the_deciding_look(served: Served) -> None:
    body = _get(served, f"/v1/dashboard/models/{served.model}/ab").json()
    decided = [t for t in body["tests"] if t["decision_look"] is not None]
    assert decided, "the demo promotes its challenger, so one test decided"
    test = decided[0]
    series = test["series"]
    assert series[test["decision_look"]]["decision"] != "continue"
    widths = [p["ci_high"] - p["ci_low"] for p in series if p["ci_low"] is not None]
    assert len(widths) >= 2 and widths[-1] < widths[0]
    assert [p["n"] for p in series] == sorted(p["n"] for p in series)


def test_ab_series_is_downsampled_but_keeps_the_deciding_look(served: Served) -> None:
    full = _get(served, f"/v1/dashboard/models/{served.model}/ab").json()
    small = _get(served, f"/v1/dashboard/models/{served.model}/ab", max_points="2").json()
    for big, little in zip(full["tests"], small["tests"], strict=True):
        assert len(little["series"]) <= 3
        if big["decision_look"] is not None:
            assert little["series"][little["decision_look"]]["decision"] != "continue"


def test_events_filter_by_type_returns_only_that_type(served: Served) -> None:
    body = _get(served, f"/v1/dashboard/models/{served.model}/events").json()
    assert body["event_types"]
    wanted = body["event_types"][0]
    filtered = _get(served, f"/v1/dashboard/models/{served.model}/events", type=wanted).json()
    assert filtered["events"] and {e["type"] for e in filtered["events"]} == {wanted}


def test_empty_type_filter_means_all_events(served: Served) -> None:
    """``?type=`` (the form of an "all" chip) matched only events typed '' - none - while
    an empty ``action`` or ``actor`` meant all, and the page highlighted "all" over an
    empty table."""
    path = f"/v1/dashboard/models/{served.model}/events"
    everything = _get(served, path).json()
    assert everything["events"]
    for empty in ({"type": ""}, {"type": "", "action": "", "actor": ""}):
        body = _get(served, path, **empty).json()
        assert body["events"] == everything["events"]
        assert body["audit"] == everything["audit"]
        assert body["filters"] == {"type": None, "action": None, "actor": None, "limit": 100}
    cookies = session_cookie(served.url, served.tokens["viewer"])
    pages = [
        httpx.get(
            f"{served.url}/dashboard/models/{served.model}/events",
            params=params,
            cookies=cookies,
            timeout=60,
        ).text
        for params in ({}, {"type": ""})
    ]
    rows = [page.count('<span class="event-type">') for page in pages]
    assert rows[0] == rows[1] == len(everything["events"])


def test_audit_filter_by_action_returns_only_that_action(served: Served) -> None:
    body = _get(served, f"/v1/dashboard/models/{served.model}/events").json()
    assert body["audit_actions"]
    wanted = body["audit_actions"][0]
    filtered = _get(served, f"/v1/dashboard/models/{served.model}/events", action=wanted).json()
    assert filtered["audit"] and {a["action"] for a in filtered["audit"]} == {wanted}


def test_a_busy_other_model_does_not_hide_a_model_s_audit_trail(served: Served) -> None:
    """The view read the newest 500 audit entries of every model and filtered them by
    model afterwards: another model's activity pushed this one's trail out of the page."""
    before = _get(served, f"/v1/dashboard/models/{served.model}/events").json()
    assert before["audit"] and before["audit_actions"]
    for i in range(600):
        served.daemon.store.append_audit(
            actor="ops", action="set_stage", target=f"other/v{i}", details={}
        )
    after = _get(served, f"/v1/dashboard/models/{served.model}/events").json()
    assert after["audit"] == before["audit"]
    assert after["audit_actions"] == before["audit_actions"]
    wanted = before["audit_actions"][0]
    filtered = _get(served, f"/v1/dashboard/models/{served.model}/events", action=wanted).json()
    assert filtered["audit"] and {a["action"] for a in filtered["audit"]} == {wanted}


def test_tuning_reports_warm_start_plan_and_best_value_by_trial(served: Served) -> None:
    body = _get(served, f"/v1/dashboard/models/{served.model}/tuning").json()
    assert any(v["warm_start_plan"] for v in body["versions"])
    curves = [j["trials"] for j in body["jobs"] if j["trials"]]
    assert curves
    for trials in curves:
        bests = [t["best"] for t in trials]
        assert bests == sorted(bests, reverse=True)
        assert bests[-1] == min(t["value"] for t in trials)


def test_pages_redirect_to_login_without_a_session(served: Served) -> None:
    r = httpx.get(f"{served.url}/dashboard/", follow_redirects=False, timeout=30)
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/login"


def test_login_sets_an_httponly_strict_cookie_and_rejects_a_bad_token(served: Served) -> None:
    bad = httpx.post(
        f"{served.url}/dashboard/login", data={"token": "tw_wrong"}, follow_redirects=False
    )
    assert bad.status_code == 401 and "set-cookie" not in bad.headers
    good = httpx.post(
        f"{served.url}/dashboard/login",
        data={"token": served.tokens["viewer"]},
        follow_redirects=False,
    )
    assert good.status_code == 303
    cookie = good.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert served.tokens["viewer"] not in good.headers["location"]


def test_a_viewer_cannot_trigger_an_evaluation(served: Served) -> None:
    by_token = httpx.post(
        f"{served.url}/v1/models/{served.model}/evaluate", headers=served.auth("viewer")
    )
    assert by_token.status_code == 403
    by_cookie = httpx.post(
        f"{served.url}/v1/models/{served.model}/evaluate",
        cookies=session_cookie(served.url, served.tokens["viewer"]),
    )
    assert by_cookie.status_code in (401, 403)


def test_a_year_of_hourly_windows_is_downsampled(tmp_path: Path) -> None:
    config = build_config({"data_dir": str(tmp_path)}, env={})
    with Store.open(config.store_url) as store:
        store.ensure_model(name="year", task="binary", feature_names=["a", "b", "c"])
        add_year_of_windows(store, "year", hours=24 * 365)
    with serve(tmp_path) as served:
        drift = _get(served, "/v1/dashboard/models/year/drift").json()
        decay = _get(served, "/v1/dashboard/models/year/decay").json()
        telemetry = _get(served, "/v1/dashboard/models/year/telemetry").json()
        page = httpx.get(
            f"{served.url}/dashboard/models/year/drift",
            cookies=session_cookie(served.url, served.tokens["viewer"]),
        )
    assert drift["windows_total"] == 24 * 365
    assert len(drift["columns"]) == 400
    assert sum(c["windows"] for c in drift["columns"]) == 24 * 365
    assert len(decay["estimate"]) <= 400 and len(decay["labels"]) <= 400
    assert len(telemetry["history"]) <= 400
    assert page.status_code == 200 and page.text.count('class="drifted"') > 0


def test_json_endpoints_accept_the_session_cookie(served: Served) -> None:
    r = httpx.get(
        f"{served.url}/v1/dashboard/models/{served.model}/drift",
        cookies=session_cookie(served.url, served.tokens["viewer"]),
        timeout=60,
    )
    assert r.status_code == 200
    assert r.json()["features"][:2] == ["x0", "x1"]
    bad = httpx.get(f"{served.url}/v1/dashboard/overview", cookies={"tunewatch_session": "tw_nope"})
    # an unknown session: ended, expired, or never started (the cookie is no token)
    assert bad.status_code == 401 and bad.json()["code"] == "unauthenticated"


def test_dashboard_endpoints_are_documented_in_openapi(served: Served) -> None:
    paths = httpx.get(f"{served.url}/openapi.json", timeout=60).json()["paths"]
    documented = [p for p in paths if p.startswith("/v1/dashboard/")]
    assert len(documented) == 7
    assert all(paths[p]["get"].get("description") for p in documented)
    assert not any(p.startswith("/dashboard") for p in paths)


@pytest.mark.parametrize("spelt", ["1_0", "+5", "5.0", " 5 "])
def test_a_number_not_spelt_in_ascii_digits_is_refused(served: Served, spelt: str) -> None:
    """The dashboard's query numbers read `1_0` as 10 and `+5`, `5.0` and ` 5 ` as 5,
    which every /v1 route refuses: one number had many spellings."""
    r = _get(served, f"/v1/dashboard/models/{served.model}/events", limit=spelt)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error", "code"}
