"""A decay verdict reads back only the windows of its horizon that can still change: the
figures of the settled ones (ended more than the maturity and a margin before now: no
label arriving since can count for them) are kept between runs
(:class:`DecayWindowCache`), a cold run reads one window at a time, and the verdict is
the one a cold run gives.

A simulated stream on a real SQLite store, the evaluator's and the labels' clocks
injected: requests (some written minutes after they were received), labels arriving in
time, after the maturity, and for requests long settled."""

from __future__ import annotations

import gc
import math
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.objectives import make_objective
from tests.tunewatch.test_evaluation import MODEL, _champion_daemon
from tunewatch import _decay_windows as decay_windows
from tunewatch._daemon import Daemon
from tunewatch._decay_windows import (
    SETTLE_MARGIN_S,
    DecayRows,
    DecayWindowCache,
    read_rows,
    window_figures,
)
from tunewatch._evaluation_decay import decay_verdict
from tunewatch._example import ExampleModel
from tunewatch.store import LabelItem, OutputRecord, RequestRecord, Store, Window
from tunewatch.store._schema import evaluations, labels, outputs, requests

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
        written up to a quarter of an hour late, a third up to 58 minutes: within the
        margin past a window's end and the maturity), then the labels arriving at
        ``now``."""
        start, self.now = self.now, self.now + by
        span = by.total_seconds()
        requests, outputs = [], []
        for offset in np.sort(self.rng.uniform(0.0, span, self.rng.poisson(span / 40))):
            rid = f"r{len(self.received)}"
            late = self.rng.choice([0.0, self.rng.uniform(0, 900), self.rng.uniform(900, 3500)])
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
        self.calls: list[tuple[datetime, datetime, int]] = []
        real = store.window

        def window(model: str, **kw: Any) -> Window:
            w = real(model, **kw)
            self.calls.append((kw["start"], kw["end"], w.n_rows))
            return w

        monkeypatch.setattr(store, "window", window)


def _verdicts(
    d: Daemon, cache: DecayWindowCache, version: int, spy: _Spy | None = None
) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]], list[tuple[Any, ...]]]:
    """The cached verdict at the stream's ``now``, a cold run's, and the cached run's
    reads (start, end, rows)."""
    model = d.store.get_model(MODEL)
    cfg = d.config.model_or_default(MODEL, model.task)
    objective = make_objective("accuracy", task=model.task)
    now = d.evaluator.clock()
    before = len(spy.calls) if spy else 0
    cached = decay_verdict(d.store, d.metrics, model, cfg, objective, now, version, cache=cache)
    reads = spy.calls[before:] if spy else []
    full = decay_verdict(d.store, d.metrics, model, cfg, objective, now, version)
    return cached, full, reads


def _first_edge(now: datetime) -> datetime:
    """Where the horizon at ``now`` begins: ``HORIZON_WINDOWS`` windows before the newest
    edge (a multiple of ``WINDOW_S`` from the epoch) at or before ``now``."""
    newest = now.timestamp() // WINDOW_S * WINDOW_S
    return datetime.fromtimestamp(newest, UTC) - HORIZON


def test_cached_decay_verdicts_equal_cold_runs_over_a_stream_of_runs(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _Stream(daemon, monkeypatch, seed=0)
    daemon.evaluator.clock = lambda: stream.now
    stream.advance(HORIZON, version=1)
    cache = DecayWindowCache()
    scored = 0
    for i in range(45):
        # a run every 20 minutes, once three hours apart (the scheduler was down)
        stream.advance(timedelta(hours=3) if i == 20 else STEP, version=1)
        cached, full, _ = _verdicts(daemon, cache, version=1)
        assert cached == full, f"run {i} at {stream.now}"
        windows = full[1]["windows"]
        scored += sum(w["value"] is not None for w in windows)
        ends = [datetime.fromisoformat(w["end"]).timestamp() for w in windows]
        assert all(end % WINDOW_S == 0 for end in ends), "windows on fixed edges"
    assert scored > 200  # the runs compared trends, not empty horizons


def test_a_cold_run_reads_a_span_at_a_time_and_later_runs_the_unsettled_windows(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _Stream(daemon, monkeypatch, seed=1)
    daemon.evaluator.clock = lambda: stream.now
    stream.advance(HORIZON + timedelta(minutes=7), version=1)  # between two edges
    monkeypatch.setattr(decay_windows, "READ_SPAN_S", 3 * WINDOW_S)  # a day, by default
    spy = _Spy(daemon.store, monkeypatch)
    cache = DecayWindowCache()
    _, _, reads = _verdicts(daemon, cache, version=1, spy=spy)
    first = _first_edge(stream.now)
    window = timedelta(seconds=WINDOW_S)
    assert reads[0][0] == first
    for (_, end, _), (start, _, _) in zip(reads, reads[1:], strict=False):
        assert end == start  # each window read once, in order
    *settled, (_, matured_end, _) = reads
    assert len(settled) > 1 and all(end - start <= 3 * window for start, end, _ in settled)
    # every request of the matured windows, and none newer
    assert sum(n for *_, n in reads) == stream.count_received(first, matured_end)
    assert matured_end + timedelta(seconds=MATURITY_S) <= stream.now
    settle = timedelta(seconds=WINDOW_S + MATURITY_S + SETTLE_MARGIN_S)
    for _ in range(12):
        stream.advance(STEP, version=1)
        cached, full, reads = _verdicts(daemon, cache, version=1, spy=spy)
        assert cached == full
        # the window settled since (if any) and those not settled yet
        assert reads and reads[0][0] >= stream.now - STEP - settle - window
        n = sum(n for *_, n in reads)
        assert n < stream.count_received(stream.now - HORIZON, stream.now) / 3


def test_a_new_champion_version_drops_the_kept_windows(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _Stream(daemon, monkeypatch, seed=2)
    daemon.evaluator.clock = lambda: stream.now
    stream.advance(HORIZON, version=1)
    spy = _Spy(daemon.store, monkeypatch)
    cache = DecayWindowCache()
    for _ in range(3):
        stream.advance(STEP, version=1)
        _verdicts(daemon, cache, version=1, spy=spy)
    stream.advance(timedelta(hours=4), version=2, role="external")
    cached, full, reads = _verdicts(daemon, cache, version=2, spy=spy)
    assert cached == full
    assert reads[0][0] == _first_edge(stream.now)  # the whole horizon again
    assert cached[1]["windows"], "version 2's matured windows"
    stream.advance(STEP, version=2, role="external")
    cached, full, reads = _verdicts(daemon, cache, version=2, spy=spy)
    assert cached == full
    assert reads[0][0] > _first_edge(stream.now)


def test_a_new_process_takes_the_settled_windows_of_the_stored_verdict(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new process or leader read the whole horizon again (2.59M requests: 21 s of
    CPU, the scoring p99 from 5 to 115-170 ms for half a minute): it takes the windows
    the newest stored verdict had settled, and reads only those settled since."""
    stream = _Stream(daemon, monkeypatch, seed=4)
    daemon.evaluator.clock = lambda: stream.now
    stream.advance(HORIZON + timedelta(minutes=7), version=1)
    [stored] = [r for r in daemon.evaluator.evaluate(MODEL) if r.kind == "decay"]
    before = datetime.fromisoformat(stored.payload["settled"]["before"])
    stream.advance(timedelta(hours=2), version=1)  # a window or two settled since
    spy = _Spy(daemon.store, monkeypatch)
    cached, full, reads = _verdicts(daemon, DecayWindowCache(), version=1, spy=spy)
    assert cached == full
    assert reads and reads[0][0] >= before
    assert sum(n for *_, n in reads) < stream.count_received(stream.now - HORIZON, stream.now) / 3


