"""A page's query is read as strictly as the ``/v1/dashboard`` JSON behind it, and a page
that fails while it renders is answered with the dashboard's HTML error page."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.dashboard.scenario import Served, serve, session_cookie
from tests.demo_run import copy_of_demo
from tunewatch._config import build_config
from tunewatch.api._errors import ApiError
from tunewatch.dashboard._history import _PAGE_LIMIT
from tunewatch.dashboard._html import CSP
from tunewatch.dashboard._session import page_parameter
from tunewatch.store import Store

# the query strings as a browser's address bar sends them, each answered 400 by the JSON
REFUSED = {
    "underscore": "limit=1_0",
    "plus-sign": "limit=%2B5",
    "decimal": "limit=5.0",
    "leading-space": "limit=%205",
    "repeated": "limit=1&limit=2",
    "misspelt": "limti=1",
}


def _page(served: Served, path: str, cookies: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"{served.url}{path}", cookies=cookies, follow_redirects=False, timeout=60)


@pytest.fixture(scope="module")
def cookies(served: Served) -> dict[str, str]:
    return session_cookie(served.url, served.tokens["viewer"])


def _assert_html_refusal(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text[:300]
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    assert 'data-status="400"' in r.text


@pytest.mark.parametrize("query", REFUSED.values(), ids=REFUSED.keys())
def test_the_events_page_refuses_a_query_its_json_refuses(
    served: Served, cookies: dict[str, str], query: str
) -> None:
    """`?limit=1_0` showed 10 rows, `+5`, `5.0` and ` 5` 5, `limit=1&limit=2` 2 and a
    misspelt `?limti=1` the default 100, where /v1/dashboard answers 400."""
    path = f"/models/{served.model}/events?{query}"
    api = httpx.get(f"{served.url}/v1/dashboard{path}", headers=served.auth("viewer"), timeout=60)
    assert api.status_code == 400 and api.json()["code"] == "invalid_request"
    _assert_html_refusal(_page(served, f"/dashboard{path}", cookies))


PAGES = {
    "overview": ("/dashboard/", "/v1/dashboard/overview", "x=1"),
    "ab": ("/dashboard/models/{m}/ab", "/v1/dashboard/models/{m}/ab", "limit=1_0"),
    "ab-repeated": ("/dashboard/models/{m}/ab", "/v1/dashboard/models/{m}/ab", "limit=1&limit=2"),
    "drift": ("/dashboard/models/{m}/drift", "/v1/dashboard/models/{m}/drift", "features=%2B3"),
    "decay": ("/dashboard/models/{m}/decay", "/v1/dashboard/models/{m}/decay", "window=5"),
    "telemetry": ("/dashboard/models/{m}/telemetry", "/v1/dashboard/models/{m}/telemetry", "v=1"),
    "tuning": ("/dashboard/models/{m}/tuning", "/v1/dashboard/models/{m}/tuning", "limit=2.0"),
    "tuning-misspelt": ("/dashboard/models/{m}/tuning", "/v1/dashboard/models/{m}/tuning", "lim=2"),
}


@pytest.mark.parametrize(("page", "api", "query"), PAGES.values(), ids=PAGES.keys())
def test_every_page_refuses_a_query_as_its_json_does(
    served: Served, cookies: dict[str, str], page: str, api: str, query: str
) -> None:
    """Each page's parameter, misspelt or spelt in other than ASCII digits, or repeated."""
    answer = httpx.get(
        f"{served.url}{api.format(m=served.model)}?{query}",
        headers=served.auth("viewer"),
        timeout=60,
    )
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_request"
    _assert_html_refusal(_page(served, f"{page.format(m=served.model)}?{query}", cookies))


def test_a_parameter_only_the_json_reads_is_refused_by_the_page(
    served: Served, cookies: dict[str, str]
) -> None:
    """The decay page draws a fixed range: `?max_points=50` was ignored without a word."""
    r = _page(served, f"/dashboard/models/{served.model}/decay?max_points=50", cookies)
    _assert_html_refusal(r)
    assert "max_points" in r.text


def test_the_refusal_names_the_parameter_and_what_the_page_takes(
    served: Served, cookies: dict[str, str]
) -> None:
    r = _page(served, f"/dashboard/models/{served.model}/events?limti=1", cookies)
    _assert_html_refusal(r)
    assert "limti" in r.text and "type, action, actor, limit" in r.text


def test_a_report_id_not_in_ascii_digits_is_refused_as_the_api_refuses_it(
    served: Served, cookies: dict[str, str]
) -> None:
    """`1_0` named evaluation 10."""
    api = httpx.get(
        f"{served.url}/v1/models/{served.model}/evaluations/1_0/report",
        headers=served.auth("viewer"),
        timeout=60,
    )
    assert api.status_code == 400
    r = _page(served, f"/dashboard/models/{served.model}/drift/1_0/report", cookies)
    _assert_html_refusal(r)
    assert "`evaluation_id` must be" in r.text


def test_the_report_page_takes_no_query(served: Served, cookies: dict[str, str]) -> None:
    latest = served.daemon.store.list_evaluations(served.model, kind="drift", limit=1)[0]
    api = httpx.get(
        f"{served.url}/v1/models/{served.model}/evaluations/{latest.id}/report?x=1",
        headers=served.auth("viewer"),
        timeout=60,
    )
    assert api.status_code == 400
    page = f"/dashboard/models/{served.model}/drift/{latest.id}/report"
    assert _page(served, page, cookies).status_code == 200
    _assert_html_refusal(_page(served, f"{page}?x=1", cookies))


