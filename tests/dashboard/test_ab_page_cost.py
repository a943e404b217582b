"""The A/B page checks the guardrails of the open tests it shows, not of every test the
current champion ever had: each check reads up to ``latency_samples`` latencies of two
versions, and a champion that saw 20 challengers come and go cost 20 such reads a view,
even at ``?limit=0``. A decided test shows the verdict it recorded when it was acted on."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import update

from tests.dashboard.scenario import Served, serve, session_cookie
from tunewatch.store import OutputRecord, RequestRecord
from tunewatch.store._comparisons import ComparisonStore, LookValues
from tunewatch.store._schema import model_versions

MODEL = "fraud"
SLOW = 3  # won but is too slow: its promotion was refused
OPEN = 5  # still being compared
FAILED = 6  # won within the guardrails; its promotion failed (no artefact)


def _version(served: Served, stage: str) -> int:
    return served.daemon.store.add_version(
        model=MODEL,
        artefact_sha256="0" * 64,
        hyperparameters={"C": 1.0},
        size_bytes=1,
        actor="t",
        details={"parity_error": 0.0},
        load_memory_bytes=2**20,
        stage=stage,
    ).version


def _decided(served: Served, champion: int, challenger: int, decision: str) -> None:
    comparisons = ComparisonStore(served.daemon.store)
    test, _ = comparisons.get_or_create_test(
        model=MODEL,
        kind="paired",
        champion_version=champion,
        challenger_version=challenger,
        correction=None,
        state={},
    )
    better = decision == "challenger_better"
    comparisons.record_look(
        test,
        consumed=[],
        look=LookValues(
            method="confidence_sequence",
            n=100,
            estimate=-0.1 if better else 0.1,
            ci_low=-0.2 if better else 0.05,
            ci_high=-0.05 if better else 0.2,
            p_value=0.01,
            adjusted_p_value=0.01,
            decision=decision,
            fixed_t_p=0.01,
        ),
        state={},
        status="decided",
    )


@dataclass
class Scenario:
    served: Served
    reads: list[tuple[int, ...]]


@pytest.fixture(scope="module")
def ab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """A champion (v1) and five shadow challengers with recorded latencies: v2 and v4
    lost, v3 won but is ten times slower (its promotion refused by the guardrails when
    the comparison run acted on it), v6 won within the guardrails but its promotion failed
    (its artefact is missing; the guardrails it passed are in its ``challenger_better``
    event); v5's test is open."""
    with serve(Path(tmp_path_factory.mktemp("ab-cost"))) as served:
        store = served.daemon.store
        store.ensure_model(name=MODEL, task="binary", feature_names=["a"])
        champion = _version(served, "champion")
        challengers = [_version(served, "shadow") for _ in range(5)]
        start = datetime.now(UTC) - timedelta(hours=2)
        with store.engine.begin() as conn:
            conn.execute(
                update(model_versions)
                .where(model_versions.c.model == MODEL)
                .values(created_at=start, stage_changed_at=start)
            )
        inputs = np.zeros((1, 1), np.float32).tobytes()
        value = np.zeros((1, 2), np.float32).tobytes()
        reqs, outs = [], []
        for i in range(200):
            at = start + timedelta(seconds=10 * i + 1)
            reqs.append(RequestRecord(MODEL, f"r{i}", at, "infer", 1, 1, inputs))
            for v in (champion, *challengers):
                role = "champion" if v == champion else "challenger"
                latency = 0.01 if v == SLOW else 0.001
                outs.append(OutputRecord(MODEL, f"r{i}", v, role, latency, 1, 2, value, at))
        store.write_records(reqs, outs)
        _decided(served, champion, 2, "challenger_worse")
        _decided(served, champion, SLOW, "challenger_better")
        _decided(served, champion, 4, "challenger_worse")
        _decided(served, champion, FAILED, "challenger_better")
        served.daemon.comparisons.run(MODEL)  # acts on the decided tests, opens v5's

        reads: list[tuple[int, ...]] = []
        real = store.latencies

        def counting(*args: Any, **kwargs: Any) -> dict[int, np.ndarray]:
            reads.append(tuple(kwargs.get("versions", ())))
            return real(*args, **kwargs)

        store.latencies = counting  # type: ignore[method-assign]
        try:
            yield Scenario(served, reads)
        finally:
            del store.latencies


