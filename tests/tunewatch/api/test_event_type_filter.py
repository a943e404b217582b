"""``GET /v1/events?type=`` refuses a type the daemon does not record and the store does
not hold: a misspelt ``?type=drift_detcted`` answered an empty list, 200, read as "nothing
drifted". The 400 names the parameter and the value and lists the types recorded
(:data:`tunewatch._event_types.RECORDED`). A recorded type with no event is an empty
page, and a type only an earlier version recorded still filters while events of it are
stored."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._event_types import RECORDED
from tunewatch._example import ExampleModel

LEGACY = "legacy_note"  # a type no version of this daemon records


@pytest.fixture(scope="module")
def served(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """A daemon whose store holds a drift event, and two of a type it no longer records
    (one of another model)."""
    daemon, tokens = make_daemon(tmp_path_factory.mktemp("event_types"), trained)
    daemon.store.add_event(model=MODEL, type="drift_detected", payload={"column": "x0"})
    daemon.store.add_event(model=MODEL, type=LEGACY, payload={"i": 1})
    daemon.store.add_event(model="other", type=LEGACY, payload={"i": 2})
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


def _get(served: Running, query: str) -> httpx.Response:
    return httpx.get(f"{served.url}/v1/events?{query}", headers=served.auth("viewer"))


def test_an_unknown_event_type_is_refused_listing_the_recorded_ones(served: Running) -> None:
    r = _get(served, "type=drift_detcted")
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "invalid_request"
    message = body["error"]
    assert message.startswith("query.type: "), message
    assert "got 'drift_detcted'" in message and "did you mean 'drift_detected'?" in message
    assert [t for t in RECORDED if f"'{t}'" not in message] == [], message


def test_an_unknown_event_type_is_refused_for_a_model_too(served: Running) -> None:
    r = _get(served, f"model={MODEL}&type=promotion")
    assert r.status_code == 400 and r.json()["code"] == "invalid_request", r.text
    assert "got 'promotion'" in r.json()["error"]


def test_a_recorded_type_with_no_event_is_an_empty_page(served: Running) -> None:
    r = _get(served, "type=rollback_failed")
    assert r.status_code == 200, r.text
    assert r.json() == {"events": [], "next": None}


def test_a_recorded_type_filters(served: Running) -> None:
    r = _get(served, "type=drift_detected")
    assert r.status_code == 200, r.text
    assert [e["payload"] for e in r.json()["events"]] == [{"column": "x0"}]


def test_a_type_an_earlier_version_recorded_still_filters(served: Running) -> None:
    assert LEGACY not in RECORDED
    everywhere = _get(served, f"type={LEGACY}")
    assert everywhere.status_code == 200, everywhere.text
    assert [e["payload"]["i"] for e in everywhere.json()["events"]] == [2, 1]
    ours = _get(served, f"model={MODEL}&type={LEGACY}")
    assert ours.status_code == 200, ours.text
    assert [e["payload"]["i"] for e in ours.json()["events"]] == [1]


def test_a_stored_type_of_another_model_is_an_empty_page_not_a_refusal(served: Running) -> None:
    r = _get(served, f"model=nosuch&type={LEGACY}")
    assert r.status_code == 200, r.text
    assert r.json()["events"] == []


def test_the_openapi_type_parameter_lists_the_recorded_types(served: Running) -> None:
    spec = httpx.get(f"{served.url}/openapi.json").json()
    params = spec["paths"]["/v1/events"]["get"]["parameters"]
    (described,) = [p["description"] for p in params if p["name"] == "type"]
    assert [t for t in RECORDED if f"`{t}`" not in described] == [], described
    assert "Empty or absent: all." in described
