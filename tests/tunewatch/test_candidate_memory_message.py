"""A candidate refused for memory names the setting that bounds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import RegistrationError
from tunewatch._example import feature_names
from tunewatch._version_metadata import VersionMetadata


def _folding_4gib_constant() -> bytes:
    """A model whose session creation folds a 4 GiB constant."""
    inits = [
        numpy_helper.from_array(np.array([1 << 30], np.int64), "big"),
        numpy_helper.from_array(np.array([1], np.int64), "axis"),
    ]
    nodes = [
        helper.make_node("ConstantOfShape", ["big"], ["c"]),
        helper.make_node("ReduceSum", ["c"], ["r"], keepdims=1),
        helper.make_node("ReduceSum", ["input", "axis"], ["t"], keepdims=1),
        helper.make_node("Add", ["t", "r"], ["prediction"]),
    ]
    graph = helper.make_graph(
        nodes,
        "folding",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, 1])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def test_a_candidate_refused_for_memory_names_the_candidate_memory_limit(tmp_path: Path) -> None:
    config = build_config(
        {"data_dir": str(tmp_path), "scoring": {"candidate_memory_limit_mb": 1024}}, env={}
    )
    daemon = Daemon(config, env={})
    try:
        metadata = VersionMetadata(task="regression", feature_names=feature_names(8))
        with pytest.raises(RegistrationError) as info:
            daemon.registry.register("big", _folding_4gib_constant(), metadata, actor="t")
        assert info.value.code == "load_memory"
        assert "`scoring.candidate_memory_limit_mb` (1024)" in info.value.message
    finally:
        daemon.close()
