from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tunewatch.tuning_plan import MODEL
from tunewatch.store import Store


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    """An SQLite store holding ``MODEL`` (binary, features ``a`` and ``b``)."""
    s = Store.open(sqlite_url)
    s.ensure_model(name=MODEL, task="binary", feature_names=["a", "b"])
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def storage(tmp_path: Path) -> str:
    """An Optuna storage of the test's own."""
    return f"sqlite:///{tmp_path / 'optuna.db'}"
