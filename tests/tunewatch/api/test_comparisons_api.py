"""Comparison routes over HTTP: run the loop (operators only), the latest look per
challenger with its correction and guardrails, and the evidence over time."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.conftest import Running
from tests.tunewatch.test_comparison_loop import (
    MODEL,
    copy_daemon,
    feed_better,
    oracle,
    template,  # noqa: F401  (module fixture)
    traffic,
    write,
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
        daemon.store.add_token(
            name=f"api-{role}", role=role, token_hash=hash_token(tokens[role]), actor="test"
        )
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


def test_a_parity_error_that_is_not_a_finite_number_is_refused_at_registration(
    served: Running, trained: list[ExampleModel]
) -> None:
    body = {
        "onnx_base64": base64.b64encode(trained[1].onnx).decode(),
        "task": "binary",
        "feature_names": list(trained[1].metadata.feature_names),
    }
    url = f"{served.url}/v1/models/{MODEL}/versions"
    for bad in ("n/a", -0.5, True, None):
        r = httpx.post(
            url,
            json={**body, "details": {"parity_error": bad}},
            headers=served.auth("operator"),
            timeout=60,
        )
        assert r.status_code == 400 and r.json()["code"] == "invalid_request", (bad, r.text)
        assert "`details.parity_error` must be a finite number >= 0" in r.json()["error"]
    ok = httpx.post(
        url,
        json={**body, "details": {"parity_error": 2e-6}},
        headers=served.auth("operator"),
        timeout=60,
    )
    assert ok.status_code == 201 and ok.json()["details"]["parity_error"] == 2e-6, ok.text


def test_a_stored_parity_error_that_is_not_a_number_fails_the_guardrail_not_the_route(
    served: Running, trained: list[ExampleModel]
) -> None:
    store = served.daemon.store
    v2 = store.get_version(MODEL, 2)
    store.set_stage(MODEL, 2, "retired", actor="test", reason="replaced by v3")
    store.add_version(  # as registered before the value was checked
        model=MODEL,
        artefact_sha256=v2.artefact_sha256,
        hyperparameters=v2.hyperparameters,
        size_bytes=v2.size_bytes,
        load_memory_bytes=v2.load_memory_bytes,
        details={"parity_error": "n/a"},
        actor="test",
    )
    t = traffic(trained, 200, seed=7)
    write(
        store,
        ids=range(200),
        x=t.x,
        y=t.y,
        answers={1: t.logistic, 3: oracle(t.x)},
    )
    url = f"{served.url}/v1/models/{MODEL}"
    ran = httpx.post(f"{url}/compare", headers=served.auth("operator"), timeout=30)
    assert ran.status_code == 200, ran.text
    r = httpx.get(f"{url}/comparisons", headers=served.auth("viewer"), timeout=30)
    assert r.status_code == 200, r.text
    [item] = r.json()["comparisons"]
    assert item["test"]["challenger_version"] == 3
    assert item["guardrails"]["passed"] is False
    assert (
        "parity: v3 records `parity_error` = 'n/a', not a finite number >= 0"
        in item["guardrails"]["violations"]
    )
