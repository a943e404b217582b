from __future__ import annotations

import gc
import logging
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from shadow_models import N_FEATURES, Data, Exported

from shadow import LoadedVersion, OnnxModel, ShadowJob, ShadowQueue, ShadowResult
from shadow._jobs import FailureLog

WAIT_S = 5.0  # upper bound for Event waits; tests never sleep


def challenger(exported: Exported, version: int) -> LoadedVersion:
    return LoadedVersion(version=version, model=exported.model, hyperparameter_set="hp")


def job(request_id: str, x: np.ndarray, *challengers: LoadedVersion) -> ShadowJob:
    return ShadowJob(model="m", request_id=request_id, x=x, challengers=challengers)


class Collector:
    """Collects results (however the worker batches them) until ``expected`` arrived."""

    def __init__(self, expected: int) -> None:
        self.results: list[ShadowResult] = []
        self._expected = expected
        self.done = threading.Event()

    def __call__(self, results: Sequence[ShadowResult]) -> None:
        self.results.extend(results)
        if len(self.results) >= self._expected:
            self.done.set()


def test_every_challenger_scores_the_job_and_results_arrive_together(
    logistic: Exported, boosting: Exported, data: Data
) -> None:
    x = data.x_holdout[:4].astype(np.float32)
    collect = Collector(expected=2)
    with ShadowQueue(maxsize=4, on_result=collect) as q:
        assert q.submit(job("r1", x, challenger(logistic, 2), challenger(boosting, 3)))
        assert collect.done.wait(WAIT_S)
    batch = collect.results
    assert [r.version for r in batch] == [2, 3]
    for result, exported in zip(batch, (logistic, boosting), strict=True):
        assert result.error is None and result.request_id == "r1" and result.model == "m"
        assert result.latency_s is not None and result.latency_s > 0
        assert result.values is not None and result.values.dtype == np.float32
        np.testing.assert_array_equal(result.values, exported.model.primary(exported.model.run(x)))
    assert q.processed == 1 and q.errors == 0 and q.depth == 0


def test_full_queue_drops_new_jobs_without_blocking_and_counts_them(
    logistic: Exported,
) -> None:
    entered = threading.Event()
    release = threading.Event()
    seen: list[str] = []

    def blocked(results: Sequence[ShadowResult]) -> None:
        seen.extend(r.request_id for r in results)
        entered.set()
        assert release.wait(WAIT_S)

    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    q = ShadowQueue(maxsize=2, on_result=blocked, workers=1)
    q.start()
    try:
        assert q.submit(job("busy", x, challenger(logistic, 2)))
        assert entered.wait(WAIT_S)  # the only worker is now stuck in on_result
        assert q.submit(job("a", x, challenger(logistic, 2)))
        assert q.submit(job("b", x, challenger(logistic, 2)))
        assert q.depth == 2
        assert not q.submit(job("dropped-1", x, challenger(logistic, 2)))
        assert not q.submit(job("dropped-2", x, challenger(logistic, 2)))
        assert q.dropped == 2 and q.depth == 2
    finally:
        release.set()
        q.close(timeout=WAIT_S)
    assert seen == ["busy", "a", "b"]
    assert q.processed == 3 and q.depth == 0 and not q.running


def test_failing_challenger_becomes_error_result_and_worker_survives(
    logistic: Exported, caplog: pytest.LogCaptureFixture
) -> None:
    collect = Collector(expected=2)
    wrong_width = np.zeros((1, N_FEATURES + 2), dtype=np.float32)
    good = np.zeros((1, N_FEATURES), dtype=np.float32)
    with caplog.at_level(logging.ERROR, logger="shadow"):
        with ShadowQueue(maxsize=4, on_result=collect) as q:
            q.submit(job("bad", wrong_width, challenger(logistic, 2)))
            q.submit(job("good", good, challenger(logistic, 2)))
            assert collect.done.wait(WAIT_S)
    bad, ok = collect.results
    assert bad.values is None and bad.error is not None and "InvalidInputError" in bad.error
    assert ok.error is None and ok.values is not None
    assert q.errors == 1 and q.processed == 2
    failure = next(r for r in caplog.records if "request=bad" in r.getMessage())
    assert failure.exc_info is not None  # logged with its traceback