def test_a_rollback_starts_from_the_previous_champion_s_last_stored_verdict(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new champion's verdicts are the newest stored: after a rollback the old
    champion's first run read its whole horizon again (720 hourly windows: 2.7 s)."""
    stream = _Stream(daemon, monkeypatch, seed=8)
    daemon.evaluator.clock = lambda: stream.now
    stream.advance(HORIZON + timedelta(minutes=7), version=1)
    [v1] = [r for r in daemon.evaluator.evaluate(MODEL) if r.kind == "decay"]
    before = datetime.fromisoformat(v1.payload["settled"]["before"])
    stream.advance(timedelta(hours=2), version=2, role="external")
    daemon.store.add_evaluation(
        model=MODEL,
        version=2,
        kind="decay",
        status="ok",
        window_start=None,
        window_end=stream.now,
        payload=decay_verdict(
            daemon.store,
            daemon.metrics,
            daemon.store.get_model(MODEL),
            daemon.config.model_or_default(MODEL, "binary"),
            make_objective("accuracy", task="binary"),
            stream.now,
            2,
        )[1],
    )
    spy = _Spy(daemon.store, monkeypatch)
    cached, full, reads = _verdicts(daemon, DecayWindowCache(), version=1, spy=spy)
    assert cached == full
    assert reads and reads[0][0] >= before  # only the windows settled since v1's verdict


def test_a_stored_verdict_of_another_maturity_is_not_taken(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _Stream(daemon, monkeypatch, seed=5)
    daemon.evaluator.clock = lambda: stream.now
    stream.advance(HORIZON + timedelta(minutes=7), version=1)
    daemon.evaluator.evaluate(MODEL)
    model = daemon.store.get_model(MODEL)
    cfg = daemon.config.model_or_default(MODEL, model.task)
    decay = cfg.evaluation.decay.model_copy(update={"maturity_s": MATURITY_S / 2})
    cfg = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"decay": decay})})
    objective = make_objective("accuracy", task=model.task)
    spy = _Spy(daemon.store, monkeypatch)
    args = (daemon.store, daemon.metrics, model, cfg, objective, stream.now, 1)
    cached = decay_verdict(*args, cache=DecayWindowCache())
    assert spy.calls[0][0] == _first_edge(stream.now)  # every window read
    assert cached == decay_verdict(*args)


