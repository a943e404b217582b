"""``GET /v1/models`` answers a page of models, ascending by name (code point by code
point, on SQLite and PostgreSQL alike): ``?limit=`` (1–10,000, default 100) of them, and
``next``, the ``?after=`` of the next page (the last name shown; null on the last page),
each model with its champion, challengers and count of versions as before — read in
one statement for the whole page.

It answered every model, reading each one's row and line-up with two statements of its
own: 3,000 models took 6,001 statements, 2.7 s and 1.2 MB."""

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
from tunewatch.store import Store

#: Besides the example's ``credit`` (v1 champion, v2 shadow): names whose code point
#: order differs from an en-US collation's ("Zeta" first, "ápice" last).
EXTRA = [f"m{i:02}" for i in range(28)] + ["Zeta", "ápice"]
NAMES = sorted([MODEL, *EXTRA])
TOTAL = len(NAMES)
MODELS_ROUTES = str(Path(api.__file__).parent / "_models.py")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest,
    trained: list[ExampleModel],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:
    """A daemon over each store backend holding ``NAMES``: ``credit`` serving its champion
    and shadow, each ``m..`` with ``i % 3`` retired versions, ``Zeta`` and ``ápice`` none."""
    data = tmp_path_factory.mktemp("models")
    with ExitStack() as stack:
        if request.param == "sqlite":
            store_url = f"sqlite:///{data}/tunewatch.db"
        else:
            request.getfixturevalue("pg_available")
            store_url = stack.enter_context(fresh_pg_schema())
        daemon, tokens = make_daemon(
            data / "daemon", trained, store_url=store_url, extra={"scheduler": {"enabled": False}}
        )
        try:
            for i, name in enumerate(EXTRA):
                daemon.store.ensure_model(name=name, task="binary", feature_names=["a", "b"])
                for j in range(i % 3 if name.startswith("m") else 0):
                    daemon.store.add_version(
                        model=name,
                        artefact_sha256="c" * 64,
                        hyperparameters={"C": float(j)},
                        size_bytes=1,
                        actor="t",
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
    r = _get(running, "/v1/models", **params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert list(body) == ["models", "next"]  # the existing key, and the cursor
    return body


def _one_by_one(store: Store) -> Callable[[str], dict[str, Any]]:
    """A model's answer as the routes built it, its row and line-up read on their own."""

    def answer(name: str) -> dict[str, Any]:
        row = store.get_model(name)
        lineup = store.version_lineup(name)
        return {
            "name": row.name,
            "task": row.task,
            "feature_names": list(row.feature_names),
            "regulated": row.regulated,
            "champion": lineup.champion,
            "challengers": list(lineup.challengers),
            "versions": lineup.total,
        }

    return answer


@contextmanager
def statements_listing(running: Running) -> Iterator[list[str]]:
    """The statements the store's engine runs inside the block from the ``list_models``
    route's call stack (not the daemon's line-up refresh, nor the token look-up), but for
    the ``BEGIN`` that opens each of its transactions on SQLite."""
    seen: list[str] = []
    lock = threading.Lock()

    def record(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, _many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("BEGIN"):
            return
        stack = traceback.extract_stack()
        if any(f.filename == MODELS_ROUTES and f.name == "list_models" for f in stack):
            with lock:
                seen.append(statement)

    engine = running.daemon.store.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_page_of_models_is_read_in_one_statement(served: Running) -> None:
    with statements_listing(served) as seen:
        every = _get(served, "/v1/models")
    assert every.status_code == 200, every.text
    assert len(seen) == 1, f"{len(seen)} statements for {TOTAL} models"
    assert len(every.json()["models"]) == TOTAL  # under the default 100: every model

    with statements_listing(served) as seen:
        body = _page(served, limit=3)
    assert len(body["models"]) == 3 and len(seen) == 1


def test_models_answer_as_before_ascending_by_name(served: Running) -> None:
    expected = _one_by_one(served.daemon.store)
    body = _page(served)
    assert body == {"models": [expected(name) for name in NAMES], "next": None}
    credit = next(m for m in body["models"] if m["name"] == MODEL)
    assert (credit["champion"], credit["challengers"], credit["versions"]) == (1, [2], 2)
    assert [m["versions"] for m in body["models"] if m["name"] in ("m01", "m02")] == [1, 2]

    one = _get(served, f"/v1/models/{MODEL}")
    assert one.status_code == 200 and one.json() == expected(MODEL)


def _walk(running: Running, limit: int | None) -> list[list[str]]:
    """The names on every page, following ``next`` from the first page."""
    pages: list[list[str]] = []
    params: dict[str, object] = {} if limit is None else {"limit": limit}
    while True:
        body = _page(running, **params)
        shown = [m["name"] for m in body["models"]]
        pages.append(shown)
        if body["next"] is None:
            return pages
        assert body["next"] == shown[-1]  # the last name shown
        params["after"] = body["next"]
        assert len(pages) <= TOTAL + 1  # a cursor that never ends fails rather than loops


def test_following_next_reads_every_model_exactly_once(served: Running) -> None:
    for limit in (None, 1, 7, TOTAL - 1, TOTAL, 10_000):
        pages = _walk(served, limit)
        assert [name for page in pages for name in page] == NAMES, limit
        size = 100 if limit is None else limit
        assert [len(p) for p in pages] == [
            min(size, TOTAL - start) for start in range(0, TOTAL, size)
        ], limit
    expected = _one_by_one(served.daemon.store)
    assert _page(served, limit=2, after="m26") == {
        "models": [expected("m27"), expected("ápice")],
        "next": None,
    }
    # a name no model has is a place in the order all the same
    assert [m["name"] for m in _page(served, limit=2, after="d")["models"]] == ["m00", "m01"]
    assert _page(served, after="ápice") == {"models": [], "next": None}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("limit", "0"),
        ("limit", "10001"),
        ("limit", "many"),
        ("after", ""),
        ("after", "x" * 201),
        ("after", "a\x00b"),
        ("after", "a\nb"),
    ],
    ids=[
        "limit-0",
        "limit-10001",
        "limit-text",
        "after-empty",
        "after-long",
        "after-nul",
        "after-newline",
    ],
)
def test_models_limit_and_after_out_of_range_are_a_400_naming_the_parameter(
    served: Running, name: str, value: str
) -> None:
    r = _get(served, "/v1/models", **{name: value})
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error", "code"}
    assert r.json()["code"] == "invalid_request" and name in r.json()["error"]
