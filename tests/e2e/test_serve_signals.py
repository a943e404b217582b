"""What `tunewatch serve` does with each signal: SIGHUP is ignored (logged), a second Ctrl-C
during the grace still stops the workers and gives the scheduler's lease back, and with
``server.shutdown_delay_s`` readiness answers 503 while scoring goes on for the delay.

SIGINT with a scheduled job stuck past the scheduler's 20 s grace (the process used to
outlive it, joining the job's thread at exit) has no test here: that grace is not
configurable, so a test of it takes over 20 s.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from tests.e2e.test_crash_durability import _start
from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.one_trial_tuning import SPACE
from tests.tunewatch.signal_inside_set import signal_inside_set
from tunewatch._background import _free_port
from tunewatch._example import ExampleModel, example_data
from tunewatch.store import Store

#: How long a condition polled for may take: far more than any of them does.
DEADLINE_S = 30.0


def _config(tmp_path: Path, trained: list[ExampleModel], **raw: Any) -> tuple[Path, dict[str, str]]:
    """A store holding the example model (champion and shadow) and a config for it."""
    data = tmp_path / "data"
    daemon, tokens = make_daemon(data, trained)
    daemon.close()
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data), **raw}))
    return config, tokens


def _until(what: str, check: Any, proc: subprocess.Popen[bytes], log: Path) -> Any:
    """Poll ``check`` until it returns something truthy; fail should ``proc`` end first."""
    deadline = time.monotonic() + DEADLINE_S
    while not (found := check()):
        assert proc.poll() is None, (
            f"serve ended (rc {proc.returncode}) before {what}:\n" + (log.read_text()[-3000:])
        )
        assert time.monotonic() < deadline, (
            f"not {what} in {DEADLINE_S} s:\n" + (log.read_text()[-3000:])
        )
        time.sleep(0.05)
    return found


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux: /proc)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with open(task / "children") as f:
            kids += [int(k) for k in f.read().split()]
    return kids


def _infer(port: int, token: str) -> httpx.Response:
    x, _ = example_data(1, seed=3)
    body = {
        "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": x[0].tolist()}]
    }
    return httpx.post(
        f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=DEADLINE_S,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_sighup_is_ignored_and_logged(tmp_path: Path, trained: list[ExampleModel]) -> None:
    config, _ = _config(tmp_path, trained, scheduler={"enabled": False}, tuning={"workers": 0})
    port, log = _free_port(), tmp_path / "daemon.log"
    proc = _start(config, port, log)
    try:
        proc.send_signal(signal.SIGHUP)
        _until("SIGHUP logged", lambda: "SIGHUP ignored" in log.read_text(), proc, log)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == -signal.SIGTERM, log.read_text()[-3000:]
    finally:
        _stop(proc)
    text = log.read_text()
    assert "tunewatch reads its configuration at start; restart it to apply a change" in text


def test_ctrl_c_inside_the_sigterm_handler_s_own_stopping_set_stops_serve(
    tmp_path: Path, trained: list[ExampleModel]
) -> None:
    """SIGINT run inside the SIGTERM handler's ``daemon.stopping.set()``, which holds the
    event's lock: the handler called ``set`` again and waited for that lock for ever, the
    process stopping never and deaf to every later signal but SIGKILL. Both came before
    the stop began, so it is a graceful one, ended by SIGINT as any stop that got one."""
    config, _ = _config(tmp_path, trained, scheduler={"enabled": False}, tuning={"workers": 0})
    port, log = _free_port(), tmp_path / "daemon.log"
    proc = _start(config, port, log, first=signal_inside_set("handle_exit", "SIGINT"))
    try:
        proc.send_signal(signal.SIGTERM)
        try:
            ended = proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(
                "serve waited on its stopping event's own lock:\n" + log.read_text()[-3000:]
            )
    finally:
        _stop(proc)
    text = log.read_text()
    assert ended == -signal.SIGINT, text[-3000:]
    assert "Application shutdown complete" in text, text[-3000:]


def test_second_ctrl_c_during_the_grace_stops_workers_and_releases_the_lease(
    tmp_path: Path, trained: list[ExampleModel]
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    tuning = {"search_space": str(space), "min_rows": 100, "max_trials": 1, "cv_folds": 2}
    model = {
        "name": MODEL,
        "task": "binary",
        "tuning": tuning,
        "triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 0}],
    }
    config, tokens = _config(
        tmp_path, trained, tuning={"workers": 1, "heartbeat_s": 2}, models=[model]
    )
    port, log = _free_port(), tmp_path / "daemon.log"
    url = f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}"
    proc = _start(config, port, log)
    held: socket.socket | None = None
    try:
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/models/{MODEL}/retune",
            json={},
            headers={"Authorization": f"Bearer {tokens['operator']}"},
            timeout=DEADLINE_S,
        )
        assert answer.status_code < 300, answer.text
        workers = _until("a worker started", lambda: _children(proc.pid), proc, log)
        # a request whose head was read and whose body has not arrived: the grace waits
        # for it. Read, not only sent: a head still unparsed at the signal has no request
        # to wait for, and its connection was closed at once (the server asks for the
        # body, 100 Continue, once the route reads it)
        held = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
        held.sendall(
            (
                f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: t\r\n"
                f"Authorization: Bearer {tokens['scorer']}\r\nExpect: 100-continue\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            ).encode()
        )
        assert held.recv(64).startswith(b"HTTP/1.1 100 Continue")
        held.sendall(b"{")
        proc.send_signal(signal.SIGTERM)
        _until("in the grace", lambda: "Waiting for connections" in log.read_text(), proc, log)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if held is not None:
            held.close()
        _stop(proc)
    text = log.read_text()
    for pid in workers:  # waited for by serve: reaped, not left running orphaned
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT * FROM leases")).fetchall() == []
            jobs = conn.execute(sa.text("SELECT status FROM jobs")).scalars().all()
    finally:
        store.close()
    assert "running" not in jobs, text[-3000:]
    assert "forced quit" in text, text[-3000:]


def test_shutdown_delay_answers_not_ready_while_scoring_goes_on(
    tmp_path: Path, trained: list[ExampleModel]
) -> None:
    config, tokens = _config(
        tmp_path,
        trained,
        scheduler={"enabled": False},
        tuning={"workers": 0},
        server={"shutdown_delay_s": 6},
    )
    port, log = _free_port(), tmp_path / "daemon.log"
    proc = _start(config, port, log)
    base = f"http://127.0.0.1:{port}"
    try:
        proc.send_signal(signal.SIGTERM)
        ready = _until(
            "not ready",
            lambda: (r := httpx.get(f"{base}/readyz", timeout=5)).status_code == 503 and r,
            proc,
            log,
        )
        assert ready.json() == {"error": ready.json()["error"], "code": "shutting_down"}
        oip = httpx.get(f"{base}/v2/health/ready", timeout=5)
        assert (oip.status_code, oip.json()["code"]) == (503, "shutting_down")
        scored = _infer(port, tokens["scorer"])
        assert scored.status_code == 200, scored.text
        assert scored.headers["connection"] == "close"
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        assert proc.wait(timeout=60) == -signal.SIGTERM, log.read_text()[-3000:]
    finally:
        _stop(proc)
    text = log.read_text()
    assert "Application shutdown complete." in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
