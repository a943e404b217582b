"""The dashboard scenario: the demo's store, served by a fresh daemon, with tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard.scenario import Served, seeded_dir, serve


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store left by ``tunewatch demo`` (the whole loop, ~40 s, once per session)."""
    return seeded_dir(tmp_path_factory.mktemp("dashboard") / "demo")


@pytest.fixture(scope="session")
def served(demo_dir: Path) -> Iterator[Served]:
    with serve(demo_dir) as running:
        yield running
