"""A version whose primary output is not one row per input row (a class-major ``[2, N]``
tensor, a rank-3 ``[N, 2, 2]`` one) fails only its own answers: the champion's is refused
with 422 ``output_shape_mismatch``, a challenger's is that result's shadow error while the
other results of its drain are recorded.

Registration refuses such models; these are put in service past it, as versions
registered before the check are, straight into the store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from shadow import LoadedVersion, OnnxModel, ShadowError, ShadowJob
from shadow._jobs import score_many
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._record_rows import request_record
from tunewatch._runtime import ScoringRuntime
from tunewatch.api._errors import describe

N_FEATURES = 4
FEATURES = [f"f{i}" for i in range(N_FEATURES)]


def _onnx(shape: str, scale: float = 1.0) -> bytes:
    """A binary classifier over ``N_FEATURES`` float32 features whose primary output is
    ``probabilities [N, 2]`` (``"rows"``), ``probabilities [2, N]`` (``"class_major"``) or
    ``scores [N, 2, 2]`` (``"rank3"``)."""
    width = 4 if shape == "rank3" else 2
    weights = np.linspace(-scale, scale, N_FEATURES * width, dtype=np.float32)
    nodes = [helper.make_node("MatMul", ["input", "w"], ["logits"])]
    initializers = [numpy_helper.from_array(weights.reshape(N_FEATURES, width), "w")]
    if shape == "rows":
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
        output = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])
    elif shape == "class_major":
        nodes += [
            helper.make_node("Softmax", ["logits"], ["by_row"], axis=1),
            helper.make_node("Transpose", ["by_row"], ["probabilities"], perm=[1, 0]),
        ]
        output = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [2, None])
    else:
        nodes += [
            helper.make_node("Sigmoid", ["logits"], ["squashed"]),
            helper.make_node("Reshape", ["squashed", "shape"], ["scores"]),
        ]
        initializers.append(numpy_helper.from_array(np.array([-1, 2, 2], np.int64), "shape"))
        output = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 2, 2])
    graph = helper.make_graph(
        nodes,
        shape,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, N_FEATURES])],
        [output],
        initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return proto.SerializeToString()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(
        build_config({"data_dir": str(tmp_path / "data"), "scheduler": {"enabled": False}}, env={}),
        env={},
    )
    yield d
    d.close()


def _serve(daemon: Daemon, model: str, *versions: tuple[bytes, str]) -> None:
    """Put ``versions`` (artefact, stage) of binary ``model`` in the store, past the
    registry's checks, and load its line-up."""
    daemon.store.ensure_model(name=model, task="binary", feature_names=FEATURES)
    for onnx, stage in versions:
        daemon.store.add_version(
            model=model,
            artefact_sha256=daemon.artefacts.put(onnx),
            hyperparameters={},
            size_bytes=len(onnx),
            actor="t",
            stage=stage,  # type: ignore[arg-type]
        )
    daemon.runtime.load(model)


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, N_FEATURES)).astype(np.float32)


def _shadow_errors(daemon: Daemon, model: str, version: int) -> float | None:
    """The version's failed shadow runs, whatever their code; ``None`` with no series."""
    counts = [
        s.value
        for metric in daemon.metrics.registry.collect()
        for s in metric.samples
        if s.name == "tunewatch_run_failures_total"
        and s.labels["model"] == model
        and s.labels["version"] == str(version)
        and s.labels["role"] == "challenger"
    ]
    return sum(counts) if counts else None


def _challenger(runtime: ScoringRuntime, model: str, version: int) -> LoadedVersion:
    return runtime.model(model).deployment.get(version)


