"""Comparison routes over HTTP: run the loop (operators only), the latest look per
challenger with its correction and guardrails, and the evidence over time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.conftest import Running
from tests.tunewatch.test_comparison_loop import (
    MODEL,
    copy_daemon,
    feed_better,
    template,  # noqa: F401  (module fixture)
    traffic,
)
from tunewatch._auth import ROLES, hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel
from tunewatch.api._comparisons import router


@pytest.fixture
def served(template: Path, tmp_path: Path) -> Iterator[Running]:  # noqa: F811
    daemon = copy_daemon(template, tmp_path / "data")
    tokens = {}
    for role in ROLES:
        tokens[role] = new_token()
        daemon.store.add_token(name=f"api-{role}", role=role, token_hash=hash_token(tokens[role]))
    daemon.app.app.include_router(router)
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


def test_compare_now_then_read_latest_and_history(
    served: Running, trained: list[ExampleModel]
) -> None:
    t = traffic(trained, 400, seed=7)
    url = f"{served.url}/v1/models/{MODEL}"
    feed_better(served.daemon, t, 0, 200)
    denied = httpx.post(f"{url}/compare", headers=served.auth("viewer"), timeout=30)
    assert denied.status_code == 403
    r = httpx.post(f"{url}/compare", headers=served.auth("operator"), timeout=30)
    assert r.status_code == 200, r.text
    [result] = r.json()["results"]
    assert result["fed"] == 200 and result["look"]["n"] == 200
    feed_better(served.daemon, t, 200, 400)
    httpx.post(f"{url}/compare", headers=served.auth("operator"), timeout=30)

    r = httpx.get(f"{url}/comparisons", headers=served.auth("viewer"), timeout=30)
    assert r.status_code == 200, r.text
    [item] = r.json()["comparisons"]
    assert item["test"]["challenger_version"] == 2 and item["correction"] == "holm"
    assert item["latest"]["n"] == 400 and item["latest"]["family_size"] == 1
    assert set(item["guardrails"]) == {"passed", "violations"}

    r = httpx.get(f"{url}/comparisons/2/history", headers=served.auth("viewer"), timeout=30)
    assert r.status_code == 200
    assert [h["n"] for h in r.json()["history"]] == [200, 400]
    missing = httpx.get(f"{url}/comparisons/9/history", headers=served.auth("viewer"), timeout=30)
    assert missing.status_code == 404
