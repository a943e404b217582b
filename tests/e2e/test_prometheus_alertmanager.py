"""The loop through real Prometheus and Alertmanager binaries (Debian packages, loopback).

tunewatch exports drift gauges; Prometheus scrapes them and evaluates configs/'s rules
and a rule of the test's own; Alertmanager routes that rule's alert (`action: retune`) to
tunewatch's webhook; exactly one tuning job starts. The shipped rules only notify (the
daemon retunes on their decisions itself): their drift alert fires and queues nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from tests.conftest import service_missing
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._background import BackgroundServer, _free_port
from tunewatch._example import ExampleModel, example_data
from tunewatch._tuning import TuningJobRunner

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHIPPED_RULES = CONFIGS / "prometheus" / "tunewatch.rules.yml"
RETUNE_ALERT = "DriftRetune"


def _retune_rules(path: Path) -> Path:
    """A rule file of the test's own: the shipped drift alert's expression, labelled
    `action: retune` as an operator's rule on a signal the daemon cannot see would be,
    so Alertmanager routes it to the webhook."""
    shipped = yaml.safe_load(SHIPPED_RULES.read_text())
    drift = next(
        rule
        for group in shipped["groups"]
        for rule in group["rules"]
        if rule["alert"] == "TunewatchDriftDetected"
    )
    rule = {
        "alert": RETUNE_ALERT,
        "expr": drift["expr"],
        "labels": {"severity": "ticket", "action": "retune"},
    }
    path.write_text(yaml.safe_dump({"groups": [{"name": "e2e", "rules": [rule]}]}))
    return path


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        service_missing(
            f"{name} is not installed (Debian packages prometheus, prometheus-alertmanager)"
        )
    assert path is not None
    return path


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url} died:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.1)
    raise AssertionError(f"{url} did not become ready:\n{log.read_text()[-2000:]}")


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def stack(trained: list[ExampleModel], tmp_path: Path) -> Iterator[dict[str, object]]:
    prometheus = _binary("prometheus")
    alertmanager = _binary("prometheus-alertmanager")
    daemon, tokens = make_daemon(
        tmp_path / "data",
        trained,
        extra={
            "scheduler": {"enabled": False},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    # one drifted window raises the alarm (the shipped default is two)
                    "evaluation": {"drift": {"consecutive": 1}},
                    "triggers": [
                        {"on": "drift_detected", "do": "notify"},
                        {"on": "alert_received", "do": "retune", "cooldown_minutes": 60},
                    ],
                }
            ],
        },
    )
    procs: list[subprocess.Popen[bytes]] = []
    with BackgroundServer(daemon.app) as server:
        token_file = tmp_path / "am.token"
        token_file.write_text(tokens["alertmanager"])
        am_port, prom_port = _free_port(), _free_port()
        am = yaml.safe_load((CONFIGS / "alertmanager" / "alertmanager.yml").read_text())
        am["route"].update(group_wait="1s", group_interval="1s", repeat_interval="2s")
        hook = am["receivers"][1]["webhook_configs"][0]
        hook["url"] = f"{server.url}/v1/alerts/alertmanager"
        hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
        (tmp_path / "am.yml").write_text(yaml.safe_dump(am))
        prom = yaml.safe_load((CONFIGS / "prometheus" / "prometheus.yml").read_text())
        prom["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        prom["rule_files"] = [
            str(SHIPPED_RULES),
            str(_retune_rules(tmp_path / "retune.rules.yml")),
        ]
        prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
            f"127.0.0.1:{am_port}"
        ]
        prom["scrape_configs"][0]["static_configs"][0]["targets"] = [
            server.url.removeprefix("http://")
        ]
        (tmp_path / "prom.yml").write_text(yaml.safe_dump(prom))
        try:
            procs.append(
                _spawn(
                    [
                        alertmanager,
                        f"--config.file={tmp_path / 'am.yml'}",
                        f"--storage.path={tmp_path / 'am-data'}",
                        f"--web.listen-address=127.0.0.1:{am_port}",
                        "--cluster.listen-address=",
                    ],
                    tmp_path / "am.log",
                )
            )
            _wait_http(f"http://127.0.0.1:{am_port}/-/ready", procs[-1], tmp_path / "am.log")
            procs.append(
                _spawn(
                    [
                        prometheus,
                        f"--config.file={tmp_path / 'prom.yml'}",
                        f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                    ],
                    tmp_path / "prom.log",
                )
            )
            _wait_http(f"http://127.0.0.1:{prom_port}/-/ready", procs[-1], tmp_path / "prom.log")
            yield {
                "daemon": daemon,
                "server": server,
                "tokens": tokens,
                "prometheus": f"http://127.0.0.1:{prom_port}",
            }
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)
    daemon.close()


@pytest.mark.prometheus
@pytest.mark.slow
def test_drift_alert_travels_through_prometheus_and_alertmanager_to_one_job(
    stack: dict[str, object],
) -> None:
    from tunewatch._daemon import Daemon

    daemon = stack["daemon"]
    assert isinstance(daemon, Daemon)
    server = stack["server"]
    assert isinstance(server, BackgroundServer)
    tokens = stack["tokens"]
    assert isinstance(tokens, dict)
    x, _ = example_data(400, seed=21, shift=1.5)
    x = np.clip(x, -9, 9)
    body = {
        "inputs": [{"name": "input", "shape": [400, 8], "datatype": "FP32", "data": x.tolist()}]
    }
    r = httpx.post(
        f"{server.url}/v2/models/{MODEL}/infer",
        json=body,
        headers={"Authorization": f"Bearer {tokens['scorer']}"},
    )
    assert r.status_code == 200
    daemon.evaluator.evaluate(MODEL)  # exports tunewatch_alarm{event="drift_detected"} 1

    deadline = time.monotonic() + 90
    jobs = []
    while time.monotonic() < deadline:
        jobs = daemon.store.list_jobs(model=MODEL)
        if jobs:
            break
        time.sleep(0.25)
    assert jobs, "no job: the alert never reached the webhook"

    # Alertmanager repeats the notification every repeat_interval (2 s here): wait for two
    # more deliveries, then there must still be exactly one job
    def deliveries() -> float:
        sample = daemon.metrics.registry.get_sample_value(
            "tunewatch_http_requests_total", {"route": "/v1/alerts/alertmanager", "status": "200"}
        )
        return sample or 0.0

    first = deliveries()
    repeats = time.monotonic() + 30
    while deliveries() < first + 2 and time.monotonic() < repeats:
        time.sleep(0.1)
    assert deliveries() >= first + 2
    jobs = daemon.store.list_jobs(model=MODEL)
    assert len(jobs) == 1
    trigger = jobs[0].trigger
    assert trigger["event"] == "alert_received"
    assert trigger["alertname"] == RETUNE_ALERT
    # the shipped drift alert fires too, and, without `action: retune`, queued nothing
    alerts = httpx.get(f"{stack['prometheus']}/api/v1/alerts").json()["data"]["alerts"]
    firing = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
    assert {"TunewatchDriftDetected", RETUNE_ALERT} <= firing

    # the job runs (here, in-process; the daemon's launcher would start a worker) and
    # registers its winner as a shadow challenger
    done = TuningJobRunner(
        store=daemon.store,
        registry=daemon.registry,
        artefacts=daemon.artefacts,
        config=daemon.config,
        worker="e2e",
    ).run(jobs[0].id)
    assert done.status == "succeeded", done.error
    assert done.result is not None
    challenger = daemon.store.get_version(MODEL, done.result["version"])
    assert challenger.stage == "shadow" and challenger.details["trigger"]["event"] == (
        "alert_received"
    )
