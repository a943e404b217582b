"""Dashboard pages over a model with hundreds of versions: the tuning page and its JSON
list the newest ``limit`` (and say how many there are), the overview reads the champion
and the challengers only, and the latency page reads only the versions its windows name."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from tests.dashboard.test_long_histories import Served, _insert, served  # noqa: F401
from tunewatch import dashboard
from tunewatch.dashboard._queries import newest_versions, versions_named
from tunewatch.store import Store
from tunewatch.store._schema import evaluations

RETIRED = 300
DASHBOARD = str(Path(dashboard.__file__).parent)
DETAILS = {
    "job": 7,
    "best_value": 0.25,
    "n_trials": 40,
    "stopped_by": "budget",
    "fold_scores": [0.2, 0.3, 0.25, 0.24, 0.26],
    "warm_start_plan": {"strategy": "top_k", "trials": list(range(50))},
}


@pytest.fixture(scope="module")
def crowded(served: Served) -> Served:  # noqa: F811
    """Model ``crowded``: v1..v300 retired (as tuning jobs leave them), v301 the champion,
    v302 its shadow challenger, and one telemetry window naming v301 and v302."""
    store = served.store
    store.ensure_model(name="crowded", task="binary", feature_names=["a"])
    for i in range(RETIRED):
        store.add_version(
            model="crowded",
            artefact_sha256="c" * 64,
            hyperparameters={"C": float(i)},
            size_bytes=1,
            actor="t",
            details=DETAILS,
            stage="retired",
        )
    store.add_version(
        model="crowded",
        artefact_sha256="c" * 64,
        hyperparameters={"C": -1.0},
        size_bytes=1,
        actor="t",
        details=DETAILS,
        stage="champion",
    )
    store.add_version(
        model="crowded",
        artefact_sha256="c" * 64,
        hyperparameters={"C": -2.0},
        size_bytes=1,
        actor="t",
        details=DETAILS,
        parent_version=RETIRED + 1,
    )
    at = datetime(2025, 6, 1, tzinfo=UTC)
    entry = {"p50": 0.01, "p90": 0.02, "p99": 0.03, "n": 10, "memory_bytes": 1000}
    _insert(
        store,
        evaluations,
        [
            {
                "model": "crowded",
                "version": None,
                "kind": "telemetry",
                "window_start": at,
                "window_end": at,
                "created_at": at,
                "status": "ok",
                "payload": {"versions": {"301": entry, "302": entry}},
            }
        ],
    )
    return served


@pytest.fixture(scope="module")
def browser(crowded: Served) -> Iterator[httpx.Client]:
    """A browser signed in through the login form, as a viewer."""
    token = crowded.headers["Authorization"].removeprefix("Bearer ")
    with httpx.Client(base_url=crowded.url, timeout=60) as client:
        signed_in = client.post("/dashboard/login", data={"token": token}, follow_redirects=False)
        assert signed_in.status_code == 303, signed_in.text
        yield client


@contextmanager
def version_rows_read(running: Served) -> Iterator[list[int]]:
    """Counts the ``model_versions`` rows the dashboard's statements run inside the block
    return: each SELECT that reads the table from the dashboard's code (not the daemon's
    lineup refresh, which may run meanwhile) is recorded and, after the block, run again."""
    seen: list[tuple[str, Any]] = []
    lock = threading.Lock()

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        reads = statement.lstrip().upper().startswith("SELECT") and "model_versions" in statement
        if reads and any(DASHBOARD in f.filename for f in traceback.extract_stack()):
            with lock:
                seen.append((statement, parameters))

    engine = running.store.engine
    counts: list[int] = []
    event.listen(engine, "after_cursor_execute", record)
    try:
        yield counts
    finally:
        event.remove(engine, "after_cursor_execute", record)
    with engine.connect() as conn:
        for statement, parameters in seen:
            counts.append(len(conn.exec_driver_sql(statement, parameters).fetchall()))


def test_tuning_json_lists_the_newest_limit_versions_with_the_total(crowded: Served) -> None:
    body = crowded.get("/v1/dashboard/models/crowded/tuning").json()
    assert [v["version"] for v in body["versions"]] == list(range(302, 252, -1))
    assert body["versions_total"] == RETIRED + 2 and body["limit"] == 50
    few = crowded.get("/v1/dashboard/models/crowded/tuning", limit="3").json()
    assert [v["version"] for v in few["versions"]] == [302, 301, 300]
    assert few["versions"][0]["warm_start_plan"] == DETAILS["warm_start_plan"]


def test_tuning_reads_no_more_version_rows_than_the_limit(crowded: Served) -> None:
    with version_rows_read(crowded) as counts:
        crowded.get("/v1/dashboard/models/crowded/tuning", limit="10")
    assert counts and sum(counts) <= 10 + 1  # the shown versions and a count


def test_tuning_page_says_how_many_versions_it_shows(browser: httpx.Client) -> None:
    page = browser.get("/dashboard/models/crowded/tuning")
    assert page.status_code == 200, page.text
    assert "Showing 50 of 302 versions" in page.text
    assert page.text.count("<td>v") == 50
    few = browser.get("/dashboard/models/crowded/tuning", params={"limit": "5"})
    assert "Showing 5 of 302 versions" in few.text and few.text.count("<td>v") == 5


@pytest.mark.parametrize("bad", ["0", "501", "many", "1.5"])
def test_tuning_limit_out_of_range_is_a_400_naming_the_field(
    crowded: Served, browser: httpx.Client, bad: str
) -> None:
    r = crowded.get("/v1/dashboard/models/crowded/tuning", limit=bad)
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_request" and "limit" in r.json()["error"]
    page = browser.get("/dashboard/models/crowded/tuning", params={"limit": bad})
    assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
    assert "`limit` must be an integer in [1, 500]" in page.text


def test_overview_reads_the_champion_and_challengers_not_every_version(crowded: Served) -> None:
    with version_rows_read(crowded) as counts:
        body = crowded.get("/v1/dashboard/overview").json()
    model = next(m for m in body["models"] if m["name"] == "crowded")
    assert model["champion"]["version"] == RETIRED + 1
    assert [c["version"] for c in model["challengers"]] == [RETIRED + 2]
    assert model["versions"] == RETIRED + 2
    models = len(body["models"])
    assert sum(counts) <= 3 * models + 2  # champion, challengers and a count per model


def test_telemetry_reads_only_the_versions_its_windows_name(
    crowded: Served, browser: httpx.Client
) -> None:
    with version_rows_read(crowded) as counts:
        body = crowded.get("/v1/dashboard/models/crowded/telemetry").json()
    assert [(c["version"], c["stage"]) for c in body["current"]] == [
        (301, "champion"),
        (302, "shadow"),
    ]
    assert body["current"][0]["hyperparameters"] == {"C": -1.0}
    assert sum(counts) <= 2
    page = browser.get("/dashboard/models/crowded/telemetry")
    assert page.status_code == 200 and "champion" in page.text


def test_newest_versions_and_versions_named_read_only_what_they_return(store_url: str) -> None:
    """The two registry reads the pages use, on both backends."""
    with Store.open(store_url) as store:
        store.ensure_model(name="m", task="binary", feature_names=["a"])
        assert newest_versions(store, "m", limit=5) == ([], 0)
        for i in range(12):
            store.add_version(
                model="m",
                artefact_sha256="d" * 64,
                hyperparameters={"C": float(i)},
                size_bytes=1,
                actor="t",
                details=DETAILS,
                stage="retired",
            )
        shown, total = newest_versions(store, "m", limit=5)
        assert [v.version for v in shown] == [12, 11, 10, 9, 8] and total == 12
        assert shown[0].hyperparameters == {"C": 11.0} and shown[0].details == DETAILS
        assert newest_versions(store, "m", limit=0) == ([], 12)
        named = versions_named(store, "m", {3, 7, 99})
        assert sorted(named) == [3, 7] and named[7].hyperparameters == {"C": 6.0}
        assert versions_named(store, "m", set()) == {}
