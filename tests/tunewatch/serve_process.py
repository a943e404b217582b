"""`tunewatch serve` (the CLI, its config and its uvicorn) in a child process, for tests of
what only the real command wires: its uvicorn settings, its config's server section."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

START_S = 120.0  # `tunewatch serve` imports, migrates and starts: a bound, not a duration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(raw: dict[str, Any], config: Path) -> Iterator[list[str]]:
    """Run `tunewatch serve` on ``raw`` (written to ``config``) until the block ends;
    entered once it says it listens, with its log lines so far (and on, as they come).
    Its log is drained to the end, so it never blocks on the pipe, and shown when it fails
    to start."""
    with serve_process(raw, config) as (_, log):
        yield log


@contextlib.contextmanager
def serve_process(
    raw: dict[str, Any], config: Path, *, preexec_fn: Callable[[], None] | None = None
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """:func:`serving`, with the process too, started with ``preexec_fn`` (a resource
    limit of its own, say)."""
    config.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEWATCH_")}
    command = [sys.executable, "-m", "tunewatch._cli", "--config", str(config), "serve"]
    process = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        preexec_fn=preexec_fn,
    )
    listening = threading.Event()
    log: list[str] = []

    def read_log() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            if "listening on" in line:
                listening.set()
        listening.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        assert listening.wait(START_S) and process.poll() is None, "".join(log)
        yield process, log
    finally:
        process.terminate()
        process.wait(START_S)
        reader.join(START_S)
        assert process.stderr is not None
        process.stderr.close()
