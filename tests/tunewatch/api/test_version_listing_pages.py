"""``GET /v1/models/{m}/versions`` answers a page of the model's versions, newest first:
``?limit=`` (1–10,000, default 100) of them, and ``next``, the ``before`` of the next
older page (null on the last), so every version is read a page at a time. It had no
limit or cursor: 2,003 versions answered 8.3 MB in 4 s, and ``?limit=10`` was a 400.

``GET /v1/models`` and ``/v1/models/{m}`` answer as before, but read the champion, the
challengers and a count instead of every version with its details (0.5–0.7 s for a
160-byte answer at 2,003 versions). On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from tests.conftest import fresh_pg_schema
from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch import api
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel
from tunewatch.api._models import version_json
from tunewatch.store import Store

RETIRED = 248  # besides the example champion (v1) and its shadow (v2)
TOTAL = RETIRED + 2
DETAILS = {
    "fold_scores": [0.2, 0.3, 0.25, 0.24, 0.26],
    "warm_start_plan": {"strategy": "top_k", "trials": list(range(50))},
}
MODELS_ROUTES = str(Path(api.__file__).parent / "_models.py")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest,
    trained: list[ExampleModel],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:
    """A daemon over each store backend whose model has ``TOTAL`` versions: the example
    champion v1 and shadow v2, then v3..v250 retired (as tuning jobs leave them). One per
    backend for the module: the tests only read it (but for a model of their own), and
    writing the versions took 2 s a test."""
    data = tmp_path_factory.mktemp("versions")
    with ExitStack() as stack:
        if request.param == "sqlite":
            store_url = f"sqlite:///{data}/tunewatch.db"
        else:
            request.getfixturevalue("pg_available")
            store_url = stack.enter_context(fresh_pg_schema())
        yield from _served(trained, data, store_url)


def _served(trained: list[ExampleModel], data: Path, store_url: str) -> Iterator[Running]:
    daemon, tokens = make_daemon(
        data / "daemon", trained, store_url=store_url, extra={"scheduler": {"enabled": False}}
    )
    try:
        for i in range(RETIRED):
            daemon.store.add_version(
                model=MODEL,
                artefact_sha256="c" * 64,
                hyperparameters={"C": float(i)},
                size_bytes=1,
                actor="t",
                details=DETAILS,
                stage="retired",
            )
        with BackgroundServer(daemon.app) as server:
            yield Running(daemon=daemon, server=server, tokens=tokens)
    finally:
        daemon.close()


def _get(running: Running, path: str, **params: object) -> httpx.Response:
    return httpx.get(
        f"{running.url}{path}", params=params, headers=running.auth("viewer"), timeout=60
    )


def _page(running: Running, **params: object) -> dict[str, Any]:
    r = _get(running, f"/v1/models/{MODEL}/versions", **params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert list(body) == ["versions", "next"]  # the existing key, and the cursor
    return body


def _walk(running: Running, limit: int | None) -> list[list[int]]:
    """The version numbers of every page, following ``next`` from the newest page."""
    pages: list[list[int]] = []
    params: dict[str, object] = {} if limit is None else {"limit": limit}
    while True:
        body = _page(running, **params)
        shown = [v["version"] for v in body["versions"]]
        pages.append(shown)
        if body["next"] is None:
            return pages
        assert body["next"] == shown[-1]  # the last version shown
        params["before"] = body["next"]
        assert len(pages) <= TOTAL + 1  # a cursor that never ends fails rather than loops


def test_versions_answer_the_newest_100_by_default_with_the_next_cursor(
    served: Running,
) -> None:
    every = list(reversed(served.daemon.store.list_versions(MODEL)))
    body = _page(served)
    assert [v["version"] for v in body["versions"]] == list(range(TOTAL, TOTAL - 100, -1))
    assert body["versions"] == [version_json(v) for v in every[:100]]  # each version whole
    assert body["next"] == TOTAL - 99


def test_following_next_reads_every_version_exactly_once(served: Running) -> None:
    newest_first = list(range(TOTAL, 0, -1))
    for limit in (None, 7, TOTAL - 1, TOTAL, 10_000):
        pages = _walk(served, limit)
        assert [v for page in pages for v in page] == newest_first, limit
        size = 100 if limit is None else limit
        assert [len(p) for p in pages] == [
            min(size, TOTAL - start) for start in range(0, TOTAL, size)
        ], limit
    assert _page(served, limit=3, before=3) == {
        "versions": [version_json(v) for v in served.daemon.store.get_versions(MODEL, [2, 1])][
            ::-1
        ],
        "next": None,
    }
    assert _page(served, before=1) == {"versions": [], "next": None}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("limit", "0"),
        ("limit", "10001"),
        ("limit", "many"),
        ("before", "0"),
        ("before", "-3"),
        ("before", "2147483648"),
    ],
)
def test_versions_limit_and_before_out_of_range_are_a_400_naming_the_parameter(
    served: Running, name: str, value: str
) -> None:
    r = _get(served, f"/v1/models/{MODEL}/versions", **{name: value})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request" and name in r.json()["error"]


@contextmanager
def version_rows_read(running: Running) -> Iterator[list[int]]:
    """Counts the ``model_versions`` rows the model routes' statements inside the block
    return: each SELECT reading the table from ``tunewatch/api/_models.py``'s call stack
    (not the daemon's line-up refresh) is recorded and, after the block, run again."""
    seen: list[tuple[str, Any]] = []
    lock = threading.Lock()

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        reads = statement.lstrip().upper().startswith("SELECT") and "model_versions" in statement
        if reads and any(f.filename == MODELS_ROUTES for f in traceback.extract_stack()):
            with lock:
                seen.append((statement, parameters))

    engine = running.daemon.store.engine
    counts: list[int] = []
    event.listen(engine, "after_cursor_execute", record)
    try:
        yield counts
    finally:
        event.remove(engine, "after_cursor_execute", record)
    with engine.connect() as conn:
        for statement, parameters in seen:
            counts.append(len(conn.exec_driver_sql(statement, parameters).fetchall()))


def _as_before(store: Store) -> Callable[[str], dict[str, Any]]:
    """A model's answer as the routes built it from every version."""

    def answer(name: str) -> dict[str, Any]:
        row = store.get_model(name)
        versions = store.list_versions(name)
        return {
            "name": row.name,
            "task": row.task,
            "feature_names": list(row.feature_names),
            "regulated": row.regulated,
            "champion": next((v.version for v in versions if v.stage == "champion"), None),
            "challengers": [v.version for v in versions if v.stage == "shadow"],
            "versions": len(versions),
        }

    return answer


def test_model_answers_are_unchanged_and_read_no_version_whole(served: Running) -> None:
    store = served.daemon.store
    store.ensure_model(name="empty", task="regression", feature_names=["a", "b"])
    expected = _as_before(store)
    assert expected(MODEL)["champion"] == 1 and expected(MODEL)["challengers"] == [2]

    with version_rows_read(served) as counts:
        one = _get(served, f"/v1/models/{MODEL}")
    assert one.status_code == 200, one.text
    assert one.json() == expected(MODEL) and list(one.json()) == list(expected(MODEL))
    assert counts and sum(counts) <= 2  # the champion and its challenger, counted with them

    with version_rows_read(served) as counts:
        every = _get(served, "/v1/models")
    assert every.status_code == 200, every.text
    assert every.json() == {"models": [expected("credit"), expected("empty")], "next": None}
    assert expected("empty") | {"champion": None, "challengers": [], "versions": 0} == (
        expected("empty")
    )
    assert sum(counts) <= 2 + 1  # and one row for the model without versions

    missing = _get(served, "/v1/models/nosuch")
    assert missing.status_code == 404 and missing.json()["code"] == "model_not_found"
