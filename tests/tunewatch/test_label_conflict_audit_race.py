"""A refused label retried concurrently (a load balancer retrying on another replica, or
two requests on one replica) is audited and evented once, as a sequential retry is: the
lookup of the actor's recent ``label_conflict`` entries and the append are one
transaction, serialised by the audit chain's head (each backend)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tunewatch.api._label_conflicts import LABEL_CONFLICT, audit_conflicts
from tunewatch.store import LabelItem, Store

MODEL = "a"
ACTOR = "labeller"
ROUNDS = 15  # refusals raced, each by two threads (the old read-then-append lost most)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    s.ensure_model(name=MODEL, task="binary", feature_names=["x"])
    try:
        yield s
    finally:
        s.close()


def _together(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` on their own threads, released at once; their results, in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _audited(store: Store) -> dict[str, int]:
    """How many ``label_conflict`` audit entries and events name each refused id."""
    seen: dict[str, int] = {}
    for e in store.audit_log(10_000, target=MODEL, action=LABEL_CONFLICT):
        for c in e.details["conflicts"]:
            seen[f"audit {c['request_id']}"] = seen.get(f"audit {c['request_id']}", 0) + 1
    for ev in store.list_events(model=MODEL, type=LABEL_CONFLICT, limit=10_000):
        for c in ev.payload["conflicts"]:
            seen[f"event {c['request_id']}"] = seen.get(f"event {c['request_id']}", 0) + 1
    return seen


def test_concurrent_retries_of_a_refusal_are_audited_once(store: Store) -> None:
    for i in range(ROUNDS):
        refused = [LabelItem(f"r{i}", 1.0, None)]

        def retry(refused: list[LabelItem] = refused) -> None:
            audit_conflicts(store, MODEL, ACTOR, refused)

        _together(retry, retry)
    expected = {f"{kind} r{i}": 1 for kind in ("audit", "event") for i in range(ROUNDS)}
    assert _audited(store) == expected
    assert store.verify_audit() is None


def test_concurrent_different_refusals_are_each_audited(store: Store) -> None:
    one, other = [LabelItem("r1", 1.0, None)], [LabelItem("r2", 0.0, None)]
    _together(
        lambda: audit_conflicts(store, MODEL, ACTOR, one),
        lambda: audit_conflicts(store, MODEL, ACTOR, other),
    )
    audit_conflicts(store, MODEL, ACTOR, one)  # a sequential retry: not audited again
    assert _audited(store) == {"audit r1": 1, "audit r2": 1, "event r1": 1, "event r2": 1}


def test_the_store_audits_a_refusal_once_under_concurrent_calls(store: Store) -> None:
    for i in range(ROUNDS):
        details = {"count": 1, "conflicts": [{"request_id": f"r{i}"}], "digest": f"d{i}"}

        def record(details: dict[str, Any] = details) -> Any:
            return store.audit_once(
                actor=ACTOR, action=LABEL_CONFLICT, target=MODEL, details=details, recent=20
            )

        (first, new_first), (second, new_second) = _together(record, record)
        assert sorted([new_first, new_second]) == [False, True]
        assert first.id == second.id  # the retry names the entry that recorded it
    assert _audited(store) == {
        f"{kind} r{i}": 1 for kind in ("audit", "event") for i in range(ROUNDS)
    }
    events = store.list_events(model=MODEL, type=LABEL_CONFLICT, limit=1)
    assert events[0].payload["actor"] == ACTOR
