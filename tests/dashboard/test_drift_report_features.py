"""The dashboard's drift report page takes ``?features=``, as the API's report route does:
it always opened the report of the default 50 features, so someone looking at the 200 most
drifting features on the drift page opened a report of 50. The drift page's link to the
latest window's report (and its JSON's API link) carries the page's ``features`` when it is
not the default; the report page reads the parameter exactly as the drift page does."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.dashboard.scenario import Served, session_cookie
from tunewatch._drift_columns_shown import OUTCOMES
from tunewatch.dashboard._html import CSP

# evidently's column table holds one row per column it shows
_SECTION = re.compile(r'"column_name": "([^"]*)"')
_REPORT_LINK = re.compile(r'<a class="report" href="([^"]*)"')


@pytest.fixture(scope="module")
def cookies(served: Served) -> dict[str, str]:
    return session_cookie(served.url, served.tokens["viewer"])


def _page(served: Served, path: str, cookies: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{served.url}{path}", cookies=cookies, follow_redirects=False, timeout=300)


def _latest_drift_id(served: Served) -> int:
    [latest] = served.daemon.store.list_evaluations(served.model, kind="drift", limit=1)
    return latest.id


def test_the_report_page_shows_the_features_it_is_asked_for(
    served: Served, cookies: dict[str, str]
) -> None:
    [latest] = served.daemon.store.list_evaluations(served.model, kind="drift", limit=1)
    tested = [c for c in latest.payload["columns"] if c.get("status") != "insufficient_data"]
    features = [c for c in tested if c["column"] not in OUTCOMES]
    assert len(features) > 3  # more columns than the cap: the demo's 8 features
    path = f"/dashboard/models/{served.model}/drift/{latest.id}/report?features=3"
    r = _page(served, path, cookies)
    assert r.status_code == 200, r.text[:300]
    shown = _SECTION.findall(r.text)
    assert len([c for c in shown if c not in OUTCOMES]) == 3
    assert f"{len(shown)} of {len(tested)} columns shown" in r.text


@pytest.mark.parametrize("raw", ["0", "1001", "%2B3", "3.0", "x"])
def test_the_report_page_refuses_features_as_the_drift_page_does(
    served: Served, cookies: dict[str, str], raw: str
) -> None:
    for path in (
        f"/dashboard/models/{served.model}/drift",
        f"/dashboard/models/{served.model}/drift/{_latest_drift_id(served)}/report",
    ):
        r = _page(served, f"{path}?features={raw}", cookies)
        assert r.status_code == 400, (path, r.text[:300])
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["content-security-policy"] == CSP
        assert 'data-status="400"' in r.text
        assert "`features` must be an integer in [1, 1000]" in r.text, path


@pytest.mark.parametrize(
    ("query", "suffix"),
    [("", ""), ("?features=50", ""), ("?features=3", "?features=3")],
    ids=["absent", "default", "set"],
)
def test_the_drift_page_links_a_report_of_its_features(
    served: Served, cookies: dict[str, str], query: str, suffix: str
) -> None:
    m, drift_id = served.model, _latest_drift_id(served)
    r = _page(served, f"/dashboard/models/{m}/drift{query}", cookies)
    assert r.status_code == 200, r.text[:300]
    assert _REPORT_LINK.findall(r.text) == [
        f"/dashboard/models/{m}/drift/{drift_id}/report{suffix}"
    ]
    body = httpx.get(
        f"{served.url}/v1/dashboard/models/{m}/drift{query}",
        headers=served.auth("viewer"),
        timeout=60,
    ).json()
    assert body["latest"]["report"] == f"/v1/models/{m}/evaluations/{drift_id}/report{suffix}"