@pytest.mark.parametrize("shape", ["class_major", "rank3"])
def test_a_champion_without_one_row_per_input_row_is_refused_with_422(
    daemon: Daemon, shape: str
) -> None:
    """A class-major champion answered a 1-row request with shape [2, 1] and a 3-row one
    with [2, 3], recording two rows for each; a rank-3 one failed every request with 500
    ``internal`` when its answer was recorded."""
    _serve(daemon, "m", (_onnx(shape), "champion"))
    runtime = daemon.runtime
    served = runtime.model("m")
    name = served.deployment.lineup.champion.model.signature.primary_output  # type: ignore[union-attr]
    for n in (1, 3):
        with pytest.raises(ShadowError) as info:
            runtime.score(served, _rows(n, seed=n))
        assert info.value.code == "output_shape_mismatch"
        assert f"{name!r}" in info.value.message and f"({n})" in info.value.message
        # the model's fault, answered as a non-finite output is (422), not as a client's
        assert describe(info.value)[:2] == (422, "output_shape_mismatch")


def test_a_champion_with_one_row_per_input_row_still_answers(daemon: Daemon) -> None:
    _serve(daemon, "m", (_onnx("rows"), "champion"))
    x = _rows(3, seed=1)
    scored = daemon.runtime.score(daemon.runtime.model("m"), x)
    expected = OnnxModel.from_bytes(_onnx("rows")).run(x)["probabilities"]
    np.testing.assert_array_equal(scored.primary, expected)


def test_a_malformed_shadow_result_fails_alone_and_is_counted_as_its_shadow_error(
    daemon: Daemon,
) -> None:
    """One rank-3 challenger's result failed its whole drain's recording: the other
    challenger of its model and another model's challenger, scored in the same drain, lost
    their outputs, with no shadow error counted, only a log line."""
    healthy_a, healthy_b = _onnx("rows", scale=2.0), _onnx("rows", scale=3.0)
    _serve(
        daemon, "a", (_onnx("rows"), "champion"), (healthy_a, "shadow"), (_onnx("rank3"), "shadow")
    )
    _serve(daemon, "b", (_onnx("rows"), "champion"), (healthy_b, "shadow"))
    runtime = daemon.runtime
    xa, xb = _rows(2, seed=1), _rows(3, seed=2)
    daemon.store.write_records([request_record("a", "r1", xa), request_record("b", "r2", xb)], [])
    jobs = [
        ShadowJob("a", "r1", xa, runtime.model("a").deployment.lineup.challengers),
        ShadowJob("b", "r2", xb, runtime.model("b").deployment.lineup.challengers),
    ]
    runtime.recorder.start()
    runtime.queue.start()
    assert runtime.queue.submit_many(jobs) == 2  # one hand-off: one drain
    runtime.queue.close()  # waits for the drain
    runtime.recorder.close()  # writes what it recorded

    for model, request_id, x, onnx in (("a", "r1", xa, healthy_a), ("b", "r2", xb, healthy_b)):
        (stored,) = daemon.store.get_outputs(model, request_id)
        assert (stored.version, stored.role, stored.n_rows) == (2, "challenger", len(x))
        expected = OnnxModel.from_bytes(onnx).run(x)["probabilities"]
        assert stored.values == expected.astype(np.float32).tobytes()
    assert _shadow_errors(daemon, "a", 3) == 1
    # exported at 0 since they entered the line-up: none counted
    assert _shadow_errors(daemon, "a", 2) == 0 and _shadow_errors(daemon, "b", 2) == 0
    assert runtime.queue.callback_errors == 0


def test_a_version_s_unrecordable_results_are_logged_once_and_each_counted(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    _serve(daemon, "a", (_onnx("rows"), "champion"), (_onnx("rank3"), "shadow"))
    runtime = daemon.runtime
    rank3 = _challenger(runtime, "a", 2)
    caplog.set_level(logging.ERROR, logger="tunewatch._shadow_results")
    for drain in range(3):  # three drains, two results each
        jobs = [ShadowJob("a", f"r{drain}-{i}", _rows(2, seed=i), (rank3,)) for i in range(2)]
        results = score_many(jobs, rank3)
        assert all(r.error is None for r in results)  # scored: only recording them fails
        runtime.shadow_results.on_results(results)
    assert _shadow_errors(daemon, "a", 2) == 6
    logged = [r for r in caplog.records if r.name == "tunewatch._shadow_results"]
    assert len(logged) == 1
    message = logged[0].getMessage()
    assert "model=a version=2" in message and "(2, 2, 2)" in message
