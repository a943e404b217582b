"""``GET /v1/jobs`` and ``GET /v1/approvals`` are read back to their first row a page at
a time, as ``/v1/events`` and ``/v1/audit`` are: ``?before_id=`` (only the rows of a lower
id) and ``next`` in the answer (the ``before_id`` of the next older page, null on the
last), the ``model`` and ``status`` filters applying on every page. They answered only
the newest ``limit`` (at most 10,000) rows, and nothing older could be read. On SQLite and
PostgreSQL; an id is a 32-bit INTEGER there, so a cursor past it is refused as a 400."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_pg_schema
from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel
from tunewatch.store import MAX_ID, Store

OTHER = "other"
JOBS = 15  # of each model; every third failed, the rest queued
APPROVALS = 12  # of each model, one per retired version; every third rejected


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest,
    trained: list[ExampleModel],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:
    """A daemon over each store backend holding jobs and approval requests of two models,
    interleaved, in more than one status. One per backend for the module: the tests only
    read it."""
    data = tmp_path_factory.mktemp("pages")
    with ExitStack() as stack:
        if request.param == "sqlite":
            store_url = f"sqlite:///{data}/tunewatch.db"
        else:
            request.getfixturevalue("pg_available")
            store_url = stack.enter_context(fresh_pg_schema())
        daemon, tokens = make_daemon(
            data / "daemon", trained, store_url=store_url, extra={"scheduler": {"enabled": False}}
        )
        stack.callback(daemon.close)
        _fill(daemon.store)
        with BackgroundServer(daemon.app) as server:
            yield Running(daemon=daemon, server=server, tokens=tokens)


def _fill(store: Store) -> None:
    store.ensure_model(name=OTHER, task="binary", feature_names=["a", "b"])
    for i in range(JOBS):
        for model in (MODEL, OTHER):
            job, _ = store.create_job(model=model, kind="retune", trigger={"i": i}, spec={})
            if i % 3 == 0:
                store.finish_job(job.id, status="failed", error="test")
    for i in range(APPROVALS):
        for model in (MODEL, OTHER):
            version = store.add_version(
                model=model,
                artefact_sha256="c" * 64,
                hyperparameters={"C": float(i)},
                size_bytes=1,
                actor="t",
                stage="retired",
            )
            approval = store.request_approval(
                model, version.version, requested_by="alice", reason="it won", rules=["r"]
            )
            if i % 3 == 0:
                store.decide_approval(approval.id, approver="bob", approve=False, reason="no")


def _get(running: Running, path: str, **params: str | int) -> httpx.Response:
    return httpx.get(
        f"{running.url}{path}", params=params, headers=running.auth("viewer"), timeout=60
    )


Page = Callable[[int | None], tuple[list[dict[str, Any]], int | None]]


def _pages(running: Running, path: str, key: str, limit: int, **filters: str) -> Page:
    def read(cursor: int | None) -> tuple[list[dict[str, Any]], int | None]:
        params: dict[str, str | int] = {"limit": limit, **filters}
        if cursor is not None:
            params["before_id"] = cursor
        r = _get(running, path, **params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert list(body) == [key, "next"]  # the existing key, and the cursor
        return body[key], body["next"]

    return read


def _walk(page: Page) -> list[list[int]]:
    """The ids of every page, following ``next`` from the newest page until it is null;
    each ``next`` is the last id of its page."""
    pages: list[list[int]] = []
    cursor: int | None = None
    while True:
        rows, cursor = page(cursor)
        pages.append([row["id"] for row in rows])
        if cursor is None:
            return pages
        assert cursor == rows[-1]["id"]
        assert len(pages) <= 4 * JOBS  # a cursor that never ends fails rather than loops


def _sizes(total: int, limit: int) -> list[int]:
    return [min(limit, total - start) for start in range(0, total, limit)]


def _check_walks(
    running: Running,
    path: str,
    key: str,
    every: Callable[..., list[Any]],
    filters: list[dict[str, str]],
) -> None:
    for chosen in filters:
        expected = [row.id for row in every(**chosen)]
        assert expected == sorted(expected, reverse=True) and expected, chosen
        for limit in (7, 3, len(expected) - 1, len(expected)):
            pages = _walk(_pages(running, path, key, limit, **chosen))
            assert [i for page in pages for i in page] == expected, (chosen, limit)
            assert [len(p) for p in pages] == _sizes(len(expected), limit), (chosen, limit)


def test_every_job_is_read_once_newest_first_a_page_at_a_time(served: Running) -> None:
    store = served.daemon.store

    def every(model: str | None = None, status: str | None = None) -> list[Any]:
        return list(store.list_jobs(model=model, status=status, limit=10_000))

    filters = [{}, {"model": MODEL}, {"status": "failed"}, {"model": OTHER, "status": "queued"}]
    _check_walks(served, "/v1/jobs", "jobs", every, filters)
    for row in _pages(served, "/v1/jobs", "jobs", 1000, model=OTHER, status="failed")(None)[0]:
        assert (row["model"], row["status"]) == (OTHER, "failed")


def test_every_approval_is_read_once_newest_first_a_page_at_a_time(served: Running) -> None:
    store = served.daemon.store

    def every(model: str | None = None, status: str | None = None) -> list[Any]:
        return list(store.list_approvals(model=model, status=status, limit=10_000))

    filters = [
        {},
        {"model": OTHER},
        {"status": "rejected"},
        {"model": MODEL, "status": "pending"},
    ]
    _check_walks(served, "/v1/approvals", "approvals", every, filters)


@pytest.mark.parametrize(("path", "key"), [("/v1/jobs", "jobs"), ("/v1/approvals", "approvals")])
def test_a_cursor_lists_only_older_rows_and_the_oldest_ends_the_listing(
    served: Running, path: str, key: str
) -> None:
    read = _pages(served, path, key, 100)
    newest, _ = read(None)
    ids = [row["id"] for row in newest]
    assert read(MAX_ID)[0] == newest  # the largest cursor lists from the newest
    assert [row["id"] for row in read(ids[3])[0]] == ids[4:]
    assert read(ids[-1]) == ([], None)
    assert read(1) == ([], None)  # no row has a lower id


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/approvals"])
@pytest.mark.parametrize("value", ["0", "-3", "2147483648", "1_0", "x", "９"])
def test_a_malformed_or_out_of_range_cursor_is_a_400_naming_it(
    served: Running, path: str, value: str
) -> None:
    r = _get(served, path, before_id=value)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error", "code"}
    assert r.json()["code"] == "invalid_request" and "before_id" in r.json()["error"]


def test_the_store_listings_take_the_cursor_as_a_keyword_with_a_default(
    served: Running,
) -> None:
    """The CLI and the dashboard call them without it and get the newest rows, as before."""
    store = served.daemon.store
    jobs = store.list_jobs(model=MODEL, limit=5)
    assert [j.id for j in store.list_jobs(model=MODEL, limit=5, before_id=jobs[1].id)] == [
        j.id for j in store.list_jobs(model=MODEL, limit=7)[2:]
    ]
    approvals = store.list_approvals(status="pending", limit=5)
    older = store.list_approvals(status="pending", limit=5, before_id=approvals[1].id)
    assert [a.id for a in older] == [
        a.id for a in store.list_approvals(status="pending", limit=7)[2:]
    ]


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/approvals"])
def test_the_openapi_document_gives_the_cursor_and_its_32_bit_bound(
    served: Running, path: str
) -> None:
    r = httpx.get(f"{served.url}/openapi.json", timeout=60)
    assert r.status_code == 200, r.text
    params = {p["name"]: p for p in r.json()["paths"][path]["get"]["parameters"]}
    assert list(params) == ["model", "status", "limit", "before_id"]
    cursor = params["before_id"]
    assert cursor["in"] == "query" and not cursor.get("required", False)
    assert "`next`" in cursor["description"]
    assert (cursor["schema"]["minimum"], cursor["schema"]["maximum"]) == (1, MAX_ID)
