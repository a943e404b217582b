"""A retention purge under a running ROC AUC (group-sequential DeLong) comparison. Each
look replays the test's earlier looks from the requests they consumed: with look 1's
requests purged, every later run logged "cannot look: DeLong needs both classes" and the
test stayed open for ever; with half of them purged, look 2 was stored as n = 400 but
tested 300 requests. The purge keeps an open DeLong test's consumed requests now, and a
test missing some (a store purged by an older version) is closed, naming the purge,
without a look."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.test_comparison_loop import Traffic, runner, traffic, write
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.comparison import ComparisonRunner, GuardrailSettings
from tunewatch.store import PurgeCounts
from tunewatch.store._schema import labels, outputs, requests

EVERY = 200  # requests per look
NO_RATIO = GuardrailSettings(max_memory_ratio=100.0, max_latency_p99_ratio=None)


def _daemon(data_dir: Path, trained: list[ExampleModel], store_url: str | None = None) -> Daemon:
    d, _ = make_daemon(
        data_dir,
        trained,
        store_url=store_url,
        extra={
            "scheduler": {"enabled": False},
            "models": [{"name": MODEL, "task": "binary", "objective": {"name": "roc_auc"}}],
        },
    )
    return d


def _loop(d: Daemon) -> ComparisonRunner:
    return runner(d, delong_look_every=EVERY, delong_looks=5, guardrails=NO_RATIO)


def _write(d: Daemon, t: Traffic, look: int, at: datetime) -> None:
    """The ``look``-th (from 0) ``EVERY`` labelled requests, v1's and v2's outputs."""
    part = slice(look * EVERY, (look + 1) * EVERY)
    write(
        d.store,
        ids=range(part.start, part.stop),
        x=t.x[part],
        y=t.y[part],
        answers={1: t.logistic[part], 2: t.gbm[part]},
        received_at=at,
    )


def _look_1(d: Daemon, t: Traffic) -> tuple[ComparisonRunner, datetime]:
    """Look 1 on requests received half an hour before the challenger was registered
    (within the clocks' margin), and 5 requests of then no test consumes (unlabelled);
    the cut-off of a purge of every one of them."""
    registered = max(v.created_at for v in d.store.list_versions(MODEL))
    old = registered - timedelta(minutes=30)
    _write(d, t, 0, old)
    unlabelled = slice(5 * EVERY, 5 * EVERY + 5)
    write(
        d.store,
        ids=range(unlabelled.start, unlabelled.stop),
        x=t.x[unlabelled],
        y=t.y[unlabelled],
        answers={1: t.logistic[unlabelled]},
        received_at=old,
        labelled=[False] * 5,
    )
    loop = _loop(d)
    [first] = [r for r in loop.run(MODEL) if r.kind == "delong"]
    assert first.look is not None and first.look.n == EVERY and first.status == "open"
    return loop, registered - timedelta(minutes=1)


def test_a_purge_keeps_an_open_delong_test_s_evidence_and_its_next_look_is_unchanged(
    store_url: str, trained: list[ExampleModel], tmp_path: Path
) -> None:
    t = traffic(trained, 5 * EVERY + 5, seed=3)
    looks = []
    for purged in (False, True):
        d = _daemon(tmp_path / f"purged-{purged}", trained, store_url if purged else None)
        try:
            loop, cut_off = _look_1(d, t)
            if purged:
                counts = d.store.purge_records(before=cut_off)
                # the unlabelled requests go; the 200 look 1 consumed stay, with theirs
                assert counts == PurgeCounts(requests=5, outputs=5, labels=0)
                assert d.store.count_requests(MODEL) == EVERY
            _write(d, t, 1, cut_off + timedelta(minutes=2))
            [second] = [r for r in loop.run(MODEL) if r.kind == "delong"]
            assert second.look is not None and second.status == "open", second.detail
            looks.append((second.look.n, second.look.estimate, second.look.p_value))
        finally:
            d.close()
    unpurged, purged_look = looks
    assert purged_look[0] == unpurged[0] == 2 * EVERY
    assert purged_look[1:] == pytest.approx(unpurged[1:], rel=1e-9)


@pytest.mark.parametrize("purged", ["every", "half"])
def test_a_delong_test_whose_consumed_requests_were_purged_is_closed_naming_the_purge(
    purged: str,
    store_url: str,
    trained: list[ExampleModel],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As by an older version's purge: ``every`` one of look 1's requests, or ``half``.
    Left open, the test never looked again (or stored a look of 400 on 300 requests)."""
    t = traffic(trained, 5 * EVERY + 5, seed=3)
    d = _daemon(tmp_path / "data", trained, store_url)
    try:
        loop, cut_off = _look_1(d, t)
        gone = [f"r{i}" for i in range(EVERY if purged == "every" else EVERY // 2)]
        with d.store.engine.begin() as conn:
            for table in (labels, outputs, requests):
                conn.execute(
                    sa.delete(table).where(table.c.model == MODEL, table.c.request_id.in_(gone))
                )
        _write(d, t, 1, cut_off + timedelta(minutes=2))

        with caplog.at_level(logging.WARNING, logger="tunewatch.comparison._runner"):
            [closed] = [r for r in loop.run(MODEL) if r.kind == "delong"]
        assert (closed.status, closed.action, closed.look) == ("closed", "closed", None)
        [reason] = closed.detail
        assert f"{len(gone)} of the {EVERY} requests" in reason and "retention" in reason
        [test] = loop.comparisons.list_tests(MODEL, kind="delong")
        assert (test.status, test.looks, test.n) == ("closed", 1, EVERY)
        assert test.outcome == {"action": "closed", "reason": reason}
        assert [look.n for look in loop.history(MODEL, 2)] == [EVERY]
        [logged] = [r for r in caplog.records if "closed" in r.getMessage()]
        assert f"model={MODEL}" in logged.getMessage() and reason in logged.getMessage()

        caplog.clear()
        _write(d, t, 2, cut_off + timedelta(minutes=3))
        with caplog.at_level(logging.WARNING, logger="tunewatch.comparison._runner"):
            later = [r for r in loop.run(MODEL) if r.kind == "delong"]
        assert all(r.look is None for r in later)  # it stays closed: no look
        assert not [r for r in caplog.records if "cannot look" in r.getMessage()]
        assert loop.comparisons.get_test(test.id).looks == 1
    finally:
        d.close()
