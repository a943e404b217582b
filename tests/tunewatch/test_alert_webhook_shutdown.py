"""SIGTERM while `tunewatch serve` decides an Alertmanager delivery: the delivery ends in
a JSON 503 ``shutting_down`` with ``Retry-After`` (Alertmanager retries it) once the grace
leaves no room for another alert, and no episode of it stays claimed.

It went on deciding until uvicorn's graceful timeout cancelled it: a bare text/plain 500
with a traceback in the log, and the episode it was deciding left claimed, so every other
replica answered 503 ``alert_busy`` for it until the claim timed out a minute later. The
deliveries waiting for one of the webhook's threads were started as threads came free, and
cut off the same way.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.tunewatch.api.alert_helpers import alert, job_fingerprints, payload, retune_daemon
from tests.tunewatch.conftest import MODEL, holding
from tests.tunewatch.serve_process import START_S, free_port
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel
from tunewatch.api import _alerts
from tunewatch.api._context import ALERT_THREADS

WAIT_S = 120.0  # a safety net for a broken build, never the thing the test measures
#: The group's alerts, each decided in a few writing transactions of its own: deciding
#: them all takes far longer than the seconds the stop leaves (under 5 s here).
ALERTS = 12_000


@contextmanager
def _serving(raw: dict[str, Any], config: Path) -> Iterator[tuple[subprocess.Popen[str], Any]]:
    """`tunewatch serve` on ``raw``, with a queue of its log lines ("" once it closed)."""
    config.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEWATCH_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "tunewatch._cli", "--config", str(config), "serve"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read_log() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)
        lines.put("")

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(START_S)
        reader.join(START_S)
        assert process.stderr is not None
        process.stderr.close()


def _log_until(lines: queue.Queue[str], text: str, log: list[str]) -> None:
    """Read log lines into ``log`` up to the first holding ``text``."""
    while True:
        line = lines.get(timeout=WAIT_S)
        assert line, f"serve's log ended before {text!r}:\n" + "".join(log)
        log.append(line)
        if text in line:
            return


def test_a_delivery_deciding_at_sigterm_is_answered_json_503_and_leaves_no_claim(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, tokens = retune_daemon(trained, tmp_path, None, quota=10 * ALERTS, cooldown=0)
    daemon.close()
    port = free_port()
    triggers = [{"on": "alert_received", "do": "retune", "cooldown_minutes": 0}]
    raw = {
        "data_dir": str(tmp_path),
        "server": {"host": "127.0.0.1", "port": port},
        "scheduler": {"enabled": False},
        # the shortest grace: ceil(1 + 5) + 5 = 11 s, of which the stop leaves 4 s to decide
        "store": {"lock_timeout_s": 1},
        "tuning": {"max_concurrent_jobs": 10 * ALERTS, "workers": 0},
        "models": [{"name": "credit", "task": "binary", "triggers": triggers}],
    }
    group = json.dumps(payload(*(alert(f"fp{i:05d}") for i in range(ALERTS)))).encode()
    answers: queue.Queue[httpx.Response | Exception] = queue.Queue()

    def deliver() -> None:
        try:
            answers.put(
                httpx.post(
                    f"http://127.0.0.1:{port}/v1/alerts/alertmanager",
                    content=group,
                    headers={
                        "Authorization": f"Bearer {tokens['alertmanager']}",
                        "Content-Type": "application/json",
                    },
                    timeout=WAIT_S,
                )
            )
        except Exception as exc:  # handed to the test's thread, which fails on it
            answers.put(exc)

    log: list[str] = []
    with _serving(raw, tmp_path / "serve.yaml") as (process, lines):
        _log_until(lines, "listening on", log)
        sender = threading.Thread(target=deliver)
        sender.start()
        _log_until(lines, "-> retune taken", log)  # the delivery is deciding its alerts
        process.send_signal(signal.SIGTERM)
        sender.join(WAIT_S)
        process.wait(WAIT_S)  # uvicorn ends by the signal it caught, once stopped
        while line := lines.get(timeout=WAIT_S):
            log.append(line)
    answer = answers.get_nowait()
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 503, (answer.status_code, answer.text[:300], "".join(log))
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["code"] == "shutting_down", answer.text
    assert int(answer.headers["retry-after"]) >= 1
    assert "timeout graceful shutdown exceeded" not in "".join(log)
    db = sqlite3.connect(tmp_path / "tunewatch.db")
    try:
        claimed = db.execute(
            "SELECT count(*) FROM alert_episodes WHERE decision LIKE 'claimed at %'"
        ).fetchone()[0]
        decided = db.execute("SELECT count(*) FROM alert_episodes").fetchone()[0]
    finally:
        db.close()
    assert claimed == 0
    assert 0 < decided < ALERTS  # stopped part way through the group


def test_at_the_stop_a_delivery_waiting_for_a_thread_is_answered_unstarted_one_deciding_ends(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, tokens = retune_daemon(trained, tmp_path, None, quota=100, cooldown=0)
    answers: dict[str, httpx.Response] = {}
    try:
        with (
            BackgroundServer(daemon.app) as server,
            holding(monkeypatch, _alerts, "_handle_body", ALERT_THREADS) as held,
        ):

            def deliver(fingerprint: str) -> None:
                answers[fingerprint] = httpx.post(
                    f"{server.url}/v1/alerts/alertmanager",
                    json=payload(alert(fingerprint)),
                    headers={"Authorization": f"Bearer {tokens['alertmanager']}"},
                    timeout=WAIT_S,
                )

            deciding = [f"deciding{i}" for i in range(ALERT_THREADS)]
            senders = [threading.Thread(target=deliver, args=(fp,)) for fp in deciding]
            for t in senders:
                t.start()
            for _ in deciding:  # each holds one of the webhook's threads
                assert held.entered.acquire(timeout=WAIT_S)
            # waiting for a thread, or arriving after the stop: either way not started
            late = threading.Thread(target=deliver, args=("waiting",))
            late.start()
            daemon.alert_stop.begin(grace_s=3600, commit_s=0)
            late.join(WAIT_S)
            refused = answers["waiting"]
            assert refused.status_code == 503, refused.text
            assert refused.json()["code"] == "shutting_down"
            assert int(refused.headers["retry-after"]) >= 1
            held.release.set()  # the deliveries in a thread decide: their deadline is far
            for t in senders:
                t.join(WAIT_S)
        assert all(answers[fp].status_code == 200 for fp in deciding), answers
        # each decided (one job for the model, the others its duplicates), none for the
        # one refused
        [queued] = job_fingerprints(daemon)
        assert queued in deciding
        received = daemon.store.list_events(model=MODEL, type="alert_received", limit=100)
        assert sorted(e.payload["fingerprint"] for e in received) == sorted(deciding)
        duplicates = daemon.store.list_events(model=MODEL, type="action_duplicate", limit=100)
        assert len(duplicates) == len(deciding) - 1
    finally:
        daemon.close()