def test_the_kept_windows_hold_figures_and_a_cold_run_one_window_of_rows(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new process's first run read the whole horizon at once and kept every settled
    row (2.59M requests: 74 MiB kept, 269 MiB more RSS; 40 such models would have held
    2.9 GiB). It reads a window at a time and keeps a few numbers a window."""
    n = 24_000  # two thousand a window
    model = daemon.store.get_model(MODEL)
    ids = [f"r{i:06d}" for i in range(n)]
    _write_directly(daemon.store, T0, ids, every=HORIZON / n, n_features=len(model.feature_names))
    now = T0 + HORIZON + timedelta(minutes=7)
    cfg = daemon.config.model_or_default(MODEL, model.task)
    objective = make_objective("accuracy", task=model.task)

    def verdict(cache: DecayWindowCache | None) -> dict[str, Any]:
        return decay_verdict(
            daemon.store, daemon.metrics, model, cfg, objective, now, 1, cache=cache
        )[1]

    verdict(None)  # the statements compiled and cached, the series exported
    monkeypatch.setattr(decay_windows, "READ_SPAN_S", WINDOW_S)  # a day, by default
    spy = _Spy(daemon.store, monkeypatch)
    cache = DecayWindowCache()
    tracemalloc.start()
    try:
        gc.collect()  # what is kept, not garbage in reference cycles waiting for the
        before, _ = tracemalloc.get_traced_memory()  # collector (a chunk of rows: 205 KB)
        payload = verdict(cache)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(w["n"] for w in payload["windows"]) > n / 3  # labelled requests judged
    largest = max(n for *_, n in spy.calls)
    assert largest <= n / HORIZON_WINDOWS, f"a read of {largest} of the {n} requests"
    # every settled request's time, output and label were kept: 0.7 MiB here; what is
    # kept now (a few numbers a window) is lost among the store's caches (60 KiB)
    assert after - before < 256 * 2**10, f"kept {after - before} bytes for {n} requests"


def test_a_stored_verdict_settled_by_a_clock_ahead_counts_each_window_once(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verdict stored by a replica whose clock runs 2 h ahead settled windows that are
    not settled by this one's: seeded from it, a new leader read them again and listed
    each twice (a steeper slope, another projected crossing)."""
    stream = _Stream(daemon, monkeypatch, seed=6)
    stream.advance(HORIZON + timedelta(minutes=7), version=1)
    daemon.evaluator.clock = lambda: stream.now + timedelta(hours=2)
    daemon.evaluator.evaluate(MODEL)  # stored by the host ahead
    daemon.evaluator.clock = lambda: stream.now
    cached, full, _ = _verdicts(daemon, DecayWindowCache(), version=1)
    assert cached == full
    ends = [w["end"] for w in cached[1]["windows"]]
    assert len(ends) == len(set(ends))


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda figures, shown: figures.__setitem__(2, None), id="n_left_out-null"),
        pytest.param(lambda figures, shown: figures.__setitem__(2, "0"), id="n_left_out-text"),
        pytest.param(lambda figures, shown: shown.__setitem__("n", -60), id="n-negative"),
        pytest.param(lambda figures, shown: figures.__setitem__(1, 1), id="n_requests-below-n"),
        pytest.param(lambda figures, shown: shown.__setitem__("coverage", 0.5), id="coverage"),
        pytest.param(lambda figures, shown: figures.__setitem__(4, "x"), id="first-request"),
        pytest.param(lambda figures, shown: figures.__setitem__(0, 10**9), id="not-settled"),
    ],
)
def test_a_damaged_stored_verdict_is_read_again_not_raised_or_taken(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch, edit: Any
) -> None:
    """A hand-edited or damaged ``settled`` block raised out of every evaluation of the
    model (a null count), or was taken as it was (a negative count)."""
    stream = _Stream(daemon, monkeypatch, seed=7)
    daemon.evaluator.clock = lambda: stream.now
    stream.advance(HORIZON + timedelta(minutes=7), version=1)
    [stored] = [r for r in daemon.evaluator.evaluate(MODEL) if r.kind == "decay"]
    payload = stored.payload
    figures = payload["settled"]["windows"][-1]  # the newest settled window's
    end = datetime.fromtimestamp((figures[0] + 1) * WINDOW_S, UTC).isoformat()
    [shown] = [w for w in payload["windows"] if w["end"] == end]
    assert shown["n"] and figures[1]
    edit(figures, shown)
    with daemon.store.engine.begin() as conn:
        conn.execute(
            evaluations.update().where(evaluations.c.id == stored.id).values(payload=payload)
        )
    cached, full, _ = _verdicts(daemon, DecayWindowCache(), version=1)
    assert cached == full