def _get(s: Scenario, limit: int) -> dict[str, Any]:
    s.reads.clear()
    r = httpx.get(
        f"{s.served.url}/v1/dashboard/models/{MODEL}/ab",
        params={"limit": str(limit)},
        headers=s.served.auth("viewer"),
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_the_scenario_refused_the_slow_winner_on_its_guardrails(ab: Scenario) -> None:
    by_challenger = {
        t.challenger_version: t
        for t in ComparisonStore(ab.served.daemon.store).list_tests(MODEL, champion_version=1)
    }
    outcomes = {v: (t.outcome or {}).get("action") for v, t in by_challenger.items()}
    assert outcomes == {
        2: "notified",
        SLOW: "refused",
        4: "notified",
        OPEN: None,
        FAILED: "promotion_failed",
    }
    assert by_challenger[OPEN].status == "open"


def test_ab_json_at_limit_zero_checks_only_the_open_test_it_shows(ab: Scenario) -> None:
    body = _get(ab, 0)
    assert [t["challenger_version"] for t in body["tests"]] == [OPEN]
    assert body["tests_total"] == 5
    assert ab.reads == [(1, OPEN)]
    [shown] = body["tests"]
    assert shown["current"] is True
    assert shown["guardrails"] == {"passed": True, "violations": []}


def test_ab_json_shows_decided_tests_with_the_verdict_they_recorded(ab: Scenario) -> None:
    body = _get(ab, 20)
    assert ab.reads == [(1, OPEN)]  # the decided tests' latencies are not read again
    guardrails = {t["challenger_version"]: t["guardrails"] for t in body["tests"]}
    assert set(guardrails) == {2, SLOW, 4, OPEN, FAILED}
    assert guardrails[OPEN] == {"passed": True, "violations": []}
    assert guardrails[FAILED] == {"passed": True, "violations": []}
    refused = guardrails[SLOW]
    assert refused is not None and refused["passed"] is False
    assert any("latency" in v for v in refused["violations"]), refused
    # a lost test never had its guardrails checked: nothing was recorded, nothing shown
    assert guardrails[2] is None and guardrails[4] is None
    assert all(t["current"] for t in body["tests"])


def test_ab_page_at_limit_zero_checks_only_the_open_test_it_shows(ab: Scenario) -> None:
    ab.reads.clear()
    r = httpx.get(
        f"{ab.served.url}/dashboard/models/{MODEL}/ab",
        params={"limit": "0"},
        cookies=session_cookie(ab.served.url, ab.served.tokens["viewer"]),
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert 'data-challenger="5"' in r.text and 'data-challenger="3"' not in r.text
    assert ab.reads == [(1, OPEN)]


def test_the_comparisons_api_shows_decided_tests_with_the_verdict_they_recorded(
    ab: Scenario,
) -> None:
    """The API and `tunewatch comparisons` read the runner's summary too: once decided
    tests were no longer checked again, they answered `guardrails: null` for all of them,
    the verdict a person deciding a notified or pending promotion reads."""
    ab.reads.clear()
    r = httpx.get(
        f"{ab.served.url}/v1/models/{MODEL}/comparisons",
        headers={"Authorization": f"Bearer {ab.served.tokens['viewer']}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert ab.reads == [(1, OPEN)]
    comparisons = r.json()["comparisons"]
    guardrails = {c["test"]["challenger_version"]: c["guardrails"] for c in comparisons}
    assert guardrails[FAILED] == {"passed": True, "violations": []}
    assert guardrails[SLOW] is not None and guardrails[SLOW]["passed"] is False
    assert guardrails[2] is None and guardrails[4] is None
