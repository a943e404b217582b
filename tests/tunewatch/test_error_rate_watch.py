"""A new champion failing on a share of its requests is rolled back by the watch.

A champion's failed runs (422 ``non_finite_output``, ``run_failed``; 503 ``run_timeout``)
left nothing in the store: the rollback watch compares realised losses on the requests
it answered, so a promoted version failing on 2% of requests served them errors for
good. The recorder now counts the champion's runs and failures too, and the watch rolls
back once they are evidence, valid at every look, that its failure rate is above
``guardrails.max_error_rate`` (:func:`shadow.stats.failure_rate_look`)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.test_comparison_loop import copy_daemon, runner
from tests.tunewatch.test_error_rate_guardrail import (
    TAIL,
    infer_rows,
    nan_tail_like,
    wait_for_runs,
)
from tunewatch import _governance as governance
from tunewatch._background import BackgroundServer
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data
from tunewatch.store import RunTally


@pytest.fixture
def nan_champion(tmp_path: Path, trained: list[ExampleModel]) -> Iterator[Daemon]:
    """The model answering NaN past x0 = 2 as champion v1, the gbm in shadow as v2."""
    champion = nan_tail_like(trained[0])
    d, tokens = make_daemon(tmp_path / "data", [champion, trained[1]])
    d.tokens_for_test = tokens  # type: ignore[attr-defined]
    yield d
    d.close()


def test_the_champion_s_runs_are_counted_with_the_failed_ones(nan_champion: Daemon) -> None:
    x, _ = example_data(40, seed=5)
    x[:, 0] = np.clip(x[:, 0], -2.0, 2.0)
    x[::10, 0] = TAIL
    token = nan_champion.tokens_for_test["scorer"]  # type: ignore[attr-defined]
    with BackgroundServer(nan_champion.app) as server:
        codes = infer_rows(server.url, token, x)
        tally = wait_for_runs(nan_champion, 1, 40, "champion")
    assert codes == ["non_finite_output" if i % 10 == 0 else 200 for i in range(40)]
    assert tally == RunTally(
        model=MODEL,
        version=1,
        role="champion",
        runs=40,
        failures=4,
        last_failure="non_finite_output",
    )


@pytest.fixture(scope="module")
def template(trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template")
    d, _ = make_daemon(path, trained)
    d.close()
    return path


def _count(d: Daemon, runs: int, failures: int) -> None:
    """v2's runs as champion, as the recorder counts them."""
    d.store.write_records(
        [],
        [],
        tallies=[
            RunTally(
                model=MODEL,
                version=2,
                role="champion",
                runs=runs,
                failures=failures,
                last_failure="non_finite_output" if failures else None,
            )
        ],
    )


@pytest.mark.parametrize(
    ("before", "during", "action"),
    [
        ((0, 0), (300, 6), "rolled_back"),
        ((0, 0), (2000, 1), "none"),
        ((100, 50), (100, 0), "none"),
    ],
    ids=["two_percent", "one_in_two_thousand", "failures_before_the_watch"],
)
def test_the_watch_rolls_back_a_champion_failing_past_the_limit(
    template: Path,
    tmp_path: Path,
    before: tuple[int, int],
    during: tuple[int, int],
    action: str,
) -> None:
    """Counted from the promotion: 6 failures in 300 runs roll back; 1 in 2,000 (under
    the 0.001 limit) does not, nor do failures of an earlier stint as champion."""
    d = copy_daemon(template, tmp_path / "data")
    try:
        _count(d, *before)
        outcome = governance.promote(d.store, d.config, MODEL, 2, actor="test", reason="try v2")
        assert outcome.status == "promoted"
        loop = runner(d)
        [started] = [r for r in loop.run(MODEL) if r.kind == "rollback_watch"]
        assert started.action == "none"
        _count(d, *during)
        [watch] = [r for r in loop.run(MODEL) if r.kind == "rollback_watch"]
        assert watch.action == action
        champion = d.store.champion(MODEL)
        assert champion is not None
        if action == "none":
            assert champion.version == 2
            return
        assert champion.version == 1 and d.store.get_version(MODEL, 2).stage == "rolled_back"
        [event] = d.store.list_events(model=MODEL, type="rollback_triggered")
        assert event.payload["failed_runs"] == {
            "failures": 6,
            "runs": 300,
            "limit": 0.001,
            "last_failure": "non_finite_output",
        }
        [reason] = watch.detail
        assert reason == (
            f"rollback watch {watch.test_id}: v2 failed 6 of its 300 runs as champion since "
            "its promotion (0.02; limit `max_error_rate` 0.001), the last with "
            "`non_finite_output`"
        )
    finally:
        d.close()


