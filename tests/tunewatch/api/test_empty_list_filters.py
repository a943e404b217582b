"""An empty filter on the /v1 list routes (`?type=`, `?model=`, `?status=`) means all,
as no filter does and as the dashboard's JSON reads it: it matched the empty string, so
a script whose variable was unset got an empty list, 200, and no audit events."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel


@pytest.fixture(scope="module")
def listed(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """A daemon whose store holds events, a job and an approval to list."""
    daemon, tokens = make_daemon(tmp_path_factory.mktemp("filters"), trained)
    daemon.store.add_event(model=MODEL, type="drift_detected", payload={"column": "x0"})
    daemon.store.create_job(model=MODEL, kind="retune", trigger={"reason": "test"}, spec={})
    daemon.store.request_approval(
        MODEL, 2, requested_by="test", reason="it won", rules=["regulated model"]
    )
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/v1/events?type=", "events"),
        ("/v1/events?model=", "events"),
        ("/v1/events?model=&type=&limit=5", "events"),
        ("/v1/jobs?model=", "jobs"),
        ("/v1/jobs?status=", "jobs"),
        ("/v1/approvals?model=", "approvals"),
        ("/v1/approvals?status=", "approvals"),
    ],
    ids=[
        "events-type",
        "events-model",
        "events-both-with-limit",
        "jobs-model",
        "jobs-status",
        "approvals-model",
        "approvals-status",
    ],
)
def test_an_empty_list_filter_answers_as_no_filter(listed: Running, path: str, key: str) -> None:
    with httpx.Client(base_url=listed.url, headers=listed.auth("viewer")) as c:
        unfiltered = c.get(path.partition("?")[0])
        filtered = c.get(path)
    assert unfiltered.status_code == 200, unfiltered.text
    assert filtered.status_code == 200, filtered.text
    assert unfiltered.json()[key], f"nothing to list at {path}"
    assert filtered.json() == unfiltered.json()


@pytest.mark.parametrize(
    "path",
    [
        "/v1/events?type=rollback_failed",
        "/v1/events?model=a%00b",
        "/v1/jobs?model=elsewhere",
        "/v1/approvals?model=a%00b",
    ],
    ids=[
        "events-recorded-type-none-stored",
        "events-nul-model",
        "jobs-other-model",
        "approvals-nul-model",
    ],
)
def test_a_non_empty_list_filter_still_filters(listed: Running, path: str) -> None:
    r = httpx.get(f"{listed.url}{path}", headers=listed.auth("viewer"))
    assert r.status_code == 200, r.text
    assert not next(iter(r.json().values())), r.text


def test_an_unknown_status_filter_is_still_refused(listed: Running) -> None:
    r = httpx.get(f"{listed.url}/v1/jobs?status=done", headers=listed.auth("viewer"))
    assert r.status_code == 400 and r.json()["code"] == "invalid_request", r.text
    assert "query.status" in r.json()["error"]
