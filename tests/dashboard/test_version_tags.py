"""Version tags on the dashboard: the overview's champion and challengers and the tuning
page's versions carry their tags in the JSON and show them on the page as ``key=value``,
escaped, each value isolated from the text around it; a page reads them in one statement
(the overview: one per model), never one per version."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from html import escape
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from tests.dashboard.test_long_histories import Served, served  # noqa: F401
from tunewatch import dashboard

MODEL = "tagged"
DASHBOARD = str(Path(dashboard.__file__).parent)
SCRIPT = '<script>alert("tag")</script>'
RTL = "שלום עולם"  # printable, right to left
CHAMPION_TAGS = {"ticket": "RISK-123", "validation": "passed"}
CHALLENGER_TAGS = {"note": SCRIPT, "reviewer": RTL}


@pytest.fixture(scope="module")
def tagged(served: Served) -> Served:  # noqa: F811
    """Model ``tagged``: v1 retired and untagged, v2 the champion, v3 the challenger,
    v4 retired and untagged."""
    store = served.store
    store.ensure_model(name=MODEL, task="binary", feature_names=["a"])
    for stage in ("retired", "champion", "shadow", "retired"):
        store.add_version(
            model=MODEL,
            artefact_sha256="t" * 64,
            hyperparameters={"C": 1.0},
            size_bytes=1,
            actor="t",
            details={"best_value": 0.25},
            stage=stage,
        )
    for version, tags in ((2, CHAMPION_TAGS), (3, CHALLENGER_TAGS)):
        for key, value in tags.items():
            store.set_version_tag(MODEL, version, key, value, actor="t")
    return served


@pytest.fixture(scope="module")
def browser(tagged: Served) -> Iterator[httpx.Client]:
    """A browser signed in through the login form, as a viewer."""
    token = tagged.headers["Authorization"].removeprefix("Bearer ")
    with httpx.Client(base_url=tagged.url, timeout=60) as client:
        signed_in = client.post("/dashboard/login", data={"token": token}, follow_redirects=False)
        assert signed_in.status_code == 303, signed_in.text
        yield client


@contextmanager
def tag_reads(running: Served) -> Iterator[list[str]]:
    """The statements reading ``version_tags`` that the dashboard's code runs in the block."""
    seen: list[str] = []
    lock = threading.Lock()

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        reads = statement.lstrip().upper().startswith("SELECT") and "version_tags" in statement
        if reads and any(DASHBOARD in f.filename for f in traceback.extract_stack()):
            with lock:
                seen.append(statement)

    event.listen(running.store.engine, "after_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(running.store.engine, "after_cursor_execute", record)


def _tag_html(tags: dict[str, str]) -> list[str]:
    return [f"{escape(k)}=<bdi>{escape(v)}</bdi>" for k, v in tags.items()]


def test_overview_json_carries_the_champions_and_challengers_tags(tagged: Served) -> None:
    with tag_reads(tagged) as reads:
        body = tagged.get("/v1/dashboard/overview").json()
    model = next(m for m in body["models"] if m["name"] == MODEL)
    assert model["champion"]["version"] == 2
    assert model["champion"]["tags"] == CHAMPION_TAGS
    assert [(c["version"], c["tags"]) for c in model["challengers"]] == [(3, CHALLENGER_TAGS)]
    assert 1 <= len(reads) <= len(body["models"])  # one read per model, not per version


def test_tuning_json_carries_every_listed_versions_tags_in_one_read(tagged: Served) -> None:
    with tag_reads(tagged) as reads:
        body = tagged.get(f"/v1/dashboard/models/{MODEL}/tuning").json()
    assert [(v["version"], v["tags"]) for v in body["versions"]] == [
        (4, {}),
        (3, CHALLENGER_TAGS),
        (2, CHAMPION_TAGS),
        (1, {}),
    ]
    assert len(reads) == 1


@pytest.mark.parametrize("path", ["/dashboard/", f"/dashboard/models/{MODEL}/tuning"])
def test_page_shows_tags_as_key_value_escaped_and_isolated(
    browser: httpx.Client, path: str
) -> None:
    """A value holding ``<script>`` is text, and a right-to-left value sits in its own
    ``<bdi>``, so it cannot reorder its key or the next tag."""
    page = browser.get(path)
    assert page.status_code == 200, page.text
    for shown in _tag_html(CHAMPION_TAGS) + _tag_html(CHALLENGER_TAGS):
        assert shown in page.text
    assert "note=<bdi>&lt;script&gt;alert(&quot;tag&quot;)&lt;/script&gt;</bdi>" in page.text
    assert SCRIPT not in page.text and "<script" not in page.text