def _watch(d: Daemon, loop: Any) -> Any:
    [watch] = [r for r in loop.run(MODEL) if r.kind == "rollback_watch"]
    return watch


def test_failures_before_the_watch_s_first_run_are_counted(template: Path, tmp_path: Path) -> None:
    """The watch's first run comes up to ``interval_s`` after the promotion: counted from
    there, 30 failures in the first 300 runs and 300 clean runs after rolled nothing back."""
    d = copy_daemon(template, tmp_path / "data")
    try:
        outcome = governance.promote(d.store, d.config, MODEL, 2, actor="test", reason="try v2")
        assert outcome.status == "promoted"
        _count(d, 300, 30)
        loop = runner(d)
        _count(d, 300, 0)
        assert _watch(d, loop).action == "rolled_back"
        [event] = d.store.list_events(model=MODEL, type="rollback_triggered")
        assert event.payload["failed_runs"]["runs"] == 600
    finally:
        d.close()


def test_the_watch_looks_on_after_the_run_counts_restart(
    template: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store downgraded below revision 0020 and upgraded again counts runs afresh, fewer
    than at the promotion: the watch raised on the negative difference and stopped
    looking at all (loss test included). It counts from zero instead."""
    d = copy_daemon(template, tmp_path / "data")
    try:
        _count(d, 800, 0)
        outcome = governance.promote(d.store, d.config, MODEL, 2, actor="test", reason="try v2")
        assert outcome.status == "promoted"
        loop = runner(d)
        assert _watch(d, loop).action == "none"
        with d.store.engine.begin() as conn:  # what the downgrade and upgrade leave
            conn.execute(sa.text("DELETE FROM run_tallies"))
        _count(d, 100, 10)
        watch = _watch(d, loop)
        assert watch.action == "rolled_back"
        assert "failed 10 of its 100 runs" in watch.detail[0]
        assert "counting from zero" in caplog.text
    finally:
        d.close()


def _hold_write_lock(db: Path, held: threading.Event, release: threading.Event) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        release.wait(30)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def _send_all(
    url: str, token: str, x: np.ndarray, refused: threading.Event
) -> Counter[object]:
    """Send every row as a request, 32 at a time; ``refused`` is set at the first 503."""
    codes: Counter[object] = Counter()
    limit = asyncio.Semaphore(32)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(i: int) -> None:
            body = {
                "id": f"s{i}",
                "inputs": [
                    {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": x[i].tolist()}
                ],
            }
            async with limit:
                r = await client.post(
                    f"{url}/v2/models/{MODEL}/infer",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                )
            code = r.status_code if r.status_code == 200 else r.json()["code"]
            if code == "store_unavailable":
                refused.set()  # the stall has done its work: end it
            codes[code] += 1

        await asyncio.gather(*(one(i) for i in range(len(x))))
    return codes


def test_the_champion_s_runs_refused_by_the_recording_bound_are_counted(
    tmp_path: Path, trained: list[ExampleModel]
) -> None:
    """While the store stalls, requests past ``recording.max_pending_bytes`` are answered
    503 unrecorded: their runs were not counted while the failed ones were (5 failures of
    1,000 runs read as 5 of 20, and a champion failing on half the limit was rolled
    back). Every run is counted now, and the watch leaves it serving."""
    champion = nan_tail_like(trained[0])
    data = tmp_path / "data"
    d, tokens = make_daemon(
        data,
        [champion, trained[1]],
        extra={"recording": {"max_pending_bytes": 16_384}},
    )
    try:
        n = 400
        x, _ = example_data(n, seed=5)
        x[:, 0] = np.clip(x[:, 0], -2.0, 2.0)
        x[::200, 0] = TAIL  # 2 of 400 fail: 0.5%, half the limit below
        held, release = threading.Event(), threading.Event()
        locker = threading.Thread(
            target=_hold_write_lock, args=(data / "tunewatch.db", held, release)
        )
        with BackgroundServer(d.app) as server:
            locker.start()
            assert held.wait(10)
            try:
                codes = asyncio.run(_send_all(server.url, tokens["scorer"], x, release))
            finally:
                release.set()
                locker.join()
            assert codes["store_unavailable"] > 0 and codes["non_finite_output"] == 2
            tally = wait_for_runs(d, 1, n, "champion")
        assert (tally.runs, tally.failures) == (n, 2)
    finally:
        d.close()
