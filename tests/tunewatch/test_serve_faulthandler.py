"""`tunewatch serve` killed by a fatal signal leaves a traceback in its log.

A daemon that crashed on SIGSEGV (inside orjson, under memory exhaustion) left no line at
all: its log ended mid-traffic, with nothing to say where or why.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from tests.tunewatch.serve_process import START_S, free_port


def test_serve_killed_by_sigsegv_writes_a_traceback_of_every_thread_to_stderr(
    tmp_path: Path,
) -> None:
    config = tmp_path / "tunewatch.yaml"
    raw = {"data_dir": str(tmp_path / "data"), "server": {"port": free_port()}}
    config.write_text(yaml.safe_dump(raw))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TUNEWATCH_") and k != "PYTHONFAULTHANDLER"
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tunewatch._cli", "--config", str(config), "serve"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    try:
        log = []
        for line in process.stderr:  # its start is a few lines: the pipe never fills
            log.append(line)
            if "listening on" in line:
                break
        assert process.poll() is None, "".join(log)
        os.kill(process.pid, signal.SIGSEGV)
        rest = process.stderr.read()
        assert process.wait(START_S) == -signal.SIGSEGV
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(START_S)
        process.stderr.close()
    assert "Fatal Python error: Segmentation fault" in rest, rest
    # every thread's stack, the main thread's (serving) among them; which thread the
    # kernel hands a process-directed SIGSEGV to varies, and only one holding a Python
    # thread state is headed "Current thread", so the headers are counted, not named
    assert rest.count("hread 0x") >= 2, rest
    assert "in cmd_serve" in rest, rest
