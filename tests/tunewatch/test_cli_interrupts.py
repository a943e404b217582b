"""Ctrl-C and a reader that goes away end a command with one line, not a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tunewatch._cli import main

CLI = [sys.executable, "-m", "tunewatch"]


def _default_sigint() -> None:
    # A background job of a non-interactive shell starts with SIGINT ignored; a
    # terminal's Ctrl-C reaches a process that handles it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_while_a_command_waits_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """It printed a KeyboardInterrupt traceback from wherever the command was."""
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo, 0o600)
    # The command blocks opening the FIFO (its config) until a writer comes: the
    # interrupt arrives while it waits, as Ctrl-C during a slow step does.
    child = subprocess.Popen(
        [*CLI, "--config", str(fifo), "jobs"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    try:
        _wait_until_opening(child.pid, fifo)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130
    assert err.strip().splitlines() == ["tunewatch: interrupted"]
    assert out == ""


def _wait_until_opening(pid: int, fifo: Path) -> None:
    """Block (on the process's own progress, not a timer) until ``pid`` waits in open()
    of ``fifo``: its kernel wait channel says so once the interpreter reached it."""
    while True:
        try:
            wchan = Path(f"/proc/{pid}/wchan").read_text()
        except FileNotFoundError as exc:
            raise AssertionError("the command exited before reading its config") from exc
        if wchan == "wait_for_partner":  # fifo_open, waiting for a writer
            return
        os.sched_yield()


def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tunewatch tokens list | head -1` (a pager quit early) said "tunewatch: error:
    [Errno 32] Broken pipe" and exited 2, as if the command had failed."""
    config = tmp_path / "tunewatch.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n", encoding="utf-8")
    assert main(["--config", str(config), "tokens", "create", "ci", "--role", "viewer"]) == 0
    capsys.readouterr()
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes
    try:
        done = subprocess.run(
            [*CLI, "--config", str(config), "tokens", "list"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == 141  # 128 + SIGPIPE, what a shell reports of a cut pipe
