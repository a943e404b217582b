"""The dashboard scenario: the demo's store, served by a fresh daemon, with tokens."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard.scenario import Served, seeded_dir, serve


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store left by ``tunewatch demo`` (the whole loop, ~40 s, once per test run).

    Under ``pytest -n`` (``make test``) the first worker to get here runs the demo into
    the temp directory its run's workers share, under a file lock; every worker then
    serves its own copy, so no two daemons share a store.
    """
    mine = tmp_path_factory.mktemp("dashboard") / "demo"
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return seeded_dir(mine)
    shared_root = tmp_path_factory.getbasetemp().parent
    shared, done = shared_root / "dashboard-demo", shared_root / "dashboard-demo.done"
    with (shared_root / "dashboard-demo.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(shared, ignore_errors=True)  # a run that died half-way
            seeded_dir(shared)
            done.touch()
    shutil.copytree(shared, mine)
    return mine


@pytest.fixture(scope="session")
def served(demo_dir: Path) -> Iterator[Served]:
    with serve(demo_dir) as running:
        yield running
