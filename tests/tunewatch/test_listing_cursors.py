"""Listings are read back to their first row a page at a time: ``before_id`` on
``/v1/audit``, ``/v1/events`` and the evaluation listings, each answering ``next`` (the
``before_id`` of the next older page, ``null`` on the last), and ``--before-id`` on the
CLI's ``audit`` and evaluation listings, whose notice names the value to pass.

Only the newest 10,000 rows could be read: ``limit`` stopped there, no cursor existed,
and a ``chain_break.entry_id`` could name an audit entry no interface showed.

A telemetry evaluation measures every version that served in its window, stored under
the champion of the run: ``?version=`` (``--version``) finds it by the versions it
measured, and a challenger's telemetry read as none yet."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from tests.tunewatch.conftest import MODEL, Clock, Running, feed, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._cli import main
from tunewatch._example import ExampleModel, example_data
from tunewatch._record_rows import output_record
from tunewatch.store import Store
from tunewatch.store._schema import ZERO_HASH

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROWS = 30  # of each listing, walked 7 (and 10) at a time


@pytest.fixture
def served(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Running]:
    """A daemon over ``store_url`` (SQLite or PostgreSQL) serving the example models."""
    daemon, tokens = make_daemon(
        tmp_path / "daemon", trained, store_url=store_url, extra={"scheduler": {"enabled": False}}
    )
    try:
        with BackgroundServer(daemon.app) as server:
            yield Running(daemon=daemon, server=server, tokens=tokens)
    finally:
        daemon.close()


def _get(running: Running, path: str, **params: object) -> dict[str, Any]:
    r = httpx.get(f"{running.url}{path}", params=params, headers=running.auth("viewer"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _walk(
    page: Callable[[int | None], tuple[list[dict[str, Any]], int | None]],
) -> list[list[int]]:
    """The ids of every page, newest first, following ``next`` from the newest page until
    it is null; each ``next`` is the last id of its page."""
    pages: list[list[int]] = []
    cursor: int | None = None
    while True:
        rows, cursor = page(cursor)
        pages.append([row["id"] for row in rows])
        if cursor is None:
            return pages
        assert cursor == rows[-1]["id"]
        assert len(pages) <= ROWS * 2  # a cursor that never ends fails rather than loops


def _flat(pages: list[list[int]]) -> list[int]:
    return [i for p in pages for i in p]


def _sizes(pages: list[list[int]]) -> list[int]:
    return [len(p) for p in pages]


def _page_sizes(total: int, limit: int) -> list[int]:
    return [min(limit, total - start) for start in range(0, total, limit)]


def test_the_audit_log_is_read_back_to_its_first_entry_a_page_at_a_time(
    served: Running,
) -> None:
    store = served.daemon.store
    for i in range(ROWS):
        store.append_audit(actor="ops", action="note", target=f"{MODEL}/v1", details={"i": i})
    every = [e.id for e in store.audit_log(limit=10_000)]  # the registrations' too
    assert len(every) > ROWS

    def page(limit: int) -> Callable[[int | None], tuple[list[dict[str, Any]], int | None]]:
        def read(cursor: int | None) -> tuple[list[dict[str, Any]], int | None]:
            params: dict[str, object] = {"limit": limit}
            if cursor is not None:
                params["before_id"] = cursor
            body = _get(served, "/v1/audit", **params)
            assert body["chain_intact"] is None  # the existing keys, unchanged
            return body["entries"], body["next"]

        return read

    for limit in (7, len(every), len(every) - 1):
        pages = _walk(page(limit))
        assert _flat(pages) == every
        assert _sizes(pages) == _page_sizes(len(every), limit)

    first = _get(served, "/v1/audit", limit=1, before_id=every[-2])["entries"]
    assert [e["id"] for e in first] == [every[-1]]
    assert first[0]["prev_hash"] == ZERO_HASH  # the chain's first entry
    assert _get(served, "/v1/audit", before_id=every[-1]) == {
        "entries": [],
        "chain_intact": None,
        "chain_break": None,
        "next": None,
    }
    verified = _get(served, "/v1/audit", limit=3, before_id=every[5], verify="true")
    assert [e["id"] for e in verified["entries"]] == every[6:9]
    assert verified["chain_intact"] is True and verified["next"] == every[8]


def test_events_are_read_back_to_the_first_a_page_at_a_time(served: Running) -> None:
    store = served.daemon.store
    for i in range(ROWS):
        store.add_event(model=MODEL, type="note", payload={"i": i})
        store.add_event(model="other", type="note", payload={"i": i})
        store.add_event(model=MODEL, type="other_note", payload={"i": i})
    every = [e.id for e in store.list_events(limit=10_000)]
    ours = [e.id for e in store.list_events(model=MODEL, type="note", limit=10_000)]
    assert len(ours) == ROWS and ours == sorted(ours, reverse=True)

    def page(
        limit: int, **filters: str
    ) -> Callable[[int | None], tuple[list[dict[str, Any]], int | None]]:
        def read(cursor: int | None) -> tuple[list[dict[str, Any]], int | None]:
            params: dict[str, object] = {"limit": limit, **filters}
            if cursor is not None:
                params["before_id"] = cursor
            body = _get(served, "/v1/events", **params)
            return body["events"], body["next"]

        return read

    for limit in (7, 10):
        pages = _walk(page(limit, model=MODEL, type="note"))
        assert _flat(pages) == ours
        assert _sizes(pages) == _page_sizes(ROWS, limit)
    assert _flat(_walk(page(7))) == every


def _add_evaluations(store: Store) -> list[int]:
    """``ROWS`` drift evaluations, newest window first (their ids run against the
    listing's order) and two to a window (ties, ordered by id), with decay evaluations
    between them; the drift ids in the listing's order."""
    added = []
    for i in range(ROWS):
        end = T0 - timedelta(hours=i // 2)
        for kind in ("drift", "decay"):
            row = store.add_evaluation(
                model=MODEL,
                version=1,
                kind=kind,
                status="ok",
                window_start=None,
                window_end=end,
                payload={"alarm": False, "i": i},
            )
            if kind == "drift":
                added.append((row.window_end, row.id))
    return [i for _, i in sorted(added, reverse=True)]


def test_an_evaluation_kind_is_read_back_to_its_first_a_page_at_a_time(
    served: Running,
) -> None:
    drift = _add_evaluations(served.daemon.store)
    every = [e.id for e in served.daemon.store.list_evaluations(MODEL, limit=10_000)]
    assert len(every) == 2 * ROWS

    def page(
        path: str, limit: int, **filters: str
    ) -> Callable[[int | None], tuple[list[dict[str, Any]], int | None]]:
        def read(cursor: int | None) -> tuple[list[dict[str, Any]], int | None]:
            params: dict[str, object] = {"limit": limit, **filters}
            if cursor is not None:
                params["before_id"] = cursor
            body = _get(served, path, **params)
            rows = body.get("history", body.get("evaluations"))
            assert isinstance(rows, list)
            if "latest" in body:  # an older page's latest is still the newest
                assert body["latest"]["id"] == drift[0]
            return rows, body["next"]

        return read

    for limit in (7, 10):
        pages = _walk(page(f"/v1/models/{MODEL}/drift", limit))
        assert _flat(pages) == drift
        assert _sizes(pages) == _page_sizes(ROWS, limit)
        kind = _walk(page(f"/v1/models/{MODEL}/evaluations", limit, kind="drift"))
        assert _flat(kind) == drift
    assert _flat(_walk(page(f"/v1/models/{MODEL}/evaluations", 7))) == every
    assert _flat(_walk(page(f"/v1/models/{MODEL}/drift", 7, version="1"))) == drift


def test_an_evaluation_cursor_not_of_the_model_is_404(served: Running) -> None:
    _add_evaluations(served.daemon.store)
    r = httpx.get(
        f"{served.url}/v1/models/{MODEL}/drift",
        params={"before_id": 999_999},
        headers=served.auth("viewer"),
    )
    assert r.status_code == 404, r.text
    assert r.json()["code"] == "evaluation_not_found"
    assert "999999" in r.json()["error"]


# -- the CLI ---------------------------------------------------------------------------


@pytest.fixture
def backend(tmp_path: Path, store_url: str) -> tuple[Path, str]:
    """A config whose store is ``store_url`` (SQLite or PostgreSQL), migrated, with the
    model registered (a version of it stored)."""
    path = tmp_path / "backend.yaml"
    path.write_text(
        yaml.safe_dump({"data_dir": str(tmp_path / "data"), "store": {"url": store_url}})
    )
    assert main(["--config", str(path), "migrate"]) == 0
    with Store.open(store_url) as store:
        store.ensure_model(name=MODEL, task="binary", feature_names=["x0"])
        store.add_version(
            model=MODEL,
            artefact_sha256=b"v1".hex().ljust(64, "0"),
            hyperparameters={},
            size_bytes=1,
            actor="bob",
        )
    return path, store_url


def _notices(err: str) -> list[str]:
    """The command's own lines on stderr (not the log's)."""
    return [line for line in err.splitlines() if line.startswith("tunewatch:")]


def _cli_walk(
    config: Path, capsys: pytest.CaptureFixture[str], *command: str
) -> tuple[list[list[str]], list[str]]:
    """Run ``command`` and again with each ``--before-id`` its notice names, until none:
    the lines printed per page and the notices."""
    pages: list[list[str]] = []
    notices: list[str] = []
    cursor: list[str] = []
    while True:
        assert main(["--config", str(config), *command, *cursor]) == 0
        captured = capsys.readouterr()
        pages.append(captured.out.splitlines())
        found = _notices(captured.err)
        if not found:
            return pages, notices
        [notice] = found
        notices.append(notice)
        [value] = re.findall(r"--before-id (\d+)", notice)
        cursor = ["--before-id", value]
        assert len(pages) <= ROWS * 2


def test_cli_audit_notice_names_the_cursor_and_it_reads_on_to_the_first_entry(
    backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, url = backend
    with Store.open(url) as store:
        for i in range(ROWS):
            store.append_audit(actor="ops", action="note", target=f"{MODEL}/v1", details={"i": i})
        every = [e.id for e in store.audit_log(limit=10_000)]
    capsys.readouterr()

    pages, notices = _cli_walk(config, capsys, "audit", "--limit", "7")
    shown = []
    for lines in pages:
        assert lines[-1] == "audit chain intact"
        assert lines[-2].startswith(f"audit head: entry {every[0]}, hash ")
        ids = [int(line.split()[0]) for line in lines[:-2]]
        assert ids == sorted(ids)  # oldest of the page first, as the chain runs
        shown.extend(reversed(ids))
    assert shown == every
    assert len(notices) == len(pages) - 1
    assert notices[0] == (
        f"tunewatch: 7 newest audit entries shown; older ones exist: --before-id "
        f"{every[6]} lists them"
    )
    assert notices[1].startswith(f"tunewatch: 7 audit entries before entry {every[6]} shown;")


def test_cli_evaluation_notice_names_the_cursor_and_it_reads_on_to_the_first(
    backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, url = backend
    with Store.open(url) as store:
        drift = _add_evaluations(store)
    capsys.readouterr()

    pages, notices = _cli_walk(config, capsys, "drift", MODEL, "--limit", "7")
    assert [len(lines) for lines in pages] == _page_sizes(ROWS, 7)
    shown = [line for lines in pages for line in lines]
    # the windows, newest first, two to a window: every evaluation once
    ends = [T0 - timedelta(hours=i // 2) for i in range(ROWS)]
    assert [line.split()[1] for line in shown] == [f"{e:%H:%M:%S}Z" for e in ends]
    assert notices[0] == (
        f"tunewatch: 7 newest drift evaluations of {MODEL} shown; older ones exist: "
        f"--before-id {drift[6]} lists them"
    )
    assert notices[1].startswith(
        f"tunewatch: 7 drift evaluations of {MODEL} listed after evaluation {drift[6]} shown;"
    )

    assert main(["--config", str(config), "drift", MODEL, "--before-id", "999999"]) == 2
    assert "999999" in capsys.readouterr().err


# -- telemetry by version ------------------------------------------------------------


def _serve_both(d: Any, clock: Clock, n: int) -> None:
    """``n`` requests the champion (version 1) answered and the challenger (version 2)
    scored in shadow, recorded as the daemon records them."""
    feed(d, clock, 0, n, shift=0.0, seed=5, labels=False)
    x, _ = example_data(n, seed=5)
    shadow = [
        output_record(
            MODEL,
            f"r{i}",
            2,
            "challenger",
            np.array([[0.4, 0.6]]),
            latency_s=2e-4,
            created_at=clock.now - timedelta(seconds=n - 1 - i),
        )
        for i in range(n)
    ]
    assert len(x) == n
    d.store.write_records([], shadow)


def test_telemetry_of_a_challenger_is_found_by_its_version(
    served: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str], store_url: str
) -> None:
    d = served.daemon
    clock = Clock()
    d.evaluator.clock = clock
    _serve_both(d, clock, 40)
    newest = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["telemetry"]
    assert newest.version == 1  # the champion's row
    assert set(newest.payload["versions"]) == {"1", "2"}
    assert newest.payload["versions"]["2"]["n"] == 40

    for version in (1, 2):
        body = _get(served, f"/v1/models/{MODEL}/telemetry", version=version)
        assert body["latest"] is not None, version
        assert body["latest"]["id"] == newest.id
        assert body["latest"]["payload"] == newest.payload  # all it measured
        assert [e["id"] for e in body["history"]] == [newest.id]
    body = _get(served, f"/v1/models/{MODEL}/telemetry", version=3)
    assert body["latest"] is None and body["history"] == [] and body["next"] is None
    listed = _get(served, f"/v1/models/{MODEL}/evaluations", version=2)["evaluations"]
    assert [e["kind"] for e in listed] == ["telemetry"]  # the others are the champion's
    assert _get(served, f"/v1/models/{MODEL}/drift", version=2)["latest"] is None

    config = tmp_path / "cli.yaml"
    raw = {"data_dir": str(d.config.data_dir), "store": {"url": store_url}}
    config.write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    assert main(["--config", str(config), "telemetry", MODEL, "--version", "2"]) == 0
    captured = capsys.readouterr()
    [line] = captured.out.splitlines()
    assert "no telemetry evaluations" not in line
    assert "'2': {" in line and "'1': {" in line
    assert _notices(captured.err) == []
