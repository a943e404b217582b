"""A candidate refused for memory names the setting that bounds it."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
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


#: Registers the 4 GiB-folding model (saved at ``argv[1]``) under the default candidate
#: limit in a daemon at ``argv[2]``; prints the refusal's code and message.
_REGISTER = """
import json, sys
import json
import resource
import subprocess
import sys
from pathlib import Path
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import RegistrationError
from tunewatch._example import feature_names
from tunewatch._version_metadata import VersionMetadata
daemon = Daemon(build_config({"data_dir": sys.argv[2]}, env={}), env={})
try:
    meta = VersionMetadata(task="regression", feature_names=feature_names(8))
    daemon.registry.register("big", Path(sys.argv[1]).read_bytes(), meta, actor="t")
except RegistrationError as exc:
    print(json.dumps({"code": exc.code, "message": exc.message}))
finally:
    daemon.close()
"""

HARD_LIMIT_MB = 1536  # below the default candidate limit, 2048 MiB


def test_a_candidate_refused_under_a_lower_hard_limit_names_that_limit(tmp_path: Path) -> None:
    """Under a hard ``RLIMIT_AS`` below ``scoring.candidate_memory_limit_mb``, the probe
    runs under the hard limit: raising the setting, as the refusal advised, changes
    nothing; the hard limit is what to raise."""
    model = tmp_path / "big.onnx"
    model.write_bytes(_folding_4gib_constant())
    limit = HARD_LIMIT_MB << 20
    ran = subprocess.run(
        [sys.executable, "-c", _REGISTER, str(model), str(tmp_path / "data")],
        capture_output=True,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    refused = json.loads(ran.stdout.strip().splitlines()[-1])
    assert refused["code"] == "load_memory", refused
    assert f"hard address-space limit ({HARD_LIMIT_MB} MiB" in refused["message"], refused
    assert "raise it if the model needs more" not in refused["message"], refused
    assert "retry later" not in refused["message"], refused  # the probe's run: not retried


def test_a_candidate_refused_for_time_names_the_candidate_timeout(tmp_path: Path) -> None:
    """A probe past ``scoring.candidate_timeout_s`` (here far below what any probe takes
    to start its interpreter) is refused naming that setting, as ``load_memory`` names
    ``scoring.candidate_memory_limit_mb``."""
    config = build_config(
        {"data_dir": str(tmp_path), "scoring": {"candidate_timeout_s": 0.001}}, env={}
    )
    daemon = Daemon(config, env={})
    try:
        metadata = VersionMetadata(task="regression", feature_names=feature_names(8))
        with pytest.raises(RegistrationError) as info:
            daemon.registry.register("slow", _folding_4gib_constant(), metadata, actor="t")
        assert info.value.code == "load_timeout"
        assert "took longer than 0.001 s" in info.value.message
        assert (
            "; the limit is `scoring.candidate_timeout_s` (0.001 s): raise it if the model "
            "needs longer" in info.value.message
        )
    finally:
        daemon.close()
