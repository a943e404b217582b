"""A challenger stopped at the run deadline (``scoring.run_timeout_s``) on some rows reads
as slow, not as fast.

Its stopped runs recorded no latency, only a shadow error: one looping past the deadline
on 2.5% of rows read p99 0.8 ms, and when the latency ratio's replay met such a row the
guardrails fell back to the recorded latencies and it was promoted, to answer 503
``run_timeout`` as champion. A shadow run stopped at the deadline now observes the
deadline as its latency (censored: the true one is at least that), and a replay stopped
at the deadline is a latency violation that names it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from shadow._jobs import ShadowJob, score
from tests.shadow.shadow_models import counting_loop_body
from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.test_comparison_loop import write
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data
from tunewatch.comparison import ComparisonConfig, ComparisonRunner, GuardrailSettings

RUN_TIMEOUT_S = 0.2
SLOW = 3.0  # x0 of a row the challenger loops on (past 2.0)


def tail_loop_model() -> bytes:
    """A logistic model of x0 - x1 over 8 features (``label`` [N], ``probabilities``
    [N, 2]) with a ``Loop`` of ``relu(max(x0) - 2) * 1e9`` trips: a batch whose rows all
    have x0 <= 2 answers at once, one with a row past it practically never."""
    body = counting_loop_body(1.0)
    nodes = [
        h.make_node("MatMul", ["input", "w"], ["logit"]),
        h.make_node("Sigmoid", ["logit"], ["p"]),
        h.make_node("Slice", ["input", "start", "end", "axis"], ["x0"]),
        h.make_node("Sub", ["x0", "two"], ["d"]),
        h.make_node("Relu", ["d"], ["rd"]),
        h.make_node("ReduceMax", ["rd"], ["mx"], keepdims=0),
        h.make_node("Mul", ["mx", "big"], ["trips_f"]),
        h.make_node("Cast", ["trips_f"], ["trips"], to=T.INT64),
        h.make_node("Loop", ["trips", "true", "zero"], ["acc"], body=body),
        h.make_node("Mul", ["acc", "zero"], ["acc0"]),
        h.make_node("Add", ["p", "acc0"], ["p1"]),
        h.make_node("Sub", ["one_f", "p1"], ["p0"]),
        h.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
        h.make_node("Greater", ["p1", "half"], ["gt"]),
        h.make_node("Cast", ["gt"], ["lab2"], to=T.INT64),
        h.make_node("Squeeze", ["lab2", "axis"], ["label"]),
    ]
    graph = h.make_graph(
        nodes,
        "tail_loop",
        [h.make_tensor_value_info("input", T.FLOAT, [None, 8])],
        [
            h.make_tensor_value_info("label", T.INT64, [None]),
            h.make_tensor_value_info("probabilities", T.FLOAT, [None, 2]),
        ],
        initializer=[
            h.make_tensor("w", T.FLOAT, [8, 1], [1.5, -1.0, 0, 0, 0, 0, 0, 0]),
            h.make_tensor("start", T.INT64, [1], [0]),
            h.make_tensor("end", T.INT64, [1], [1]),
            h.make_tensor("axis", T.INT64, [1], [1]),
            h.make_tensor("two", T.FLOAT, [], [2.0]),
            h.make_tensor("big", T.FLOAT, [], [1e9]),
            h.make_tensor("true", T.BOOL, [], [True]),
            h.make_tensor("zero", T.FLOAT, [], [0.0]),
            h.make_tensor("one_f", T.FLOAT, [], [1.0]),
            h.make_tensor("half", T.FLOAT, [], [0.5]),
        ],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


@pytest.fixture
def tail(tmp_path: Path, trained: list[ExampleModel]) -> Iterator[Daemon]:
    """The logistic champion v1 and, as shadow v2, a model looping past the deadline on
    rows with x0 > 2, under ``scoring.run_timeout_s`` of 0.2 s."""
    meta = replace(trained[1].metadata, hyperparameters={"estimator": "tail_loop"})
    challenger = ExampleModel(name="tail", onnx=tail_loop_model(), metadata=meta)
    d, _ = make_daemon(
        tmp_path / "data",
        [trained[0], challenger],
        extra={"scoring": {"run_timeout_s": RUN_TIMEOUT_S}},
    )
    yield d
    d.close()


def _rows(n: int, *, slow_every: int) -> np.ndarray:
    x, _ = example_data(n, seed=3)
    x[:, 0] = np.clip(x[:, 0], -2.0, 2.0)
    x[::slow_every, 0] = SLOW
    return x


def test_a_shadow_run_stopped_at_the_deadline_observes_the_deadline_as_its_latency(
    tail: Daemon,
) -> None:
    """40 quick rows and 2 stopped: 2 of 42 observations at the deadline put the
    histogram's p99 at 0.2 s or more, where it read the quick runs' alone."""
    loaded = tail.runtime.load(MODEL).deployment.get(2)
    assert loaded.model.run_timeout_s == RUN_TIMEOUT_S
    x = _rows(42, slow_every=21)  # rows 0 and 21: never two in a row (no breaker)
    results = [score(ShadowJob(MODEL, f"r{i}", x[i : i + 1], (loaded,)), loaded) for i in range(42)]
    stopped = [r for r in results if r.error is not None]
    assert len(stopped) == 2 and all("run_timeout_s" in (r.error or "") for r in stopped)
    assert {r.latency_s for r in stopped} == {RUN_TIMEOUT_S}
    assert all(r.latency_s is not None and r.latency_s < 0.1 for r in results if r.error is None)

    tail.runtime.shadow_results.on_results(results)
    hp = tail.runtime.series.hyperparameter_set(MODEL, 2)
    labels = {"model": MODEL, "version": "2", "hyperparameter_set": hp, "role": "challenger"}

    def sample(name: str, **extra: Any) -> float | None:
        value = tail.metrics.registry.get_sample_value(name, {**labels, **extra})
        return None if value is None else float(value)

    assert sample("tunewatch_inference_latency_seconds_count") == 42
    assert sample("tunewatch_inference_latency_seconds_bucket", le="0.1") == 40
    assert (sample("tunewatch_inference_latency_seconds_sum") or 0) >= 2 * RUN_TIMEOUT_S
    errors = tail.metrics.registry.get_sample_value(
        "tunewatch_run_failures_total",
        {"model": MODEL, "version": "2", "role": "challenger", "code": "run_timeout"},
    )
    assert errors == 2


def test_a_replay_stopped_at_the_deadline_refuses_the_challenger_on_latency(
    tail: Daemon,
) -> None:
    """Recorded alike (1 ms each: the stopped runs left no record), the replay meets a
    row the challenger loops on: a latency violation naming the deadline, not the
    recorded latencies' ratio."""
    x = _rows(100, slow_every=10)
    y = (x[:, 0] > 0).astype(np.int64)
    answers = {1: np.zeros((100, 2), np.float32), 2: np.zeros((100, 2), np.float32)}
    write(tail.store, ids=range(100), x=x, y=y, answers=answers, latency={1: 0.001, 2: 0.001})
    runner = ComparisonRunner(
        tail.store,
        tail.config,
        dispatcher=tail.dispatcher,
        metrics=tail.metrics,
        settings={MODEL: ComparisonConfig(guardrails=GuardrailSettings(max_memory_ratio=None))},
        clock=lambda: datetime.now(UTC),
    )
    champion = tail.store.champion(MODEL)
    assert champion is not None
    result = runner.guardrails(MODEL, champion, 2, runner.settings(MODEL))
    assert not result.passed
    [violation] = [v for v in result.violations if v.startswith("latency")]
    assert "run_timeout_s" in violation and f"{RUN_TIMEOUT_S:g} s" in violation
    assert "v2" in violation
    assert not any("recorded latencies" in n for n in result.notes), result.notes
