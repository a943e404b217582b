"""The telemetry kind reads each version's latencies per role, and its p99 gauge outlives a
promotion.

A version promoted after it shadowed answered in both roles: timed in the deprioritised
shadow worker as a challenger, on the request path as the champion. Its telemetry (the
API, the dashboard, ``tunewatch_version_latency_p99_seconds``) mixed the two: 800
requests, a promotion, 800 more read n=1198 p99 0.449 ms where the store held 800
champion latencies at p99 0.324 ms and 398 shadow ones at p99 1.253 ms.

Telemetry is per version, not per champion: a promotion dropped every version's p99 gauge
(the stored verdict was of the replaced champion) until the next evaluation, up to
``evaluation.interval_s`` later, and so did a new scheduler leader's takeover after one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor import ServingMetrics
from tests.tunewatch.conftest import MODEL, Clock, make_daemon
from tunewatch._daemon import Daemon
from tunewatch._evaluation_events import export_stored
from tunewatch._evaluation_telemetry import telemetry_verdict
from tunewatch._example import ExampleModel
from tunewatch._span import ts
from tunewatch.store import OutputRecord, RequestRecord

#: Requests each phase of a test writes.
REQUESTS = 40


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Daemon]:
    """v1 champion, v2 shadow, on each backend."""
    d, _ = make_daemon(tmp_path, trained, store_url=store_url)
    try:
        yield d
    finally:
        d.close()


def answered(d: Daemon, clock: Clock, prefix: str, answers: dict[int, tuple[str, float]]) -> None:
    """``REQUESTS`` requests, ``clock`` advancing 1 s each, each answered by the versions
    ``answers`` names, in the role and with the latency (seconds) it gives."""
    requests, outputs = [], []
    for i in range(REQUESTS):
        clock.now += timedelta(seconds=1)
        requests.append(
            RequestRecord(
                model=MODEL,
                request_id=f"{prefix}{i}",
                received_at=clock.now,
                source="infer",
                n_rows=1,
                n_cols=8,
                inputs=np.zeros((1, 8), np.float32).tobytes(),
            )
        )
        outputs.extend(
            OutputRecord(
                model=MODEL,
                request_id=f"{prefix}{i}",
                version=version,
                role=role,  # type: ignore[arg-type]
                latency_s=latency,
                n_rows=1,
                n_cols=2,
                values=np.asarray([[0.4, 0.6]], np.float32).tobytes(),
                created_at=clock.now,
            )
            for version, (role, latency) in answers.items()
        )
    d.store.write_records(requests, outputs)


def telemetry(d: Daemon, metrics: ServingMetrics) -> tuple[str, dict[str, Any]]:
    window = d.store.window(MODEL, n_features=8, with_features=False)
    return telemetry_verdict(d.store, metrics, d.store.get_model(MODEL), window)


def stored(d: Daemon, verdict: tuple[str, dict[str, Any]], *, version: int) -> None:
    """``verdict`` stored as the telemetry of a run whose champion was ``version``."""
    status, payload = verdict
    window = d.store.window(MODEL, n_features=8, with_features=False)
    d.store.add_evaluation(
        model=MODEL,
        version=version,
        kind="telemetry",
        status=status,
        window_start=None,
        window_end=ts(window.received_at.max()),
        payload=payload,
    )


def p99_series(metrics: ServingMetrics) -> dict[tuple[str, str], float]:
    """``MODEL``'s p99 gauge: (version, role) -> seconds."""
    return {
        (s.labels["version"], s.labels.get("role", "")): s.value
        for family in metrics.latency_p99.collect()
        for s in family.samples
        if s.labels["model"] == MODEL
    }


def exported_after_takeover(d: Daemon) -> dict[tuple[str, str], float]:
    """The p99 series a new leader exports from the store, before any evaluation."""
    metrics = ServingMetrics()
    model = d.store.get_model(MODEL)
    cfg = d.config.model_or_default(MODEL, model.task)
    export_stored(d.store, metrics, model, cfg, now=Clock()())
    return p99_series(metrics)


