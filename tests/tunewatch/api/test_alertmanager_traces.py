"""What the Alertmanager webhook leaves behind besides its answer: a warning and a count
for the alerts it ignores or never received (``truncatedAlerts``), and the caller's name
on the episode's events. Ignored alerts used to be listed in the 2xx body alone, which
Alertmanager does not log: a rule labelling its model ``model_name``, or naming it with a
typo, never retuned and nothing said why."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.tunewatch.api.alert_helpers import alert, payload, retune_daemon
from tests.tunewatch.conftest import MODEL, Running
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel

_LOGGER = "tunewatch.api._alert_ignores"
_COUNTER = "tunewatch_alerts_ignored_total"


@pytest.fixture
def hooked(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    daemon, tokens = retune_daemon(trained, tmp_path, None, quota=100, cooldown=0)
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


def _post(hooked: Running, body: dict[str, Any], token: str | None = None) -> httpx.Response:
    headers = (
        {"Authorization": f"Bearer {token}"} if token is not None else hooked.auth("alertmanager")
    )
    return httpx.post(
        f"{hooked.url}/v1/alerts/alertmanager", json=body, headers=headers, timeout=60
    )


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == _LOGGER and r.levelno == logging.WARNING
    ]


def _ignored(daemon: Daemon, reason: str) -> float | None:
    return daemon.metrics.registry.get_sample_value(_COUNTER, {"reason": reason})


def test_ignored_alerts_get_2xx_one_warning_naming_them_and_a_count_by_reason(
    hooked: Running, caplog: pytest.LogCaptureFixture
) -> None:
    typo = alert("fp-typo", model="credt", name="KpiDropped")
    renamed = alert("fp-renamed")
    renamed["labels"]["model_name"] = renamed["labels"].pop("model")
    long_value = alert("fp-long", model="x" * 5000)
    bad_start = alert("fp-start", starts="2026-11-28 10:00:00")
    pending = alert("fp-status", status="pending")
    nul = alert("fp-nul")
    nul["labels"]["note"] = "a\x00b"
    unseen = alert("fp-unseen", status="resolved")
    body = payload(typo, renamed, long_value, bad_start, pending, nul, unseen, alert("ok"))
    body["alerts"].append(5)  # not an alert object
    caplog.set_level(logging.WARNING, logger=_LOGGER)

    r = _post(hooked, body)

    assert r.status_code == 200, r.text
    assert r.json()["new_episodes"] == 1 and len(r.json()["ignored"]) == 8
    [warning] = _warnings(caplog)  # one per delivery, however many it ignored
    assert "ignored 8 of 9" in warning
    for shown in (
        "'KpiDropped'",
        "'fp-typo'",
        "model_unknown",
        "'credt'",
        "model_label_missing",
        "'model'",  # the label it looked for
        "starts_at",
        "'2026-11-28 10:00:00'",
        "status",
        "'pending'",
        "nul",
        "resolved_unseen",
        "not_an_object",
    ):
        assert shown in warning, shown
    # a label's value is shown bounded, as the webhook's other messages show values
    assert "x" * 64 in warning and "x" * 65 not in warning
    assert len(warning) < 4000
    expected = {
        "model_unknown": 2,
        "model_label_missing": 1,
        "starts_at": 1,
        "status": 1,
        "nul": 1,
        "resolved_unseen": 1,
        "not_an_object": 1,
    }
    assert {reason: _ignored(hooked.daemon, reason) for reason in expected} == expected
    exposition = httpx.get(f"{hooked.url}/metrics").text
    assert f'{_COUNTER}{{reason="model_unknown"}} 2.0' in exposition
    assert "credt" not in exposition  # the reason is bounded, never the label's value


def test_a_delivery_ignoring_many_alerts_logs_one_bounded_warning(
    hooked: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=_LOGGER)
    unknown = [alert(f"fp{i}", model=f"typo-{i}") for i in range(300)]

    assert _post(hooked, payload(*unknown)).status_code == 200

    [warning] = _warnings(caplog)
    assert "ignored 300 of 300" in warning and "'typo-0'" in warning
    assert "'typo-299'" not in warning  # the first few are named, the rest counted
    assert len(warning) < 4000
    assert _ignored(hooked.daemon, "model_unknown") == 300


def test_a_truncated_group_is_logged_and_counted(
    hooked: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=_LOGGER)

    assert _post(hooked, payload(alert("fp1"))).status_code == 200
    assert _warnings(caplog) == []  # nothing ignored, nothing left out: nothing to say
    r = _post(hooked, payload(alert("fp2"), truncated=7))

    assert r.status_code == 200 and r.json()["new_episodes"] == 1
    [warning] = _warnings(caplog)
    assert "truncatedAlerts" in warning and "7" in warning
    assert _ignored(hooked.daemon, "truncated") == 7


@pytest.mark.parametrize(
    "odd", [-1, 1.5, "7", True, 10**300], ids=["negative", "float", "string", "bool", "huge"]
)
def test_a_truncated_count_that_is_not_a_count_is_logged_not_counted(
    hooked: Running, caplog: pytest.LogCaptureFixture, odd: Any
) -> None:
    caplog.set_level(logging.WARNING, logger=_LOGGER)
    body = payload(alert("fp1"))
    body["truncatedAlerts"] = odd

    assert _post(hooked, body).status_code == 200

    [warning] = _warnings(caplog)
    assert "truncatedAlerts" in warning and len(warning) < 400
    assert _ignored(hooked.daemon, "truncated") is None


def _add_token(daemon: Daemon, name: str) -> str:
    token = new_token()
    daemon.store.add_token(name=name, role="alertmanager", token_hash=hash_token(token), actor="t")
    return token


def test_each_episode_names_the_token_that_delivered_it(hooked: Running) -> None:
    cluster_b = _add_token(hooked.daemon, "am-cluster-b")

    store = hooked.daemon.store

    def done() -> None:
        """The model's retune ends: while it is active, the next alert's is its duplicate."""
        for job in store.list_jobs(model=MODEL):
            if job.status in ("queued", "running"):
                store.finish_job(job.id, status="succeeded", result={})

    assert _post(hooked, payload(alert("fp-a"))).status_code == 200
    done()
    assert _post(hooked, payload(alert("fp-b")), token=cluster_b).status_code == 200
    done()
    assert _post(hooked, payload(alert("fp-c")), token=hooked.tokens["admin"]).status_code == 200

    received = {
        e.payload["fingerprint"]: e.payload["actor"]
        for e in store.list_events(model=MODEL, type="alert_received")
    }
    assert received == {
        "fp-a": "test-alertmanager",
        "fp-b": "am-cluster-b",
        "fp-c": "test-admin",
    }
    job_of = {j.id: j.trigger["fingerprint"] for j in store.list_jobs(model=MODEL)}
    taken = {
        job_of[e.payload["job"]]: e.payload["actor"]
        for e in store.list_events(model=MODEL, type="action_taken")
    }
    assert taken == received


def test_an_owed_retune_is_recorded_in_the_name_of_the_delivery_that_queued_it(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, tokens = retune_daemon(trained, tmp_path, None, quota=1, cooldown=0)
    try:
        # another model's job holds the slot (one of MODEL's: fp1's retune its duplicate)
        daemon.store.ensure_model(name="other", task="binary", feature_names=["x"])
        blocker, _ = daemon.store.create_job(
            model="other", kind="retune", trigger={"event": "manual"}, spec={}
        )
        cluster_b = _add_token(daemon, "am-cluster-b")
        with BackgroundServer(daemon.app) as server:
            running = Running(daemon=daemon, server=server, tokens=tokens)
            assert _post(running, payload(alert("fp1"))).status_code == 200
            daemon.store.finish_job(blocker.id, status="succeeded", result={})
            again = _post(running, payload(alert("fp1")), token=cluster_b)
            assert again.status_code == 200 and len(again.json()["jobs"]) == 1
        actions = [
            (e.type, e.payload["actor"])
            for e in reversed(daemon.store.list_events(model=MODEL))
            if e.type.startswith("action_")
        ]
        assert actions == [
            ("action_suppressed", "test-alertmanager"),
            ("action_taken", "am-cluster-b"),
        ]
    finally:
        daemon.close()