@pytest.mark.parametrize("query", ["limti=1", "limit=1_0"])
def test_a_signed_out_browser_with_a_bad_query_is_sent_to_sign_in(
    served: Served, query: str
) -> None:
    """The session first, as for a bad parameter's value: no 400 before the sign-in."""
    r = _page(served, f"/dashboard/models/{served.model}/events?{query}")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"


def test_the_pages_own_links_and_plain_numbers_are_taken(
    served: Served, cookies: dict[str, str]
) -> None:
    m = served.model
    events = _page(served, f"/dashboard/models/{m}/events?limit=2", cookies)
    assert events.status_code == 200
    assert events.text.split("<h2>Audit log</h2>")[0].count('class="event-type"') == 2
    for path in (
        "/dashboard/",
        f"/dashboard/models/{m}/ab?limit=0",
        f"/dashboard/models/{m}/drift?features=3",
        f"/dashboard/models/{m}/tuning?limit=5",
        f"/dashboard/models/{m}/events?type=drift_detected&action=x&actor=y&limit=10",
        f"/dashboard/models/{m}/decay",
        f"/dashboard/models/{m}/telemetry",
    ):
        assert _page(served, path, cookies).status_code == 200, path


@pytest.mark.parametrize("raw", ["1_0", "+5", "5.0", " 5", "٥"])
def test_a_page_number_is_read_in_ascii_digits_only(raw: str) -> None:
    with pytest.raises(ApiError) as caught:
        page_parameter("limit", raw, _PAGE_LIMIT, "an integer in [1, 1000]")
    assert caught.value.status == 400
    assert page_parameter("limit", "5", _PAGE_LIMIT, "an integer in [1, 1000]") == 5


# -- a page that fails while it renders ------------------------------------------------------

BROKEN = "broken-decay"


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The demo's store with a regression model whose stored decay evaluation holds a
    window end that is no timestamp (an older or foreign writer's payload): the decay
    page's chart reads it with ``datetime.fromisoformat``, which raises ValueError."""
    data_dir = copy_of_demo(tmp_path_factory, "page-errors").data_dir
    with Store.open(build_config({"data_dir": str(data_dir)}, env={}).store_url) as store:
        credit = store.list_versions("credit")[-1]
        store.register_version(
            model=BROKEN,
            task="regression",
            feature_names=["a"],
            artefact_sha256=credit.artefact_sha256,
            hyperparameters={},
            size_bytes=credit.size_bytes,
            actor="test",
            stage="champion",
        )
        now = datetime.now(UTC)
        store.add_evaluation(
            model=BROKEN,
            version=1,
            kind="decay",
            status="ok",
            window_start=None,
            window_end=now,
            payload={
                "alarm": False,
                "status": "ok",
                "objective": "rmse",
                "windows": [
                    {"end": (now - timedelta(days=1)).isoformat(), "value": 1.0, "n": 100},
                    {"end": "yesterday", "value": 2.0, "n": 100},
                ],
            },
        )
        # a drift verdict of credit's champion whose share threshold is no number: its
        # report's build reads it with ``float``, which raises ValueError
        champion = store.champion("credit")
        assert champion is not None
        store.add_evaluation(
            model="credit",
            version=champion.version,
            kind="drift",
            status="ok",
            window_start=now - timedelta(hours=1),
            window_end=now,
            payload={"columns": [], "share_threshold": "half"},
        )
    with serve(data_dir) as running:
        yield running


def test_a_page_that_fails_while_rendering_is_an_html_500_logged_with_its_traceback(
    broken: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """It was a JSON 500 `{"code": "internal"}` in the browser: no page, no way back."""
    path = f"/models/{BROKEN}/decay"
    api = httpx.get(f"{broken.url}/v1/dashboard{path}", headers=broken.auth("viewer"), timeout=60)
    assert api.status_code == 200  # the JSON serves the stored payload as it is
    with caplog.at_level(logging.ERROR, logger="tunewatch.dashboard"):
        r = httpx.get(
            f"{broken.url}/dashboard{path}",
            cookies=session_cookie(broken.url, broken.tokens["viewer"]),
            timeout=60,
        )
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert 'data-status="500"' in r.text
    assert "yesterday" not in r.text and "Traceback" not in r.text  # the log's, not the page's
    assert 'href="/dashboard/"' in r.text  # a way back, and the signed-in header
    assert "Sign out" in r.text
    failed = [rec for rec in caplog.records if rec.name == "tunewatch.dashboard._session"]
    assert len(failed) == 1 and failed[0].exc_info is not None
    assert failed[0].exc_info[0] is ValueError
    assert path in failed[0].getMessage()


def test_a_drift_report_that_fails_while_building_is_an_html_500_logged_with_its_traceback(
    broken: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """The report's page was the one page outside the dashboard's error handling: an
    unexpected failure was the API's JSON 500 in the browser."""
    (drift,) = [
        row
        for row in broken.daemon.store.list_evaluations("credit", kind="drift")
        if row.payload.get("share_threshold") == "half"
    ]
    path = f"/models/credit/drift/{drift.id}/report"
    with caplog.at_level(logging.ERROR, logger="tunewatch.dashboard"):
        r = httpx.get(
            f"{broken.url}/dashboard{path}",
            cookies=session_cookie(broken.url, broken.tokens["viewer"]),
            timeout=120,
        )
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    assert 'data-status="500"' in r.text and "Sign out" in r.text
    assert "half" not in r.text and "Traceback" not in r.text
    failed = [rec for rec in caplog.records if rec.name == "tunewatch.dashboard._session"]
    assert len(failed) == 1 and failed[0].exc_info is not None
    assert failed[0].exc_info[0] is ValueError
