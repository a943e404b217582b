"""The Alertmanager webhook under at-least-once delivery: jobs created == distinct episodes."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.tunewatch.api.alert_helpers import (
    FIRING_AT,
    alert,
    job_fingerprints,
    payload,
    retune_daemon,
)
from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._actions import OUTCOMES
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel
from tunewatch.api._alerts import handle_alerts


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
    ]
    # resolves a known episode. Alertmanager sends it after the episode's firing
    # notifications, so it comes once fp2 has fired, replayed among the rest; a resolve
    # that comes first closes the episode (see the test below).
    resolved = payload(alert("fp2", status="resolved"))
    distinct = {
        ("fp1", FIRING_AT),
        ("fp2", FIRING_AT),
        ("fp4", FIRING_AT),
        ("fp1", "2026-11-28T12:00:00Z"),
    }
    rng = random.Random(7)
    deliveries = [bodies[i % len(bodies)] for i in range(1000)]
    rng.shuffle(deliveries)
    after = [resolved, *([resolved, *bodies] * 20)]
    rng.shuffle(after)
    headers = hooked.auth("alertmanager")
    url = f"{hooked.url}/v1/alerts/alertmanager"

    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=20)) as client:

        def deliver(body: dict[str, Any]) -> int:
            return client.post(url, json=body, headers=headers).status_code

        with ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(pool.map(deliver, deliveries))
            statuses += list(pool.map(deliver, after))
    assert set(statuses) == {200}
    store = hooked.daemon.store
    # each episode recorded and decided once: a job, or the duplicate of the model's job
    # then queued or running (one retune of a model at a time)
    received = store.list_events(model=MODEL, type="alert_received", limit=1000)
    assert len(received) == len(distinct)
    assert {(e.payload["fingerprint"], e.payload["startsAt"]) for e in received} == distinct
    jobs = store.list_jobs(model=MODEL, limit=1000)
    assert {(j.trigger["fingerprint"], j.trigger["startsAt"]) for j in jobs} <= distinct
    taken = store.list_events(model=MODEL, type="action_taken", limit=1000)
    duplicates = store.list_events(model=MODEL, type="action_duplicate", limit=1000)
    assert len(taken) == len(jobs) >= 1 and len(taken) + len(duplicates) == len(distinct)
    assert {e.payload["job"] for e in duplicates} <= {j.id for j in jobs}
    # the daemon's launcher may have started a worker on one by now (it ticks every 2 s)
    assert all(j.kind == "retune" for j in jobs) and store.count_active_jobs(MODEL) <= 1


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


def test_label_values_that_are_not_strings_are_dropped_and_the_listings_still_answer(
    hooked: Running,
) -> None:
    """A label nested 260 deep was stored in the episode, the alert_received event and the
    job's trigger: the webhook answered 200, then /v1/events, /v1/jobs, /v1/jobs/{id} and
    the dashboard's overview answered 500 (too deep to serialise) while the row was
    listed. Alertmanager's labels are strings; anything else is dropped."""
    deep: Any = []
    for _ in range(260):
        deep = [deep]
    odd = alert("fpDeep")
    odd["labels"] |= {"deep": deep, "count": 3, "flag": True, "none": None, "map": {"a": "b"}}
    odd["annotations"] = {"summary": deep}
    r = httpx.post(
        f"{hooked.url}/v1/alerts/alertmanager",
        json=payload(odd),
        headers=hooked.auth("alertmanager"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["new_episodes"] == 1 and r.json()["ignored"] == []
    [job_id] = r.json()["jobs"]
    viewer = hooked.auth("viewer")
    for path in ("/v1/events", "/v1/jobs", f"/v1/jobs/{job_id}", "/v1/dashboard/overview"):
        listed = httpx.get(f"{hooked.url}{path}", headers=viewer, timeout=60)
        assert listed.status_code == 200, f"{path}: {listed.status_code} {listed.text[:300]}"
    kept = alert("fpDeep")["labels"]
    assert hooked.daemon.store.get_job(job_id).trigger["labels"] == kept
    [event] = hooked.daemon.store.list_events(model=MODEL, type="alert_received")
    assert event.payload["labels"] == kept


def test_a_body_with_a_lone_surrogate_is_refused_as_invalid_json(hooked: Running) -> None:
    """Such a body decoded into a str the store and the response could not encode: a 500.
    Alertmanager (Go) never escapes a lone surrogate, so this is no alert of a real group."""
    body = json.dumps(payload(alert("fpV", name="\udfff"), alert("good"))).encode()
    assert b"\\udfff" in body
    r = httpx.post(
        f"{hooked.url}/v1/alerts/alertmanager",
        content=body,
        headers={**hooked.auth("alertmanager"), "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error", "code"} and r.json()["code"] == "invalid_json"
    assert hooked.daemon.store.list_jobs(model=MODEL) == []


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
                # the good alert first: a valid odd one after it (a long alertname) is
                # its job's duplicate
                json=payload(alert("good"), bad),
                headers={"Authorization": f"Bearer {tokens['alertmanager']}"},
            )
        assert r.status_code == 200, r.text
        [job] = [
            j for j in daemon.store.list_jobs(model=MODEL) if j.trigger["fingerprint"] == "good"
        ]
        assert job.status == "queued"
    finally:
        daemon.close()


@pytest.mark.parametrize(
    "odd",
    [
        {"labels": {"alertname": "X", "model": MODEL, "note": "a\x00b"}},
        {"labels": {"alertname": "X", "model": MODEL, "no\x00te": "b"}},
        {"labels": {"alertname": "X\x00", "model": MODEL}},
        {"fingerprint": "nul\x00"},
        {"startsAt": FIRING_AT + "\x00"},
    ],
    ids=["label-value", "label-name", "alertname", "fingerprint", "startsAt"],
)
def test_an_alert_with_a_nul_is_ignored_and_leaves_nothing_stored(
    trained: list[ExampleModel], tmp_path: Path, store_url: str, odd: dict[str, Any]
) -> None:
    """PostgreSQL's `json` takes a NUL (as \\u0000) that `->>` cannot read back: the
    alert's episode, its alert_received event and its job were stored, and every later
    look-up of the model's last action (each evaluation run's policies) failed for good."""
    triggers = [
        {"on": "alert_received", "do": "retune", "cooldown_minutes": 0},
        {"on": "label_delay_high", "do": "notify"},
    ]
    daemon, _ = make_daemon(
        tmp_path,
        trained,
        store_url=store_url,
        extra={"models": [{"name": MODEL, "task": "binary", "triggers": triggers}]},
    )
    try:
        summary = handle_alerts(daemon.app.ctx, payload(alert("nul") | odd, alert("good")))
        assert [s for s in summary["ignored"] if "NUL" in s] == summary["ignored"]
        assert len(summary["ignored"]) == 1 and summary["new_episodes"] == 1
        assert job_fingerprints(daemon) == ["good"]
        received = daemon.store.list_events(model=MODEL, type="alert_received")
        assert [e.payload["fingerprint"] for e in received] == ["good"]
        daemon.dispatcher.handle(MODEL, "label_delay_high", {"reason": "test"})
        last = daemon.store.last_action(MODEL, trigger="label_delay_high", outcomes=OUTCOMES)
        assert last is not None and last.type == "action_taken"
    finally:
        daemon.close()


def test_a_firing_delivery_after_its_episode_resolved_queues_no_job(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """A resolve for an episode never seen firing stored nothing, so a late delivery of
    the episode firing (a retried notification, an HA peer's) queued a retune for an alert
    that had already resolved."""
    daemon, _ = retune_daemon(trained, tmp_path, store_url, quota=100, cooldown=0)
    try:
        resolved = handle_alerts(daemon.app.ctx, payload(alert("fp1", status="resolved")))
        assert resolved["ignored"] == ["TunewatchDriftHigh: resolved, never seen firing"]
        late = handle_alerts(daemon.app.ctx, payload(alert("fp1"), alert("fp2")))
        assert late["new_episodes"] == 1 and len(late["jobs"]) == 1
        assert job_fingerprints(daemon) == ["fp2"]
        received = daemon.store.list_events(model=MODEL, type="alert_received")
        assert [e.payload["fingerprint"] for e in received] == ["fp2"]
    finally:
        daemon.close()
