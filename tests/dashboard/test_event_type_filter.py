"""The dashboard's events page and its JSON refuse an event type the daemon does not record
and the store holds no events of, as ``GET /v1/events?type=`` does
(:func:`tunewatch.api._log.checked_type`): a misspelt ``?type=drift_detcted`` showed an
empty list, read as "nothing drifted". The JSON answers 400 ``invalid_request``, the page
its HTML error page; both name the value and the types recorded. A recorded type with no
event is an empty list, and a type only an earlier version recorded still filters while
events of it are stored."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.dashboard.scenario import Served, serve, session_cookie
from tunewatch._event_types import RECORDED
from tunewatch.dashboard._html import CSP

MODEL = "events-model"
LEGACY = "legacy_note"  # a type no version of this daemon records


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A daemon whose store holds a drift event of the model and one of a type the daemon
    no longer records."""
    with serve(tmp_path_factory.mktemp("dashboard-event-types")) as running:
        store = running.daemon.store
        store.ensure_model(name=MODEL, task="binary", feature_names=["x0"])
        store.add_event(model=MODEL, type="drift_detected", payload={"column": "x0"})
        store.add_event(model=MODEL, type=LEGACY, payload={"i": 1})
        yield running


@pytest.fixture(scope="module")
def cookies(served: Served) -> dict[str, str]:
    return session_cookie(served.url, served.tokens["viewer"])


def _json(served: Served, type: str) -> httpx.Response:
    return httpx.get(
        f"{served.url}/v1/dashboard/models/{MODEL}/events",
        params={"type": type},
        headers=served.auth("viewer"),
        timeout=60,
    )


def _page(served: Served, cookies: dict[str, str], type: str) -> httpx.Response:
    return httpx.get(
        f"{served.url}/dashboard/models/{MODEL}/events",
        params={"type": type},
        cookies=cookies,
        follow_redirects=False,
        timeout=60,
    )


def test_the_json_refuses_a_misspelt_type_naming_it_and_the_recorded_ones(
    served: Served,
) -> None:
    r = _json(served, "drift_detcted")
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) == {"error", "code"} and body["code"] == "invalid_request"
    message = body["error"]
    assert "got 'drift_detcted'" in message and "did you mean 'drift_detected'?" in message
    assert [t for t in RECORDED if f"'{t}'" not in message] == [], message


def test_the_page_answers_its_error_page_for_a_misspelt_type(
    served: Served, cookies: dict[str, str]
) -> None:
    r = _page(served, cookies, "drift_detcted")
    assert r.status_code == 400, r.text[:300]
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    assert 'data-status="400"' in r.text
    assert "got &#x27;drift_detcted&#x27;" in r.text
    assert "did you mean &#x27;drift_detected&#x27;?" in r.text


def test_a_type_an_earlier_version_recorded_is_listed_while_stored(
    served: Served, cookies: dict[str, str]
) -> None:
    assert LEGACY not in RECORDED
    r = _json(served, LEGACY)
    assert r.status_code == 200, r.text
    assert [e["payload"] for e in r.json()["events"]] == [{"i": 1}]
    page = _page(served, cookies, LEGACY)
    assert page.status_code == 200, page.text[:300]
    events = page.text.split("<h2>Audit log</h2>")[0]
    assert events.count('class="event-type"') == 1 and f">{LEGACY}</span>" in events


def test_a_recorded_type_with_no_event_is_an_empty_list_with_its_chip_current(
    served: Served, cookies: dict[str, str]
) -> None:
    r = _json(served, "rollback_failed")
    assert r.status_code == 200, r.text
    assert r.json()["events"] == []
    page = _page(served, cookies, "rollback_failed")
    assert page.status_code == 200, page.text[:300]
    assert 'data-value="rollback_failed" aria-current="true"' in page.text


def test_an_empty_type_still_means_all(served: Served, cookies: dict[str, str]) -> None:
    r = _json(served, "")
    assert r.status_code == 200, r.text
    assert len(r.json()["events"]) == 2
    assert _page(served, cookies, "").status_code == 200