def test_a_shadow_promoted_reads_as_champion_on_its_champion_role_latencies_only(
    daemon: Daemon,
) -> None:
    """v2 shadowed slowly (9 ms a run), then answered as the champion (2 ms): its figures
    are its champion runs', its shadow runs' beside them, each role its own gauge series."""
    clock = Clock()
    answered(daemon, clock, "a", {1: ("champion", 0.001), 2: ("challenger", 0.009)})
    daemon.store.promote(MODEL, 2, actor="t", reason="promoted")
    answered(daemon, clock, "b", {2: ("champion", 0.002)})
    metrics = ServingMetrics()
    status, payload = telemetry(daemon, metrics)
    assert status == "ok"
    v2 = payload["versions"]["2"]
    assert v2["n"] == REQUESTS  # its champion-role count, not 2 * REQUESTS
    assert v2["role"] == "champion"
    assert v2["p99"] == pytest.approx(0.002)
    assert v2["roles"]["champion"] == {
        "p50": pytest.approx(0.002),
        "p90": pytest.approx(0.002),
        "p99": pytest.approx(0.002),
        "n": REQUESTS,
    }
    assert v2["roles"]["challenger"]["n"] == REQUESTS
    assert v2["roles"]["challenger"]["p99"] == pytest.approx(0.009)
    # v1, retired by the promotion, answered as the champion only
    assert payload["versions"]["1"]["role"] == "champion"
    assert set(payload["versions"]["1"]["roles"]) == {"champion"}
    assert p99_series(metrics) == {
        ("1", "champion"): pytest.approx(0.001),
        ("2", "champion"): pytest.approx(0.002),
        ("2", "challenger"): pytest.approx(0.009),
    }


def test_a_shadow_reads_as_challenger_and_the_champion_as_champion(daemon: Daemon) -> None:
    """No promotion in the window: one role each, the figures those of that role."""
    clock = Clock()
    answered(daemon, clock, "a", {1: ("champion", 0.001), 2: ("challenger", 0.003)})
    metrics = ServingMetrics()
    _, payload = telemetry(daemon, metrics)
    assert payload["versions"]["1"]["role"] == "champion"
    assert payload["versions"]["2"]["role"] == "challenger"
    assert payload["versions"]["2"]["n"] == REQUESTS
    assert set(payload["versions"]["2"]["roles"]) == {"challenger"}
    assert p99_series(metrics) == {
        ("1", "champion"): pytest.approx(0.001),
        ("2", "challenger"): pytest.approx(0.003),
    }


def test_a_new_leader_exports_the_p99_series_the_evaluation_exported(daemon: Daemon) -> None:
    clock = Clock()
    answered(daemon, clock, "a", {1: ("champion", 0.001), 2: ("challenger", 0.003)})
    metrics = ServingMetrics()
    verdict = telemetry(daemon, metrics)
    stored(daemon, verdict, version=1)
    assert exported_after_takeover(daemon) == p99_series(metrics)


def test_export_stored_after_a_promotion_keeps_the_p99_of_the_versions_still_served(
    daemon: Daemon,
) -> None:
    """v1 champion, v2 and v3 shadows, evaluated; v2 promoted (v1 retired). The stored
    verdict is of v1's run, but v2's and v3's figures are their own: they stay exported
    (as measured, in the challenger role), v1's, no longer served, go."""
    v1 = daemon.store.get_version(MODEL, 1)
    v3 = daemon.store.add_version(
        model=MODEL,
        artefact_sha256=v1.artefact_sha256,
        hyperparameters=v1.hyperparameters,
        size_bytes=v1.size_bytes,
        actor="t",
        details={},
        stage="shadow",
    ).version
    clock = Clock()
    answers = {1: ("champion", 0.001), 2: ("challenger", 0.002), v3: ("challenger", 0.003)}
    answered(daemon, clock, "a", answers)
    stored(daemon, telemetry(daemon, ServingMetrics()), version=1)
    daemon.store.promote(MODEL, 2, actor="t", reason="promoted")
    after = exported_after_takeover(daemon)
    assert {version for version, _ in after} == {"2", str(v3)}
    assert after == {
        ("2", "challenger"): pytest.approx(0.002),
        (str(v3), "challenger"): pytest.approx(0.003),
    }


def test_a_verdict_stored_before_roles_were_read_exports_no_p99(daemon: Daemon) -> None:
    """A verdict of the version's roles mixed has no role to label its figure with: none
    is exported until the next evaluation measures them by role."""
    mixed = {"p50": 0.001, "p90": 0.001, "p99": 0.001, "n": 5, "memory_bytes": None}
    hp = daemon.store.get_version(MODEL, 1).hyperparameter_set_id
    clock = Clock()
    answered(daemon, clock, "a", {1: ("champion", 0.001)})
    payload = {"alarm": False, "versions": {"1": {**mixed, "hyperparameter_set": hp}}}
    stored(daemon, ("ok", payload), version=1)
    assert exported_after_takeover(daemon) == {}
