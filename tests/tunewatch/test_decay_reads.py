"""A decay verdict reads back only the rows of its horizon that can still change: the
settled ones (received more than a window, the maturity and a margin before now: no label
arriving since can count for them) are kept between runs (:class:`DecayRowCache`), and
the verdict is the one a read of the whole horizon gives.

A simulated stream on a real SQLite store, the evaluator's and the labels' clocks
injected: requests (some written minutes after they were received), labels arriving in
time, after the maturity, and for requests long settled."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.objectives import make_objective
from tests.tunewatch.test_evaluation import MODEL, _champion_daemon
from tunewatch._daemon import Daemon
from tunewatch._decay_rows import SETTLE_MARGIN_S, DecayRowCache, read_rows
from tunewatch._evaluation_decay import decay_verdict
from tunewatch._example import ExampleModel
from tunewatch.store import LabelItem, OutputRecord, RequestRecord, Store, Window
from tunewatch.store._schema import labels, outputs, requests

WINDOW_S = 3600.0
MATURITY_S = 1800.0
HORIZON_WINDOWS = 12
HORIZON = timedelta(seconds=WINDOW_S * HORIZON_WINDOWS)
STEP = timedelta(minutes=20)  # between runs
TICK = timedelta(minutes=2)  # between arrivals
T0 = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    d = _champion_daemon(
        trained,
        tmp_path,
        {
            "window_rows": 100,
            "drift": {"enabled": False},
            "estimate": {"enabled": False},
            "decay": {
                "window_s": WINDOW_S,
                "maturity_s": MATURITY_S,
                "horizon_windows": HORIZON_WINDOWS,
            },
        },
        model={"objective": {"name": "accuracy"}},
    )
    d.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="test")
    yield d
    d.close()


class _Stream:
    """Requests and labels written as they arrive on a simulated clock (``now``), which
    also stamps the labels (the store's clock, injected)."""

    def __init__(self, d: Daemon, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
        self.d = d
        self.rng = np.random.default_rng(seed)
        self.now = T0
        self.received: dict[str, datetime] = {}
        self.unlabelled: list[str] = []
        monkeypatch.setattr("tunewatch.store._records.utcnow", lambda: self.now)

    def advance(self, by: timedelta, *, version: int, role: str = "champion") -> None:
        """``by`` more of the stream, in ticks of ``TICK``, answered by ``version``."""
        end = self.now + by
        while self.now < end:
            self._tick(min(TICK, end - self.now), version, role)

    def _tick(self, by: timedelta, version: int, role: str) -> None:
        """Requests received over the ``by`` ending at the new ``now`` (a third
        written up to a quarter of an hour late, a third up to two hours: within the
        margin past the window and the maturity), then the labels arriving at ``now``."""
        start, self.now = self.now, self.now + by
        span = by.total_seconds()
        requests, outputs = [], []
        for offset in np.sort(self.rng.uniform(0.0, span, self.rng.poisson(span / 40))):
            rid = f"r{len(self.received)}"
            late = self.rng.choice([0.0, self.rng.uniform(0, 900), self.rng.uniform(900, 7200)])
            at = start + timedelta(seconds=float(offset - late))
            self.received[rid] = at
            self.unlabelled.append(rid)
            p1 = float(self.rng.uniform())
            requests.append(
                RequestRecord(
                    model=MODEL,
                    request_id=rid,
                    received_at=at,
                    source="infer",
                    n_rows=1,
                    n_cols=8,
                    inputs=np.zeros((1, 8), np.float32).tobytes(),
                )
            )
            outputs.append(
                OutputRecord(
                    model=MODEL,
                    request_id=rid,
                    version=version,
                    role=role,  # type: ignore[arg-type]
                    latency_s=1e-4,
                    n_rows=1,
                    n_cols=2,
                    values=np.array([[1 - p1, p1]], np.float32).tobytes(),
                    created_at=at,
                )
            )
        self.d.store.write_records(requests, outputs)
        # up to a window and the maturity after its request a label can still count: in
        # time, a few later (counting for no window), some for requests long settled
        labelled, kept = [], []
        for rid in self.unlabelled:
            age = (self.now - self.received[rid]).total_seconds()
            chance = 0.08 if age <= WINDOW_S + MATURITY_S else 0.003
            (labelled if self.rng.uniform() < chance else kept).append(rid)
        self.unlabelled = kept
        self.d.store.add_labels(
            MODEL,
            [LabelItem(request_id=r, value=float(self.rng.uniform() < 0.8)) for r in labelled],
        )

    def count_received(self, start: datetime, end: datetime) -> int:
        return sum(start <= at < end for at in self.received.values())


class _Spy:
    """The rows each ``Store.window`` call returned, wrapping the real store's method."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[datetime | None, int]] = []
        real = store.window

        def window(model: str, **kw: Any) -> Window:
            w = real(model, **kw)
            self.calls.append((kw.get("start"), w.n_rows))
            return w

        monkeypatch.setattr(store, "window", window)


def _verdicts(
    d: Daemon, cache: DecayRowCache, version: int, spy: _Spy | None = None
) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]], list[tuple[Any, int]]]:
    """The cached verdict at the stream's ``now``, a full read's, and the cached run's
    reads."""
    model = d.store.get_model(MODEL)
    cfg = d.config.model_or_default(MODEL, model.task)
    objective = make_objective("accuracy", task=model.task)
    now = d.evaluator.clock()
    before = len(spy.calls) if spy else 0
    cached = decay_verdict(d.store, d.metrics, model, cfg, objective, now, version, cache=cache)
    reads = spy.calls[before:] if spy else []
    full = decay_verdict(d.store, d.metrics, model, cfg, objective, now, version)
    return cached, full, reads


def test_cached_decay_verdicts_equal_full_reads_over_a_stream_of_runs(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _Stream(daemon, monkeypatch, seed=0)
    daemon.evaluator.clock = lambda: stream.now
    stream.advance(HORIZON, version=1)
    cache = DecayRowCache()
    scored = 0
    for i in range(45):
        # a run every 20 minutes, once three hours apart (the scheduler was down)
        stream.advance(timedelta(hours=3) if i == 20 else STEP, version=1)
        cached, full, _ = _verdicts(daemon, cache, version=1)
        assert cached == full, f"run {i} at {stream.now}"
        scored += sum(w["value"] is not None for w in full[1]["windows"])
    assert scored > 200  # the runs compared trends, not empty horizons


def test_runs_after_the_first_read_only_the_unsettled_span(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _Stream(daemon, monkeypatch, seed=1)
    daemon.evaluator.clock = lambda: stream.now
    stream.advance(HORIZON, version=1)
    spy = _Spy(daemon.store, monkeypatch)
    cache = DecayRowCache()
    _, _, reads = _verdicts(daemon, cache, version=1, spy=spy)
    assert [n for _, n in reads] == [stream.count_received(stream.now - HORIZON, stream.now)]
    unsettled = timedelta(seconds=WINDOW_S + MATURITY_S + SETTLE_MARGIN_S + 1)
    for _ in range(12):
        stream.advance(STEP, version=1)
        cached, full, reads = _verdicts(daemon, cache, version=1, spy=spy)
        assert cached == full
        [(_, n)] = reads
        assert n <= stream.count_received(stream.now - STEP - unsettled, stream.now)
        assert n < stream.count_received(stream.now - HORIZON, stream.now) / 3


def test_a_new_champion_version_drops_the_cached_rows(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _Stream(daemon, monkeypatch, seed=2)
    daemon.evaluator.clock = lambda: stream.now
    stream.advance(HORIZON, version=1)
    spy = _Spy(daemon.store, monkeypatch)
    cache = DecayRowCache()
    for _ in range(3):
        stream.advance(STEP, version=1)
        _verdicts(daemon, cache, version=1, spy=spy)
    stream.advance(timedelta(hours=4), version=2, role="external")
    cached, full, reads = _verdicts(daemon, cache, version=2, spy=spy)
    assert cached == full
    assert [start for start, _ in reads] == [stream.now - HORIZON]  # the whole horizon again
    assert cached[1]["windows"], "version 2's matured windows"
    stream.advance(STEP, version=2, role="external")
    cached, full, reads = _verdicts(daemon, cache, version=2, spy=spy)
    assert cached == full
    [(start, _)] = reads
    assert start is not None and start > stream.now - HORIZON


def test_a_decay_read_holds_its_arrays_not_objects_per_request(store_url: str) -> None:
    """The first decay read of a process reads the whole horizon: it held every row of
    the statement as Python objects and a small array per request before joining them,
    about 1 KB a request (1M requests: 1 GiB and 168 s). It streams them in chunks now,
    holding the arrays it returns and one chunk."""
    n = 20_000
    at = [T0 + timedelta(seconds=i) for i in range(n)]
    ids = [f"request-{i:06d}" for i in range(n)]
    with Store.open(store_url) as store:
        model = store.ensure_model(name=MODEL, task="binary", feature_names=["a", "b"])
        with store.engine.begin() as conn:  # written directly: the read is under test
            conn.execute(
                requests.insert(),
                [
                    {
                        "model": MODEL,
                        "request_id": rid,
                        "received_at": when,
                        "source": "infer",
                        "n_rows": 1,
                        "n_cols": 2,
                        "inputs": np.zeros((1, 2), np.float32).tobytes(),
                    }
                    for rid, when in zip(ids, at, strict=True)
                ],
            )
            conn.execute(
                outputs.insert(),
                [
                    {
                        "model": MODEL,
                        "request_id": rid,
                        "version": 1,
                        "role": "champion",
                        "n_rows": 1,
                        "n_cols": 2,
                        "values": np.float32([[0.25, 0.75]]).tobytes(),
                        "created_at": when,
                    }
                    for rid, when in zip(ids, at, strict=True)
                ],
            )
            conn.execute(
                labels.insert(),
                [
                    {"model": MODEL, "request_id": rid, "value": 1.0, "received_at": when}
                    for rid, when in zip(ids[::2], at[::2], strict=True)
                ],
            )
        tracemalloc.start()
        try:
            rows, width = read_rows(store, model, 1, T0, T0 + timedelta(days=1))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(rows) == n and width == 2
    np.testing.assert_array_equal(rows.received_at, [when.timestamp() for when in at])
    assert int(np.isnan(rows.labels).sum()) == n // 2
    held = sum(a.nbytes for a in (rows.received_at, rows.outputs, rows.labels))
    # 1.3 MiB of arrays (the window's, then the version's rows) and a chunk of rows: 2.5
    # MiB; every row's objects were 14.6 MiB
    assert peak < 5 * 2**20, f"peak {peak / 2**20:.1f} MiB for {held / 2**20:.1f} MiB of rows"
