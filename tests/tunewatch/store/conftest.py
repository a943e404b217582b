"""Fixtures for the store contract suite (runs every test on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tunewatch.store import Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def model_store(store: Store) -> Store:
    """A store with model ``m`` (binary, two features) registered."""
    store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    return store