def test_a_challenger_failing_every_job_is_logged_once_per_version_and_code(
    logistic: Exported, caplog: pytest.LogCaptureFixture
) -> None:
    """Each failed shadow run was logged with its traceback: a challenger failing every
    request it shadows wrote one per request (thousands a second under load, on the
    shadow workers' CPU share). The first of each version and code is logged; the rest are
    error results only (tunewatch counts them in ``tunewatch_run_failures_total``)."""
    collect = Collector(expected=40)
    wrong_width = np.zeros((1, N_FEATURES + 2), dtype=np.float32)
    with caplog.at_level(logging.ERROR, logger="shadow"):
        with ShadowQueue(maxsize=64, on_result=collect) as q:
            for i in range(20):
                q.submit(
                    job(f"bad{i}", wrong_width, challenger(logistic, 2), challenger(logistic, 3))
                )
            assert collect.done.wait(WAIT_S)
    assert sum(r.error is not None for r in collect.results) == 40
    logged = [r for r in caplog.records if "shadow scoring failed" in r.getMessage()]
    assert len(logged) == 2, [r.getMessage() for r in logged]
    assert all(r.exc_info is not None for r in logged)
    assert {"version=2" in r.getMessage() for r in logged} == {True, False}
    assert all("0 more of this version with this code" in r.getMessage() for r in logged)


