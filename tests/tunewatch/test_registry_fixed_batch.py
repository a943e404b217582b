"""A model whose graph fixes its batch dimension (``torch.onnx.export`` without
``dynamic_axes``, skl2onnx's ``FloatTensorType([1, F])``) is held to the same checks and
evaluated as one with a dynamic batch.

Served one row per request, such a model refused the daemon's own runs of many rows:
registration's label and row-sum checks logged a warning and let it through unchecked (an
LR trained on classes 1/2 became champion), and its reference was scored in one run,
refused with ``shape_mismatch``: no drift, estimate or decay was ever stored for it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from shadow import OnnxModel, run_rows
from tests.tunewatch.conftest import MODEL, Clock, champion_answered
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._drift_report import PREDICTION
from tunewatch._errors import NotFoundError, RegistrationError
from tunewatch._example import example_data, feature_names
from tunewatch._reference import Reference
from tunewatch._registry import Registry
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import Store

NAMES = ("a", "b", "c", "d")
WINDOW = 300
REFERENCE_ROWS = 1501  # not a multiple of a fixed batch of 4


@pytest.fixture
def store(empty_store: Store) -> Store:
    return empty_store  # the registry's (tests/tunewatch/conftest.py), holding no model


def _lr(x: np.ndarray, y: np.ndarray, batch: int | None) -> bytes:
    """A logistic regression converted with its batch dimension ``batch``."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    estimator = LogisticRegression(C=0.5, max_iter=500).fit(x, y)
    proto = convert_sklearn(
        estimator,
        initial_types=[("input", FloatTensorType([batch, x.shape[1]]))],
        options={id(estimator): {"zipmap": False}},
        target_opset=17,
    )
    return proto.SerializeToString()


def _duplicated_sigmoid(batch: int | str) -> bytes:
    """``[sigmoid(z), sigmoid(z)]``: each value in [0, 1], rows summing to up to 2."""
    weights = np.array([[1.0], [-1.0], [0.5], [0.0]], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["s"]),
            helper.make_node("Concat", ["s", "s"], ["probabilities"], axis=1),
        ],
        "duplicated",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, len(NAMES)])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, 2])],
        [numpy_helper.from_array(weights, "W")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return proto.SerializeToString()


def _binary_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, len(NAMES))).astype(np.float32)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float64)


@pytest.mark.parametrize("batch", [None, 1], ids=["dynamic", "fixed-1"])
@pytest.mark.parametrize("with_reference", [False, True], ids=["probe-rows", "reference-rows"])
def test_a_label_output_naming_classes_1_and_2_is_refused_whatever_the_batch(
    store: Store, registry: Registry, batch: int | None, with_reference: bool
) -> None:
    x, y = _binary_rows(300)
    onnx_bytes = _lr(x, y + 1, batch)  # classes_ [1, 2]: `label` answers 1 or 2
    reference = Reference(features=x, labels=y) if with_reference else None

    with pytest.raises(RegistrationError) as info:
        registry.register(
            "m",
            onnx_bytes,
            VersionMetadata(task="binary", feature_names=NAMES),
            actor="t",
            stage="champion",
            reference=reference,
        )

    assert info.value.code == "task_output_mismatch"
    assert "output 'label' must answer the class index" in info.value.message
    with pytest.raises(NotFoundError):
        store.get_model("m")


@pytest.mark.parametrize("batch", ["N", 1], ids=["dynamic", "fixed-1"])
def test_probability_rows_not_summing_to_1_are_refused_whatever_the_batch(
    store: Store, registry: Registry, batch: int | str
) -> None:
    with pytest.raises(RegistrationError) as info:
        registry.register(
            "m",
            _duplicated_sigmoid(batch),
            VersionMetadata(task="binary", feature_names=NAMES),
            actor="t",
            stage="champion",
        )

    assert info.value.code == "task_output_mismatch"
    assert "probability rows must sum to 1" in info.value.message
    with pytest.raises(NotFoundError):
        store.get_model("m")


@pytest.fixture(params=[1, 4], ids=["fixed-1", "fixed-4"])
def daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Daemon]:
    x, y = example_data(600, seed=11)
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "models": [{"name": MODEL, "task": "binary", "evaluation": {"window_rows": WINDOW}}],
        },
        env={},
    )
    d = Daemon(config, env={})
    rx, ry = example_data(REFERENCE_ROWS, seed=0)
    d.registry.register(
        MODEL,
        _lr(x, y, request.param),
        VersionMetadata(task="binary", feature_names=feature_names(8)),
        actor="test",
        stage="champion",
        reference=Reference(features=rx, labels=ry.astype(np.float64)),
    )
    yield d
    d.close()


def _serve(d: Daemon, clock: Clock, start: int, x: np.ndarray) -> None:
    """Score ``x`` and record it a request a row, ``clock`` advancing 1 s a request."""
    champion = d.store.champion(MODEL)
    assert champion is not None
    session = OnnxModel.from_bytes(d.artefacts.get(champion.artefact_sha256))
    probs = session.primary(run_rows(session, x.astype(np.float32)))
    requests, outputs = [], []
    for i in range(len(x)):
        clock.now += timedelta(seconds=1)
        request, output = champion_answered(
            f"r{start + i}", clock.now, x[i : i + 1], probs[i : i + 1], version=champion.version
        )
        requests.append(request)
        outputs.append(output)
    d.store.write_records(requests, outputs)


def test_a_fixed_batch_champion_with_a_reference_is_evaluated(daemon: Daemon) -> None:
    clock = Clock()
    daemon.evaluator.clock = clock
    _serve(daemon, clock, 0, example_data(WINDOW, seed=3)[0])

    rows = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}

    assert rows["drift"].status == "ok"
    assert rows["drift"].payload["alarm"] is False
    prediction = next(c for c in rows["drift"].payload["columns"] if c["column"] == PREDICTION)
    assert prediction["status"] == "ok"
    assert prediction["n_ref"] == REFERENCE_ROWS  # every reference row was scored
    assert rows["estimate"].status == "ok"  # the reference's scores calibrated it
    assert rows["estimate"].payload["n"] == WINDOW
    assert "decay" in rows
