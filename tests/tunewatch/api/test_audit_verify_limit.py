"""At most one ``GET /v1/audit?verify=true`` runs at once in a process; another is
answered at once with 429 ``audit_busy``, and a plain page of the log is not limited.

Each verification holds a pooled store connection and a worker thread for its whole scan
(9.4 s at 50k entries): 16 viewer requests at once exhausted the pool, the leader lease
failed to renew, and ``/readyz`` and scoring timed out for about 75 s."""

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
from tunewatch.api._audit_limit import BUSY_CODE
from tunewatch.store import AuditBreak

WAIT_S = 60  # a safety net for a broken build, never the thing a test measures


@pytest.fixture
def audited(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    daemon, tokens = make_daemon(tmp_path, trained, extra={"scheduler": {"enabled": False}})
    try:
        with BackgroundServer(daemon.app) as server:
            yield Running(daemon=daemon, server=server, tokens=tokens)
    finally:
        daemon.close()


class _HeldVerification:
    """The first verification of the chain, held until released; any later one runs
    through."""

    def __init__(self, verify: Callable[[], AuditBreak | None]) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self._verify = verify
        self._held = False
        self._lock = threading.Lock()

    def __call__(self) -> AuditBreak | None:
        with self._lock:
            hold, self._held = not self._held, True
        if hold:
            self.entered.set()
            assert self.release.wait(WAIT_S), "the held verification was never released"
        return self._verify()


@pytest.fixture
def held(audited: Running, monkeypatch: pytest.MonkeyPatch) -> Iterator[_HeldVerification]:
    store = audited.daemon.store
    holder = _HeldVerification(store.verify_audit)
    monkeypatch.setattr(store, "verify_audit", holder)
    try:
        yield holder
    finally:
        holder.release.set()  # never leave the daemon's worker threads waiting


def _audit(running: Running, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{running.url}/v1/audit", params=params, headers=running.auth("viewer"), timeout=WAIT_S
    )


def test_a_second_verification_is_429_audit_busy_while_pages_and_probes_answer(
    audited: Running, held: _HeldVerification
) -> None:
    answers: list[httpx.Response] = []
    first = threading.Thread(target=lambda: answers.append(_audit(audited, verify="true")))
    first.start()
    try:
        assert held.entered.wait(WAIT_S)  # the first verification is scanning, slot held

        for spelling in ("true", "1", "yes"):
            busy = _audit(audited, verify=spelling, limit="1")
            assert busy.status_code == 429, (spelling, busy.text[:300])
            assert busy.headers["content-type"].startswith("application/json")
            body = busy.json()
            assert set(body) == {"error", "code"} and body["code"] == BUSY_CODE, body
            assert int(busy.headers["retry-after"]) >= 1

        for params in ({}, {"limit": "1"}, {"verify": "false"}):  # a page is not limited
            page = _audit(audited, **params)
            assert page.status_code == 200, (params, page.text[:300])
            assert page.json()["entries"] and page.json()["chain_intact"] is None
        assert httpx.get(f"{audited.url}/readyz", timeout=WAIT_S).status_code == 200
        models = httpx.get(
            f"{audited.url}/v1/models/{MODEL}/versions",
            headers=audited.auth("viewer"),
            timeout=WAIT_S,
        )
        assert models.status_code == 200, models.text[:300]
    finally:
        held.release.set()
        first.join(WAIT_S)
    assert [a.status_code for a in answers] == [200]
    assert answers[0].json()["chain_intact"] is True
    again = _audit(audited, verify="true")  # the slot is free again
    assert again.status_code == 200 and again.json()["chain_intact"] is True


def test_a_refused_verification_frees_the_slot(audited: Running) -> None:
    unauthenticated = httpx.get(f"{audited.url}/v1/audit?verify=true", timeout=WAIT_S)
    assert unauthenticated.status_code == 401
    assert _audit(audited, verify="true", limit="0").status_code == 400
    verified = _audit(audited, verify="true")
    assert verified.status_code == 200 and verified.json()["chain_intact"] is True
