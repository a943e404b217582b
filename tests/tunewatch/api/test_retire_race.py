"""Concurrent retires of one version: one retires it, the others find it retired
(``unchanged: true``), as concurrent promotions of one version answer — on SQLite and
PostgreSQL.

Each retire compared the version's ``stage_changed_at`` after its move with the one it
had read before: retires that all read the version in shadow were each answered
``unchanged: false``, while one audit entry and one ``stage_changed`` event were
written."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel

RETIRES = 4


class ReadTogether:
    """``func``, whose first ``n`` calls each wait, once they have read, until all ``n``
    have: every caller read before any went on to write."""

    def __init__(self, func: Callable[..., Any], n: int) -> None:
        self._func = func
        self._barrier = threading.Barrier(n, timeout=60)
        self._to_hold = n
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self._func(*args, **kwargs)
        with self._lock:
            hold, self._to_hold = self._to_hold > 0, self._to_hold - 1
        if hold:
            self._barrier.wait()
        return result


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Running]:
    """credit: v1 champion, v2 shadow."""
    d, tokens = make_daemon(
        tmp_path, trained, store_url=store_url, extra={"scheduler": {"enabled": False}}
    )
    with BackgroundServer(d.app) as server:
        yield Running(daemon=d, server=server, tokens=tokens)
    d.close()


def test_concurrent_retires_of_one_version_answer_one_changed(
    daemon: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every retire reads v2 (in shadow) before any moves it: one retires it, the others
    are answered ``unchanged: true``, and one entry and one event are written."""
    store = daemon.daemon.store
    monkeypatch.setattr(store, "get_version", ReadTogether(store.get_version, RETIRES))
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def retire(i: int) -> None:
        r = httpx.post(
            f"{daemon.url}/v1/models/{MODEL}/versions/2/retire",
            json={"reason": f"retire {i}"},
            headers=daemon.auth("operator"),
            timeout=60,
        )
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=retire, args=(i,)) for i in range(RETIRES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in answers] == [200] * RETIRES, [r.text for r in answers]
    assert sorted(r.json()["unchanged"] for r in answers) == [False] + [True] * (RETIRES - 1)
    assert {r.json()["stage"] for r in answers} == {"retired"}
    # the changed answer and the unchanged ones show the same row
    assert len({r.json()["stage_changed_at"] for r in answers}) == 1
    [entry] = store.audit_log(action="set_stage")
    assert (entry.target, entry.details["previous_stage"]) == (f"{MODEL}/v2", "shadow")
    assert len(store.list_events(type="stage_changed")) == 1
    assert store.get_version(MODEL, 2).stage == "retired"
    assert store.verify_audit() is None
