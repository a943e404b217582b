"""A multiclass version answers as many classes as its model's champion: a challenger of
four classes beside a champion of three registered as a shadow and was refused only when
its comparison began. Registration (the API's route and ``tunewatch register`` both go
through :meth:`tunewatch._registry.Registry.register`) refuses it, and stores nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from retune import to_onnx
from tunewatch._cli import main
from tunewatch._errors import ConflictError
from tunewatch._registry import Registry
from tunewatch._version_metadata import VersionMetadata
from tunewatch.api._errors import status_for
from tunewatch.store import Store

NAMES = ("a", "b", "c", "d")
MULTICLASS = VersionMetadata(task="multiclass", feature_names=NAMES)


@pytest.fixture
def store(empty_store: Store) -> Store:
    return empty_store  # the registry's (tests/tunewatch/conftest.py), holding no model


def _classifier(classes: int, *, seed: int = 0) -> bytes:
    """A logistic model of ``classes`` classes (0 to ``classes - 1``) over ``NAMES``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, len(NAMES))).astype(np.float32)
    edges = np.linspace(-0.6, 0.6, classes - 1) if classes > 2 else [0.0]
    y = np.digitize(x[:, 0] + 0.5 * x[:, 1], edges)
    return to_onnx(LogisticRegression(max_iter=500).fit(x, y), len(NAMES))


@pytest.mark.parametrize("classes", [4, 2], ids=["more-classes", "fewer-classes"])
def test_a_shadow_of_another_class_count_than_the_champion_is_refused(
    store: Store, registry: Registry, classes: int
) -> None:
    registry.register("m", _classifier(3), MULTICLASS, actor="t", stage="champion")
    with pytest.raises(ConflictError) as info:
        registry.register("m", _classifier(classes, seed=1), MULTICLASS, actor="t")
    error = info.value
    assert error.code == "class_count_mismatch"
    assert status_for(error) == 409
    assert error.message.startswith(
        f"the champion of model 'm' (version 1) answers 3 classes; a version must answer "
        f"as many, got {classes} (output 'probabilities')"
    )
    assert [v.version for v in store.list_versions("m")] == [1]


def test_a_shadow_of_the_champion_s_class_count_is_registered(
    store: Store, registry: Registry
) -> None:
    registry.register("m", _classifier(3), MULTICLASS, actor="t", stage="champion")
    row = registry.register("m", _classifier(3, seed=1), MULTICLASS, actor="t")
    assert (row.version, row.stage) == (2, "shadow")


def test_without_a_champion_versions_of_any_class_count_register(
    store: Store, registry: Registry
) -> None:
    registry.register("m", _classifier(3), MULTICLASS, actor="t")
    row = registry.register("m", _classifier(4, seed=1), MULTICLASS, actor="t")
    assert (row.version, row.stage) == (2, "shadow")


def test_register_on_the_command_line_names_both_class_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))

    def register(classes: int, *extra: str) -> int:
        onnx = tmp_path / f"m{classes}.onnx"
        onnx.write_bytes(_classifier(classes))
        return main(
            ["--config", str(config), "--actor", "alice", "register", "m", str(onnx)]
            + ["--task", "multiclass", "--features", ",".join(NAMES), *extra]
        )

    assert register(3, "--stage", "champion") == 0
    capsys.readouterr()
    assert register(4) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(
        "tunewatch: error: the champion of model 'm' (version 1) answers 3 classes; a "
        "version must answer as many, got 4"
    )
    store = Store.open(f"sqlite:///{tmp_path}/data/tunewatch.db")
    try:
        assert [v.version for v in store.list_versions("m")] == [1]
    finally:
        store.close()


def _undeclared_width(classes: int) -> bytes:
    """A softmax over ``classes`` of a linear map's ``classes + 1`` columns, kept by a
    ``Compress``, whose columns no shape inference knows (``[N, ?]``): its class count is
    what it answers."""
    from onnx import TensorProto, helper, numpy_helper

    weights = np.linspace(-1, 1, len(NAMES) * (classes + 1), dtype=np.float32)
    keep = np.array([True] * classes + [False])
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w"], ["all"]),
            helper.make_node("Compress", ["all", "keep"], ["logits"], axis=1),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "undeclared",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, len(NAMES)])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, None])],
        [
            numpy_helper.from_array(weights.reshape(len(NAMES), classes + 1), "w"),
            numpy_helper.from_array(keep, "keep"),
        ],
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 8
    return onnx_model.SerializeToString()


def test_a_champion_whose_graph_leaves_its_classes_unknown_is_counted_by_its_answer(
    store: Store, registry: Registry
) -> None:
    registry.register("m", _undeclared_width(3), MULTICLASS, actor="t", stage="champion")
    with pytest.raises(ConflictError) as info:
        registry.register("m", _classifier(4), MULTICLASS, actor="t")
    assert info.value.code == "class_count_mismatch"
    assert "(version 1) answers 3 classes" in info.value.message
    row = registry.register("m", _classifier(3), MULTICLASS, actor="t")
    assert row.version == 2