def test_a_request_on_an_edge_of_a_fractional_window_counts_once() -> None:
    """With ``window_s`` 601.4 a request at a whole second on a window's edge was placed
    in one window by the cache and recomputed into the next by the figure: the
    evaluation raised "too many values to unpack" on every run until the window settled."""
    w, first = 601.4, 2_942_768  # 2026-01-30: 12 whole seconds on such edges
    times = np.arange(math.ceil(first * w), math.floor((first + 60) * w), dtype=np.float64)
    rows = DecayRows(
        times,
        np.full((times.size, 2), 0.5, np.float32),
        np.ones(times.size),
        times + 1.0,
    )
    objective = make_objective("accuracy", task="binary")
    figures = window_figures(
        rows, first, 60, window_s=w, maturity_s=60.0, objective=objective, regression=False
    )
    assert [f.number for f in figures] == list(range(first, first + 60))
    assert sum(f.value.n_requests for f in figures) == times.size


def _write_directly(
    store: Store, t0: datetime, ids: list[str], *, every: timedelta, n_features: int = 2
) -> None:
    """Requests ``ids`` of ``MODEL`` (of ``n_features``) from ``t0`` on, ``every`` apart,
    version 1 answering
    each (0.75 for class 1) and every other one labelled 1 at its time: written to the
    tables directly, the reads are under test."""
    at = [t0 + i * every for i in range(len(ids))]
    with store.engine.begin() as conn:
        conn.execute(
            requests.insert(),
            [
                {
                    "model": MODEL,
                    "request_id": rid,
                    "received_at": when,
                    "source": "infer",
                    "n_rows": 1,
                    "n_cols": n_features,
                    "inputs": np.zeros((1, n_features), np.float32).tobytes(),
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
        _write_directly(store, T0, ids, every=timedelta(seconds=1))
        tracemalloc.start()
        try:
            rows = read_rows(store, model, 1, T0, T0 + timedelta(days=1))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert rows.received_at.shape == (n,) and rows.outputs.shape == (n, 2)
    np.testing.assert_array_equal(rows.received_at, [when.timestamp() for when in at])
    assert int(np.isnan(rows.labels).sum()) == n // 2
    held = sum(a.nbytes for a in (rows.received_at, rows.outputs, rows.labels))
    # 1.3 MiB of arrays (the window's, then the version's rows) and a chunk of rows: 2.5
    # MiB; every row's objects were 14.6 MiB
    assert peak < 5 * 2**20, f"peak {peak / 2**20:.1f} MiB for {held / 2**20:.1f} MiB of rows"
