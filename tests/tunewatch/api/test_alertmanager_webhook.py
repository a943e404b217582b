"""The Alertmanager webhook under at-least-once delivery: jobs created == distinct episodes."""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel

FIRING_AT = "2026-11-28T10:00:00Z"
NEVER = "0001-01-01T00:00:00Z"


def alert(
    fp: str,
    *,
    status: str = "firing",
    starts: str = FIRING_AT,
    model: str = MODEL,
    name: str = "TunewatchDriftHigh",
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "model": model, "severity": "page"},
        "annotations": {"summary": "drift share above threshold"},
        "startsAt": starts,
        "endsAt": NEVER if status == "firing" else "2026-11-28T11:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fp,
    }


def payload(*alerts: dict[str, Any], truncated: int = 0) -> dict[str, Any]:
    return {
        "version": "4",
        "receiver": "ml\\.retune",
        "status": "firing",
        "alerts": list(alerts),
        "groupLabels": {"alertname": "TunewatchDriftHigh"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "groupKey": '{}:{alertname="TunewatchDriftHigh"}',
        "truncatedAlerts": truncated,
    }


@pytest.fixture
def hooked(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    triggers = [{"on": "alert_received", "do": "retune", "cooldown_minutes": 0}]
    daemon, tokens = make_daemon(
        tmp_path,
        trained,
        extra={
            "tuning": {"max_concurrent_jobs": 100},
            "models": [{"name": MODEL, "task": "binary", "triggers": triggers}],
        },
    )
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


def test_replayed_grown_resolved_and_truncated_groups_create_one_job_per_episode(
    hooked: Running,
) -> None:
    bodies = [
        payload(alert("fp1")),
        payload(alert("fp1"), alert("fp2")),  # the group grew
        payload(alert("fp3", status="resolved")),  # resolved, never seen firing: ignored
        payload(alert("fp1"), alert("fp4"), truncated=7),  # truncated group
        payload(alert("fp1", starts="2026-11-28T12:00:00Z")),  # fp1 fired again: new episode
        payload(alert("fp5", model="unknown-model")),  # unknown model: ignored
        payload(alert("fp2", status="resolved")),  # resolves a known episode
    ]
    distinct = {
        ("fp1", FIRING_AT),
        ("fp2", FIRING_AT),
        ("fp4", FIRING_AT),
        ("fp1", "2026-11-28T12:00:00Z"),
    }
    rng = random.Random(7)
    deliveries = [bodies[i % len(bodies)] for i in range(1000)]
    rng.shuffle(deliveries)
    headers = hooked.auth("alertmanager")
    url = f"{hooked.url}/v1/alerts/alertmanager"

    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=20)) as client:

        def deliver(body: dict[str, Any]) -> int:
            return client.post(url, json=body, headers=headers).status_code

        with ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(pool.map(deliver, deliveries))
    assert set(statuses) == {200}
    jobs = hooked.daemon.store.list_jobs(model=MODEL, limit=1000)
    assert len(jobs) == len(distinct)
    assert {(j.trigger["fingerprint"], j.trigger["startsAt"]) for j in jobs} == distinct
    assert all(j.kind == "retune" and j.status == "queued" for j in jobs)


def test_payloads_the_handler_ignores_still_get_2xx(hooked: Running) -> None:
    url = f"{hooked.url}/v1/alerts/alertmanager"
    r = httpx.post(url, json=payload(alert("x", model="nope")), headers=hooked.auth("alertmanager"))
    assert r.status_code == 200 and r.json()["new_episodes"] == 0
    assert "no known model" in r.json()["ignored"][0]


def test_malformed_payload_and_wrong_role_are_refused(hooked: Running) -> None:
    url = f"{hooked.url}/v1/alerts/alertmanager"
    bad = httpx.post(url, json={"alerts": "x"}, headers=hooked.auth("alertmanager"))
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"
    scorer = httpx.post(url, json=payload(alert("y")), headers=hooked.auth("scorer"))
    assert scorer.status_code == 403


def test_an_alert_with_labels_that_are_not_an_object_is_ignored_not_a_500(
    hooked: Running,
) -> None:
    url = f"{hooked.url}/v1/alerts/alertmanager"
    odd = [alert("") | {"labels": labels} for labels in ([1.5, "x"], "model=credit", 7, None)]
    r = httpx.post(url, json=payload(*odd), headers=hooked.auth("alertmanager"))
    assert r.status_code == 200, r.text
    assert r.json()["new_episodes"] == 0 and len(r.json()["ignored"]) == len(odd)


@pytest.mark.parametrize(
    "bad",
    [
        alert("bad-model", model="cre\x00dit"),
        alert("bad-start", starts="2026-11-28T10:00:00Z" + "0" * 80),
        alert("bad-name", name="N" * 300),
        alert("bad-label") | {"labels": {"alertname": "X", "model": MODEL, "note": "a\x00b"}},
    ],
    ids=["nul-in-model", "long-startsAt", "long-alertname", "nul-in-a-label"],
)
def test_one_odd_alert_does_not_block_the_rest_of_its_group(
    trained: list[ExampleModel], tmp_path: Path, store_url: str, bad: dict[str, Any]
) -> None:
    """PostgreSQL refused a NUL or an over-long value, and the whole delivery was a 400:
    Alertmanager resent the group and its valid alert never made a job."""
    triggers = [{"on": "alert_received", "do": "retune", "cooldown_minutes": 0}]
    daemon, tokens = make_daemon(
        tmp_path,
        trained,
        store_url=store_url,
        extra={
            "tuning": {"max_concurrent_jobs": 100},
            "models": [{"name": MODEL, "task": "binary", "triggers": triggers}],
        },
    )
    try:
        with BackgroundServer(daemon.app) as server:
            r = httpx.post(
                f"{server.url}/v1/alerts/alertmanager",
                json=payload(bad, alert("good")),
                headers={"Authorization": f"Bearer {tokens['alertmanager']}"},
            )
        assert r.status_code == 200, r.text
        [job] = [
            j for j in daemon.store.list_jobs(model=MODEL) if j.trigger["fingerprint"] == "good"
        ]
        assert job.status == "queued"
    finally:
        daemon.close()
