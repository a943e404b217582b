"""Alertmanager v4 webhook payloads, and a daemon that retunes on them, for the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._daemon import Daemon
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


def retune_daemon(
    trained: list[ExampleModel],
    tmp_path: Path,
    store_url: str | None,
    *,
    quota: int,
    cooldown: float,
) -> tuple[Daemon, dict[str, str]]:
    triggers = [{"on": "alert_received", "do": "retune", "cooldown_minutes": cooldown}]
    return make_daemon(
        tmp_path,
        trained,
        store_url=store_url,
        extra={
            "tuning": {"max_concurrent_jobs": quota},
            "models": [{"name": MODEL, "task": "binary", "triggers": triggers}],
        },
    )


def job_fingerprints(daemon: Daemon) -> list[str]:
    return sorted(j.trigger["fingerprint"] for j in daemon.store.list_jobs(model=MODEL))
