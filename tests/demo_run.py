"""One run of ``tunewatch demo`` per test run, shared by every test that reads its store.

The demo is the whole loop (~30–45 s): the whole-loop e2e test asserts what it did,
the dashboard tests serve what it left. Under ``pytest -n`` the first worker to ask runs it
into the directory its run's workers share, under a file lock; each caller then gets its
own copy, so no two tests (and no two daemons) share a store.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tunewatch._demo import run_demo

OUTPUT = "demo-output.txt"


@dataclass(frozen=True)
class DemoRun:
    """Where the demo's store was copied to, and what the demo printed."""

    data_dir: Path
    output: str


def _run(data_dir: Path) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_demo(data_dir=data_dir)
    if code != 0:
        raise RuntimeError(f"the demo failed (exit {code}):\n{out.getvalue()}")
    (data_dir / OUTPUT).write_text(out.getvalue())


def shared_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the run's one demo left (made on first use)."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = tmp_path_factory.getbasetemp().parent
    else:
        root = tmp_path_factory.getbasetemp()
    shared, done = root / "demo-run", root / "demo-run.done"
    with (root / "demo-run.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(shared, ignore_errors=True)  # a run that died half-way
            _run(shared)
            done.touch()
    return shared


def copy_of_demo(tmp_path_factory: pytest.TempPathFactory, name: str) -> DemoRun:
    """A private copy of the demo's data directory, and the demo's output."""
    shared = shared_demo(tmp_path_factory)
    mine = tmp_path_factory.mktemp(name) / "demo"
    shutil.copytree(shared, mine)
    return DemoRun(data_dir=mine, output=(shared / OUTPUT).read_text())
