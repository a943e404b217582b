"""The dashboard scenario: the demo's store, served by a fresh daemon, with tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard.scenario import Served, seed_sequential_test, serve
from tests.demo_run import copy_of_demo


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the store the run's one ``tunewatch demo`` left (``tests/demo_run.py``),
    with a sequential test that narrows over 200 looks."""
    return seed_sequential_test(copy_of_demo(tmp_path_factory, "dashboard").data_dir)


@pytest.fixture(scope="session")
def served(demo_dir: Path) -> Iterator[Served]:
    with serve(demo_dir) as running:
        yield running
