"""A classifier converted with skl2onnx's ``zipmap: 'columns'`` (one rank-1 float output
per class) is refused when it registers as binary or multiclass: its first output,
P(class 0), was served and recorded as P(class 1). The refusal is the registration's,
not the load's: a regressor answering ``pred`` and ``std`` (two rank-1 float outputs)
was refused too, and a champion of that layout registered before stopped serving
(``lineup cannot be loaded``, ``/v2`` inference 503 ``model_not_ready``)."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LogisticRegression

from tests.tunewatch.conftest import MODEL, serving
from tunewatch._errors import NotFoundError, RegistrationError
from tunewatch._example import ExampleModel
from tunewatch._registry import Registry
from tunewatch._version_metadata import VersionMetadata
from tunewatch.api._errors import status_for
from tunewatch.store import Store

NAMES = ("a", "b", "c", "d")


@pytest.fixture
def store(empty_store: Store) -> Store:
    return empty_store  # the registry's (tests/tunewatch/conftest.py), holding no model


def _zipmap_columns(classes: int, *, keep_label: bool) -> bytes:
    """``output_label`` ``[N]`` int64 and ``i0`` … ``i{classes-1}`` ``[N]`` float; without
    its label when ``keep_label`` is false (one float output per class and nothing else)."""
    x = np.random.default_rng(0).normal(size=(300, len(NAMES))).astype(np.float32)
    cuts = np.linspace(-1.0, 1.0, classes - 1) if classes > 2 else np.array([0.0])
    estimator = LogisticRegression(max_iter=500).fit(x, np.digitize(x[:, 0] + x[:, 1], cuts))
    model: onnx.ModelProto = convert_sklearn(
        estimator,
        initial_types=[("input", FloatTensorType([None, len(NAMES)]))],
        options={id(estimator): {"zipmap": "columns"}},
        target_opset=17,
    )
    if not keep_label:
        kept = [o for o in model.graph.output if o.name != "output_label"]
        del model.graph.output[:]
        model.graph.output.extend(kept)
    return model.SerializeToString()


def _two_rank1(first: str, second: str, op: str, *, scale: float = 1.0) -> bytes:
    """A linear model answering ``first`` ``[N]`` (``op`` of the linear score: ``Sigmoid``
    for a probability, ``Identity`` for a prediction) and ``second`` ``[N]`` (the score
    itself for ``Sigmoid``, else its absolute value: a logit, a standard deviation)."""
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["z"]),
        helper.make_node("Reshape", ["z", "flat"], ["score"]),
        helper.make_node(op, ["score"], [first]),
        helper.make_node("Identity" if op == "Sigmoid" else "Abs", ["score"], [second]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_rank1",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", len(NAMES)])],
        [
            helper.make_tensor_value_info(first, TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info(second, TensorProto.FLOAT, ["N"]),
        ],
        [
            numpy_helper.from_array(np.full((len(NAMES), 1), scale, np.float32), "W"),
            numpy_helper.from_array(np.array([-1], np.int64), "flat"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize(
    ("task", "classes", "keep_label"),
    [("binary", 2, True), ("binary", 2, False), ("multiclass", 4, True)],
    ids=["binary-with-label", "binary-without-label", "multiclass-four-with-label"],
)
def test_a_zipmap_columns_classifier_is_refused_at_registration_with_the_remedy(
    store: Store, registry: Registry, task: str, classes: int, keep_label: bool
) -> None:
    """Its first column ``i0`` (P(class 0)) was served as the primary output and read as
    P(class 1): a binary model of ~0.89 accuracy registered with a reference of 0.11."""
    metadata = VersionMetadata(task=task, feature_names=NAMES)  # type: ignore[arg-type]
    with pytest.raises(RegistrationError) as info:
        registry.register("m", _zipmap_columns(classes, keep_label=keep_label), metadata, actor="t")
    error = info.value
    assert status_for(error) == 400
    assert error.code == "unsupported_signature"
    assert f"a {task} model has one rank-1 floating-point output per class" in error.message
    assert "'i0'" in error.message and f"'i{classes - 1}'" in error.message
    assert "options={id(clf): {'zipmap': False}}" in error.message
    with pytest.raises(NotFoundError):
        store.get_model("m")


def test_a_binary_model_answering_a_probability_and_its_logit_is_registered(
    registry: Registry,
) -> None:
    """Two rank-1 float outputs that are not one per class (they do not sum to 1)."""
    metadata = VersionMetadata(task="binary", feature_names=NAMES)
    row = registry.register("m", _two_rank1("prob", "logit", "Sigmoid"), metadata, actor="t")
    assert row.version == 1


def test_a_regressor_answering_pred_and_std_registers_and_serves_pred(tmp_path: Path) -> None:
    """Its champion (and a shadow of the same layout) loads, and ``/v2`` inference
    answers its primary output ``pred``, as before the zipmap-columns refusal."""
    trained = [
        ExampleModel(
            name=f"pred-std-{scale}",
            onnx=_two_rank1("pred", "std", "Identity", scale=scale),
            metadata=VersionMetadata(task="regression", feature_names=NAMES),
        )
        for scale in (1.0, 2.0)
    ]
    with serving(tmp_path, trained) as running:
        answer = httpx.post(
            f"{running.url}/v2/models/{MODEL}/infer",
            json={
                "inputs": [
                    {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [1.0] * 8}
                ]
            },
            headers=running.auth("scorer"),
            timeout=60,
        )
        lineup = running.daemon.runtime.model(MODEL).deployment.lineup
        assert lineup.champion is not None and lineup.champion.version == 1
        assert [c.version for c in lineup.challengers] == [2]
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["pred"]["data"] == [4.0, 4.0]