def test_a_failure_log_logs_a_key_again_after_its_interval_with_what_it_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logged once for the process's life, a second failure episode days later wrote no
    line at all: the first of each version and code is logged, then one an interval."""
    now = [0.0]
    failures = FailureLog(every_s=60.0, clock=lambda: now[0])
    bad = job("r", np.zeros((1, 1), np.float32))
    with caplog.at_level(logging.ERROR, logger="shadow"):
        for t in (0.0, 10.0, 59.0, 61.0, 62.0, 200.0):
            now[0] = t
            failures.failed(bad, 2, "run_failed", RuntimeError("boom"))
        failures.failed(bad, 2, "run_timeout", RuntimeError("slow"))  # another code
        failures.failed(bad, 3, "run_failed", RuntimeError("boom"))  # another version
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 5
    assert [m.split("(")[1].split(" more")[0] for m in messages] == ["0", "2", "1", "0", "0"]
    assert all(r.exc_info is not None for r in caplog.records)


def test_failing_on_result_is_logged_counted_and_worker_survives(
    logistic: Exported, caplog: pytest.LogCaptureFixture
) -> None:
    done = threading.Event()
    failed = threading.Event()
    calls: list[list[str]] = []

    def flaky(results: Sequence[ShadowResult]) -> None:
        ids = [r.request_id for r in results]
        calls.append(ids)
        if "first" in ids:
            failed.set()
            raise RuntimeError("store unavailable")
        done.set()

    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    with caplog.at_level(logging.ERROR, logger="shadow"):
        with ShadowQueue(maxsize=4, on_result=flaky) as q:
            q.submit(job("first", x, challenger(logistic, 2)))
            assert failed.wait(WAIT_S)
            q.submit(job("second", x, challenger(logistic, 2)))
            assert done.wait(WAIT_S)
    assert calls == [["first"], ["second"]]
    assert q.callback_errors == 1 and q.errors == 1 and q.processed == 2
    assert any("store unavailable" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_close_drains_queued_jobs_then_refuses_new_ones(logistic: Exported) -> None:
    collect = Collector(expected=10)
    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    q = ShadowQueue(maxsize=20, on_result=collect, workers=2)
    q.start()
    for i in range(10):
        assert q.submit(job(f"r{i}", x, challenger(logistic, 2)))
    q.close(timeout=WAIT_S)
    assert q.processed == 10 and len(collect.results) == 10
    assert not q.running
    assert not q.submit(job("late", x, challenger(logistic, 2)))
    assert q.dropped == 1


def test_challenger_with_other_input_dtype_gets_a_cast_copy(logistic: Exported, data: Data) -> None:
    collect = Collector(expected=1)
    x64 = data.x_holdout[:2]
    with ShadowQueue(maxsize=1, on_result=collect) as q:
        q.submit(job("r", x64, challenger(logistic, 2)))
        assert collect.done.wait(WAIT_S)
    (result,) = collect.results
    assert result.error is None


def test_a_challenger_output_float32_cannot_hold_is_an_error_not_inf(data: Data) -> None:
    """A float64 challenger's output past float32's range was recorded as inf."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "factor"], ["y"])],
        "scaled",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, N_FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None, N_FEATURES])],
        [helper.make_tensor("factor", TensorProto.DOUBLE, [], [10.0])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    scaled = LoadedVersion(
        version=2, model=OnnxModel.from_bytes(proto.SerializeToString()), hyperparameter_set="hp"
    )
    big = np.zeros((1, N_FEATURES), dtype=np.float32)
    big[0, 3] = 3e38  # scored 3e39
    fits = big / 10
    collect = Collector(expected=2)
    with ShadowQueue(maxsize=2, on_result=collect) as q:
        q.submit_many([job("big", big, scaled), job("fits", fits, scaled)])
        assert collect.done.wait(WAIT_S)
    results = {r.request_id: r for r in collect.results}
    assert results["big"].values is None and results["big"].error is not None
    assert "float32" in results["big"].error and "e+39 at index [0, 3]" in results["big"].error
    assert results["fits"].error is None and results["fits"].values is not None
    assert np.isfinite(results["fits"].values).all()


@pytest.mark.parametrize(("maxsize", "workers"), [(0, 1), (1, 0)], ids=["maxsize", "workers"])
def test_constructor_refuses_non_positive_sizes(maxsize: int, workers: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        ShadowQueue(maxsize=maxsize, workers=workers, on_result=lambda results: None)


def test_backlog_is_scored_in_one_batch_with_one_latency_probe(logistic: Exported) -> None:
    entered = threading.Event()
    release = threading.Event()
    batches: list[list[ShadowResult]] = []

    def collect(results: Sequence[ShadowResult]) -> None:
        batches.append(list(results))
        entered.set()
        assert release.wait(WAIT_S)

    rng = np.random.default_rng(3)
    rows = [rng.normal(size=(n, N_FEATURES)).astype(np.float32) for n in (1, 1, 3, 2, 1)]
    q = ShadowQueue(maxsize=10, on_result=collect, workers=1)
    q.start()
    try:
        assert q.submit(job("first", rows[0], challenger(logistic, 2)))
        assert entered.wait(WAIT_S)
        for i, x in enumerate(rows[1:]):
            assert q.submit(job(f"r{i}", x, challenger(logistic, 2)))
    finally:
        release.set()
        q.close(timeout=WAIT_S)
    assert [len(b) for b in batches] == [1, 4]
    backlog = batches[1]
    assert backlog[0].latency_s is not None  # the probe: scored alone
    assert all(r.latency_s is None for r in backlog[1:])  # batched: a shared cost
    for result, x in zip(backlog, rows[1:], strict=True):
        expected = logistic.model.primary(logistic.model.run(x))
        assert result.values is not None
        np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-6)


def test_submit_many_takes_what_fits_in_order_and_counts_the_rest(logistic: Exported) -> None:
    entered = threading.Event()
    release = threading.Event()
    seen: list[str] = []

    def blocked(results: Sequence[ShadowResult]) -> None:
        seen.extend(r.request_id for r in results)
        entered.set()
        assert release.wait(WAIT_S)

    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    q = ShadowQueue(maxsize=3, on_result=blocked, workers=1)
    q.start()
    try:
        assert q.submit(job("busy", x, challenger(logistic, 2)))
        assert entered.wait(WAIT_S)
        names = ["a", "b", "c", "dropped-1", "dropped-2"]
        assert q.submit_many([job(n, x, challenger(logistic, 2)) for n in names]) == 3
        assert q.depth == 3 and q.dropped == 2
        assert q.submit_many([job("dropped-3", x, challenger(logistic, 2))]) == 0
        assert q.dropped == 3
    finally:
        release.set()
        q.close(timeout=WAIT_S)
    assert seen == ["busy", "a", "b", "c"]  # one hand-off, scored together, in order
    assert q.processed == 4 and q.depth == 0
    assert q.submit_many([job("closed", x, challenger(logistic, 2))]) == 0


def _burn(cpu_s: float) -> None:
    """Spend ``cpu_s`` of this thread's CPU time."""
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass


def test_cpu_share_holds_one_drain_while_resting_and_sheds_the_rest(logistic: Exported) -> None:
    drained = threading.Event()
    batches: list[list[str]] = []
    refused: list[tuple[str, str]] = []

    def costly(results: Sequence[ShadowResult]) -> None:
        batches.append([r.request_id for r in results])
        _burn(0.004)  # 4 ms of CPU at a 0.1 % share: 4 s of budget, 1 s of it credit
        drained.set()

    def on_drop(jobs: Sequence[ShadowJob], reason: str) -> None:
        refused.extend((j.request_id, reason) for j in jobs)

    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    q = ShadowQueue(maxsize=8, on_result=costly, max_batch=4, cpu_share=0.001, on_drop=on_drop)
    q.start()
    try:
        assert q.submit(job("first", x, challenger(logistic, 2)))
        assert drained.wait(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while not q.resting and time.monotonic() < deadline:
            time.sleep(0.001)
        assert q.resting
        names = [f"r{i}" for i in range(10)]
        assert q.submit_many([job(n, x, challenger(logistic, 2)) for n in names]) == 4
        assert not q.submit(job("late", x, challenger(logistic, 2)))
        assert q.shed == 5 and q.dropped == 2 and q.depth == 4
        assert (
            refused
            == [
                *[(n, "cpu_share") for n in names[4:8]],  # past one drain's worth
                *[(n, "queue_full") for n in names[8:]],  # past maxsize, whatever the share
                ("late", "cpu_share"),
            ]
        )
    finally:
        q.close(timeout=WAIT_S)  # wakes the resting worker, which scores what it holds
    assert batches == [["first"], names[:4]]
    assert q.processed == 5
    assert q.cpu_seconds >= 2 * 0.004  # both drains' CPU, counted with or without a share


def test_cpu_share_bounds_the_workers_cpu_under_a_steady_stream(logistic: Exported) -> None:
    worker_cpu: list[float] = []

    def costly(results: Sequence[ShadowResult]) -> None:
        _burn(0.002)
        worker_cpu.append(time.thread_time())  # the worker thread's CPU since it started

    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    q = ShadowQueue(maxsize=10_000, on_result=costly, max_batch=4, cpu_share=0.1)
    q.start()
    offered = 0
    began = time.monotonic()
    try:
        while time.monotonic() - began < 1.5:  # a job every ~0.5 ms, drains of at most 4
            q.submit(job(f"r{offered}", x, challenger(logistic, 2)))
            offered += 1
            time.sleep(0.0005)
        wall = time.monotonic() - began
        assert worker_cpu, "no drain finished"
        cpu = worker_cpu[-1]
    finally:
        q.close(timeout=WAIT_S)
    # Unbounded, the worker burns 2 ms per drain back to back (~100 % of a core). The share
    # lets it use 10 % of the wall time plus one window's credit, and the drain that was
    # running at the end.
    assert cpu <= 0.1 * (wall + ShadowQueue.share_window_s) * 1.25 + 0.01, (cpu, wall)
    assert q.shed > 0 and q.dropped == 0
    assert q.processed + q.shed == offered


def test_constructor_refuses_a_cpu_share_outside_zero_to_one() -> None:
    for share in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="cpu_share"):
            ShadowQueue(maxsize=1, on_result=lambda results: None, cpu_share=share)


def test_cpu_share_scores_a_burst_after_a_quiet_spell_whole(logistic: Exported) -> None:
    drained = threading.Event()

    def costly(results: Sequence[ShadowResult]) -> None:
        _burn(0.002)  # 0.2 s of budget at a 1 % share: well inside one window's credit
        drained.set()

    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    q = ShadowQueue(maxsize=100, on_result=costly, max_batch=4, cpu_share=0.01)
    q.start()
    try:
        assert q.submit(job("first", x, challenger(logistic, 2)))
        assert drained.wait(WAIT_S)
        time.sleep(0.05)  # the drain is charged to the budget right after on_result
        assert not q.resting
        names = [f"r{i}" for i in range(20)]
        assert q.submit_many([job(n, x, challenger(logistic, 2)) for n in names]) == 20
    finally:
        q.close(timeout=WAIT_S)
    assert q.shed == 0 and q.processed == 21


def test_drains_hold_at_most_max_batch_jobs_however_they_were_handed_over(
    logistic: Exported,
) -> None:
    """One hand-off carries a whole commit group (150 requests under a burst); drained
    whole it held the GIL for one long stretch the champion waited out."""
    entered = threading.Event()
    release = threading.Event()
    sizes: list[int] = []

    def collect(results: Sequence[ShadowResult]) -> None:
        sizes.append(len(results))
        entered.set()
        assert release.wait(WAIT_S)

    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    q = ShadowQueue(maxsize=1000, on_result=collect, workers=1, max_batch=32)
    q.start()
    try:
        assert q.submit(job("busy", x, challenger(logistic, 2)))
        assert entered.wait(WAIT_S)
        assert q.submit_many([job(f"a{i}", x, challenger(logistic, 2)) for i in range(20)]) == 20
        assert q.submit_many([job(f"b{i}", x, challenger(logistic, 2)) for i in range(150)]) == 150
    finally:
        release.set()
        q.close(timeout=WAIT_S)
    assert sum(sizes) == 171 and max(sizes) <= 32, sizes
    assert q.processed == 171 and q.depth == 0


def test_jobs_left_when_close_times_out_are_counted_as_dropped(logistic: Exported) -> None:
    """The worker is still busy when close() gives up: the jobs queued behind it are not
    scored, and were counted nowhere (only logged)."""
    entered = threading.Event()
    release = threading.Event()
    seen: list[str] = []
    drops: list[tuple[list[str], str]] = []

    def blocked(results: Sequence[ShadowResult]) -> None:
        seen.extend(r.request_id for r in results)
        entered.set()
        assert release.wait(WAIT_S)

    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    q = ShadowQueue(
        maxsize=4,
        on_result=blocked,
        workers=1,
        on_drop=lambda jobs, reason: drops.append(([j.request_id for j in jobs], reason)),
    )
    q.start()
    try:
        assert q.submit(job("busy", x, challenger(logistic, 2)))
        assert entered.wait(WAIT_S)  # the only worker is now stuck in on_result
        assert q.submit_many([job(n, x, challenger(logistic, 2)) for n in "abc"]) == 3
        q.close(timeout=0.05)  # the worker stays stuck past it
        assert q.dropped == 3 and q.depth == 0
        assert drops == [(["a", "b", "c"], "queue_full")]
    finally:
        release.set()
    for thread in q._threads:  # the stuck drain finishes, then the worker stops
        thread.join(WAIT_S)
    assert not q.running
    assert seen == ["busy"] and q.processed == 1


def test_a_close_between_a_submit_and_its_hand_off_cannot_strand_the_jobs(
    logistic: Exported,
) -> None:
    """submit_many counted its jobs under the lock but put them on the queue after
    releasing it: a close() in between put the workers' stop markers first, and the jobs
    were neither scored nor counted. Here a close() runs at the hand-off whenever the
    lock lets one in there."""
    collect = Collector(expected=1)
    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    q = ShadowQueue(maxsize=4, on_result=collect, workers=1)
    q.start()
    real = q._queue

    class CloseAtHandOff:
        def put(self, item: object) -> None:
            if isinstance(item, list) and not q._lock.locked():
                q.close(timeout=WAIT_S)
            real.put(item)

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    q._queue = CloseAtHandOff()  # type: ignore[assignment]
    taken = q.submit_many([job("r1", x, challenger(logistic, 2))])
    q.close(timeout=WAIT_S)
    assert taken == 1
    assert q.processed + q.dropped == 1 and q.depth == 0
    assert [r.request_id for r in collect.results] == ["r1"]


def _float16_doubler() -> LoadedVersion:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "half",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [None, N_FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [None, N_FEATURES])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return LoadedVersion(
        version=2, model=OnnxModel.from_bytes(proto.SerializeToString()), hyperparameter_set="hp"
    )


def test_a_row_a_challenger_s_input_type_cannot_hold_is_an_error_not_a_changed_row() -> None:
    """Rows read against the champion's float32 signature were cast to a float16
    challenger's input unchecked: 70000 became inf, and the challenger scored it."""
    half = _float16_doubler()
    wide = np.zeros((1, N_FEATURES), dtype=np.float32)
    wide[0, 2] = 70000.0  # past float16's 65504
    fits = np.ones((1, N_FEATURES), dtype=np.float32)
    collect = Collector(expected=4)
    with ShadowQueue(maxsize=4, on_result=collect) as q:
        q.submit_many([job("fits", fits, half), job("wide", wide, half)])  # alone, batched
        q.submit_many([job("wide-first", wide, half), job("fits-2", fits, half)])
        assert collect.done.wait(WAIT_S)
    results = {r.request_id: r for r in collect.results}
    for name in ("wide", "wide-first"):
        assert results[name].values is None and results[name].error is not None
        assert "float16" in results[name].error and "70000" in results[name].error
    for name in ("fits", "fits-2"):
        assert results[name].error is None and results[name].values is not None


def test_a_looping_challenger_s_backlog_costs_at_most_three_deadlines() -> None:
    """A batched run that timed out was retried job by job: a challenger looping on every
    row held the shadow worker ``run_timeout_s`` per queued request. Its breaker opens
    after three deadlines in a row, and the rest of the backlog is refused at once."""
    from shadow_models import looping_model

    from shadow._jobs import score_many

    looping = OnnxModel.from_bytes(looping_model(), run_timeout_s=0.1)
    version = LoadedVersion(version=3, model=looping, hyperparameter_set="hp")
    zeros = np.zeros((1, N_FEATURES), np.float32)
    ones = np.ones((1, N_FEATURES), np.float32)
    jobs = [job("probe", zeros, version)] + [job(f"r{i}", ones, version) for i in range(6)]
    results = score_many(jobs, version)
    assert results[0].error is None  # the probe row answers at once
    assert [r.request_id for r in results[1:]] == [f"r{i}" for i in range(6)]
    errors = [r.error or "" for r in results[1:]]
    # the batch and two jobs alone passed the deadline; the other four were refused
    assert sum("within 0.1 s" in e for e in errors) == 2
    assert sum("last 3 runs passed the 0.1 s deadline" in e for e in errors) == 4


def test_a_backlog_too_slow_to_score_as_one_batch_is_scored_job_by_job() -> None:
    """A model slow per row (its loop runs as long as the batch's rows add up to) may
    pass its deadline on a drained backlog's batch while each request alone answers in
    time: each job is then scored alone, not failed with the batch."""
    import time

    import onnx
    from shadow_models import looping_model

    from shadow._jobs import score_many

    def slow_model(iterations_per_unit: float) -> bytes:
        graph = onnx.load_from_string(looping_model())
        (big,) = [i for i in graph.graph.initializer if i.name == "big"]
        big.float_data[:] = [iterations_per_unit]
        return graph.SerializeToString()

    row = np.full((1, N_FEATURES), 1.0 / N_FEATURES, np.float32)  # sum |x| = 1 per row
    probe = OnnxModel.from_bytes(slow_model(1e5))
    began = time.perf_counter()
    probe.run(row)
    per_unit = (time.perf_counter() - began) / 1e5
    iterations = 0.05 / max(per_unit, 1e-12)  # about 50 ms a row on this host
    began = time.perf_counter()
    OnnxModel.from_bytes(slow_model(iterations)).run(row)
    one_row_s = time.perf_counter() - began
    # the deadline holds one row four times over, not the backlog's eight rows
    slow = OnnxModel.from_bytes(slow_model(iterations), run_timeout_s=4 * one_row_s + 0.05)
    version = LoadedVersion(version=4, model=slow, hyperparameter_set="hp")
    jobs = [job(f"r{i}", row, version) for i in range(9)]
    results = score_many(jobs, version)
    assert [r.error for r in results] == [None] * 9
    assert all(r.values is not None and r.values.shape == (1, 2) for r in results)


def _sum_model(*, scalar: bool = False, transposed: bool = False) -> LoadedVersion:
    """Sums each row: ``[batch, 1]``; or the whole batch to a 0-d scalar (ReduceSum,
    keepdims=0); or the row sums transposed to ``[1, batch]`` (not batch-major)."""
    from onnx import TensorProto, helper

    axes = [helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
    if scalar:
        nodes = [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)]
        shape: list[int | str | None] = []
        axes = []
    elif transposed:
        nodes = [
            helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1),
            helper.make_node("Transpose", ["s"], ["y"], perm=[1, 0]),
        ]
        shape = [1, None]
    else:
        nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)]
        shape = [None, 1]
    graph = helper.make_graph(
        nodes,
        "sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, N_FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        axes,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    version = 3 if scalar else 4 if transposed else 2
    return LoadedVersion(
        version=version,
        model=OnnxModel.from_bytes(proto.SerializeToString()),
        hyperparameter_set="hp",
    )


def test_a_challenger_with_a_scalar_output_fails_its_jobs_not_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A challenger whose primary output is 0-d passed the one-row probe; a drained
    backlog of two or more jobs sliced its 0-d batch output outside any ``try``: the
    IndexError killed the only worker, and every later job of every model was dropped."""
    good, scalar = _sum_model(), _sum_model(scalar=True)
    x = np.ones((1, N_FEATURES), np.float32)
    collect = Collector(expected=7)
    with caplog.at_level(logging.ERROR, logger="shadow"):
        with ShadowQueue(maxsize=10, on_result=collect, workers=1) as q:
            # one hand-off: one drain of three jobs, the last two batched
            assert q.submit_many([job(f"r{i}", x, good, scalar) for i in range(3)]) == 3
            assert q.submit(job("later", x, good))  # taken after that drain: the worker lives
            assert collect.done.wait(WAIT_S)
            assert q.running
    results = {(r.request_id, r.version): r for r in collect.results}
    for i in range(3):
        bad = results[(f"r{i}", scalar.version)]
        assert bad.values is None and bad.error is not None
        assert "one row per input row (1)" in bad.error and "shape ()" in bad.error
        ok = results[(f"r{i}", good.version)]
        assert ok.error is None and ok.values is not None
        np.testing.assert_array_equal(ok.values, [[N_FEATURES]])
    assert results[("later", good.version)].error is None
    assert q.processed == 4 and q.errors == 3 and q.dropped == 0
    # the three failures are one version's with one code: the first logged, with traceback
    assert sum("request=r" in r.getMessage() for r in caplog.records if r.exc_info) == 1


def test_a_not_batch_major_challenger_s_backlog_is_scored_request_by_request() -> None:
    """A challenger whose primary output is ``[1, batch]`` had its batched output split by
    the input row counts: the first batched job got every job's scores, the others empty
    arrays, all recorded as successes under the wrong request ids."""
    transposed = _sum_model(transposed=True)
    rows = [np.full((1, N_FEATURES), i, np.float32) for i in range(4)]
    collect = Collector(expected=4)
    with ShadowQueue(maxsize=10, on_result=collect) as q:
        assert q.submit_many([job(f"r{i}", x, transposed) for i, x in enumerate(rows)]) == 4
        assert collect.done.wait(WAIT_S)
    assert [r.request_id for r in collect.results] == ["r0", "r1", "r2", "r3"]
    for result, x in zip(collect.results, rows, strict=True):
        alone = transposed.model.primary(transposed.model.run(x))
        assert result.error is None and result.values is not None
        np.testing.assert_array_equal(result.values, alone)
        assert result.values.shape == (1, 1)
    assert q.errors == 0 and q.processed == 4


def test_a_job_whose_output_is_not_one_row_per_input_row_is_an_error() -> None:
    """Scored alone, a ``[1, batch]`` output of a two-row request is one row for two:
    an error result, not two requests' scores recorded as one row."""
    from shadow._jobs import score

    transposed = _sum_model(transposed=True)
    two = np.ones((2, N_FEATURES), np.float32)
    result = score(job("two", two, transposed), transposed)
    assert result.values is None and result.error is not None
    assert "output 'y' must hold one row per input row (2), got shape (1, 2)" in result.error
    one = score(job("one", two[:1], transposed), transposed)
    assert one.error is None and one.values is not None and one.values.shape == (1, 1)


def test_an_unexpected_scoring_failure_fails_its_jobs_not_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception out of scoring a group (here rows of objects, which the batched cast
    refuses with a TypeError) escaped the worker's loop and ended the thread. It fails
    that challenger's jobs of the group; other groups, in the same drain or later, are
    scored."""
    import dataclasses

    good = _sum_model()
    other = dataclasses.replace(good, version=5)  # another line-up: another group
    odd = np.array([[None] * N_FEATURES], dtype=object)
    x = np.ones((1, N_FEATURES), np.float32)
    collect = Collector(expected=4)
    with caplog.at_level(logging.ERROR, logger="shadow"):
        with ShadowQueue(maxsize=10, on_result=collect, workers=1) as q:
            assert q.submit_many([job(f"odd{i}", odd, good) for i in range(3)]) == 3
            assert q.submit(job("later", x, other))
            assert collect.done.wait(WAIT_S)
            assert q.running
    results = {r.request_id: r for r in collect.results}
    for i in range(3):
        failed = results[f"odd{i}"]
        assert failed.values is None and failed.error is not None
        assert failed.error.startswith("TypeError: ")
    assert results["later"].error is None
    assert q.processed == 4 and q.errors == 3
    unexpected = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert len(unexpected) == 1 and unexpected[0].exc_info is not None
    assert "version=2" in unexpected[0].getMessage()


def test_jobs_past_the_byte_budget_are_dropped_as_queue_full_and_counted(
    logistic: Exported,
) -> None:
    """The queue was bounded in jobs only: 100 requests of 4096 rows x 512 float32 held
    800 MiB behind a slow challenger, ~78 GiB at the default 10,000 jobs. The rows of the
    jobs waiting are bounded by ``max_bytes``; past it a job is refused as when full."""
    entered = threading.Event()
    release = threading.Event()
    seen: list[str] = []
    drops: list[tuple[list[str], str]] = []

    def blocked(results: Sequence[ShadowResult]) -> None:
        seen.extend(r.request_id for r in results)
        entered.set()
        assert release.wait(WAIT_S)

    x = np.zeros((4, N_FEATURES), dtype=np.float32)  # 96 bytes a job
    q = ShadowQueue(
        maxsize=100,
        max_bytes=3 * x.nbytes,
        on_result=blocked,
        workers=1,
        on_drop=lambda jobs, reason: drops.append(([j.request_id for j in jobs], reason)),
    )
    q.start()
    try:
        assert q.submit(job("busy", x, challenger(logistic, 2)))
        assert entered.wait(WAIT_S)  # the only worker is now stuck in on_result
        assert q.queued_bytes == 0  # a job a drain holds is no longer waiting
        names = ["a", "b", "c", "over-1", "over-2"]
        assert q.submit_many([job(n, x, challenger(logistic, 2)) for n in names]) == 3
        assert q.queued_bytes == 3 * x.nbytes and q.depth == 3
        assert not q.submit(job("over-3", x[:1], challenger(logistic, 2)))  # 24 bytes more
        assert q.dropped == 3
        assert drops == [(["over-1", "over-2"], "queue_full"), (["over-3"], "queue_full")]
    finally:
        release.set()
        q.close(timeout=WAIT_S)
    assert seen == ["busy", "a", "b", "c"]
    assert q.processed == 4 and q.queued_bytes == 0 and q.depth == 0


def test_a_job_larger_than_the_whole_byte_budget_is_refused_even_when_the_queue_is_empty(
    logistic: Exported,
) -> None:
    drops: list[tuple[list[str], str]] = []
    big = np.zeros((8, N_FEATURES), dtype=np.float32)
    q = ShadowQueue(
        maxsize=10,
        max_bytes=big.nbytes - 1,
        on_result=lambda results: None,
        on_drop=lambda jobs, reason: drops.append(([j.request_id for j in jobs], reason)),
    )
    try:
        assert not q.submit(job("big", big, challenger(logistic, 2)))
        assert q.submit(job("small", big[:1], challenger(logistic, 2)))
        assert drops == [(["big"], "queue_full")]
        assert q.dropped == 1 and q.queued_bytes == big[:1].nbytes
    finally:
        q.close(timeout=WAIT_S)  # never started: the job waiting is dropped
    assert q.queued_bytes == 0 and q.dropped == 2


def test_constructor_refuses_a_non_positive_byte_budget() -> None:
    with pytest.raises(ValueError, match=r"`max_bytes` must be >= 1 or None, got 0"):
        ShadowQueue(maxsize=1, max_bytes=0, on_result=lambda results: None)


def _loop_forever() -> LoadedVersion:
    """A challenger whose run on any non-zero row outlasts every test (deadline 600 s)."""
    from shadow_models import looping_model

    model = OnnxModel.from_bytes(looping_model(), run_timeout_s=600.0)
    return LoadedVersion(version=3, model=model, hyperparameter_set="hp")


def test_close_stops_a_drain_still_inside_onnxruntime_and_joins_the_worker() -> None:
    """close() gave up on a worker looping in onnxruntime and returned with it alive; at
    interpreter exit the process then aborted (SIGABRT, "terminate called without an
    active exception"). The run is stopped, recorded as the job's error, and the worker
    ends before close() returns."""
    collect = Collector(expected=1)
    q = ShadowQueue(maxsize=4, on_result=collect, workers=1)
    q.start()
    assert q.submit(job("loops", np.ones((1, N_FEATURES), np.float32), _loop_forever()))
    assert q.submit(job("behind", np.ones((1, N_FEATURES), np.float32), _loop_forever()))
    q.close(timeout=0.05)
    assert not q.running
    assert collect.done.is_set()
    assert collect.results[0].request_id == "loops" and collect.results[0].error is not None
    assert "terminate" in collect.results[0].error
    assert q.processed + q.dropped == 2 and q.depth == 0


def test_a_process_exiting_after_close_with_a_run_in_flight_exits_cleanly(
    tmp_path: Path,
) -> None:
    """The same in a process of its own, which exits right after close()."""
    from shadow_models import looping_model

    model = tmp_path / "loops.onnx"
    model.write_bytes(looping_model())
    script = tmp_path / "exit_after_close.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import numpy as np
            from shadow import LoadedVersion, OnnxModel, ShadowJob, ShadowQueue
            data = open({str(model)!r}, "rb").read()
            loops = LoadedVersion(3, OnnxModel.from_bytes(data, run_timeout_s=600.0), "hp")
            q = ShadowQueue(maxsize=4, on_result=lambda results: None)
            q.start()
            q.submit(ShadowJob("m", "loops", np.ones((1, 6), np.float32), (loops,)))
            q.close(timeout=0.05)
            print("closed", flush=True)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert "terminate called" not in done.stderr
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "closed"


def test_an_idle_worker_holds_no_job_it_scored(logistic: Exported) -> None:
    """The worker kept its last drain in its locals while it waited for the next: a
    retired challenger's session, which its jobs hold, lived on with the daemon when no
    challenger was left to submit another job (up to ~194 MiB for a large forest)."""
    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    rows = weakref.ref(x)
    collect = Collector(expected=1)
    with ShadowQueue(maxsize=4, on_result=collect, workers=1) as q:
        assert q.submit(job("r1", x, challenger(logistic, 2)))
        del x
        assert collect.done.wait(WAIT_S)
        gone = threading.Event()
        deadline = time.monotonic() + WAIT_S
        while rows() is not None and time.monotonic() < deadline:
            gc.collect()
            gone.wait(0.01)  # the worker finishes its drain and waits for the next
        assert rows() is None
