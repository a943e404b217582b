"""Imports into one model take turns on a lease a heartbeat keeps: one left by an
import killed with ``kill -9`` lapses within :data:`LEASE_TTL_S`, and the refusal says
so. Its time to live was sized to the longest step (3 min by default, 21 with
``candidate_timeout_s: 600``), and the refusal said another import "is in progress"."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tunewatch._errors import ConflictError
from tunewatch._import_lease import LEASE_TTL_S, ImportLease
from tunewatch.store import Store

WAIT_S = 30  # a safety net for a broken build, never the thing a test measures


@pytest.fixture
def store(store_url: str) -> Any:
    s = Store.open(store_url)
    try:
        yield s
    finally:
        s.close()


def _lease_name(store: Store, model: str) -> str:
    return ImportLease(store, model)._name


def test_a_lease_left_by_an_import_that_died_is_refused_saying_when_it_lapses(
    store: Store,
) -> None:
    assert LEASE_TTL_S <= 60
    assert store.acquire_lease(_lease_name(store, "credit"), "import:dead", ttl_s=LEASE_TTL_S)
    with pytest.raises(ConflictError) as refused, ImportLease(store, "credit"):
        pass
    assert refused.value.code == "import_in_progress"
    message = str(refused.value)
    assert "one died holding its lease" in message
    assert f"within {LEASE_TTL_S:g} s" in message


class _CountedRenewals:
    def __init__(self, store: Store, enough: int) -> None:
        self._renew = store.renew_lease
        self._enough = enough
        self.calls = 0
        self.renewed = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> bool:
        taken: bool = self._renew(*args, **kwargs)
        self.calls += 1
        if taken and self.calls >= self._enough:
            self.renewed.set()
        return taken


def test_an_import_keeps_its_lease_past_its_time_to_live_until_it_ends(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import's steps (a candidate check may take minutes) outlast the lease: a thread
    renews it meanwhile."""
    counted = _CountedRenewals(store, enough=4)  # renewed past 4/3 of its ttl
    monkeypatch.setattr(store, "renew_lease", counted)
    name = _lease_name(store, "credit")
    with ImportLease(store, "credit", ttl_s=1.5):  # a stall of 1 s still keeps it
        assert counted.renewed.wait(WAIT_S), f"renewed {counted.calls} times"
        assert not store.acquire_lease(name, "import:other", ttl_s=60)
        with pytest.raises(ConflictError):
            ImportLease(store, "credit").renew()
    assert store.acquire_lease(name, "import:other", ttl_s=60)  # released at the end
