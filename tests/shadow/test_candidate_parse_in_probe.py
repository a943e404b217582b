"""A candidate's bytes are parsed in the probe, under its address-space limit, not in the
process that registers it: a file of empty nodes parses into a protobuf tree ~80 times
its size, and a 19 MiB upload took the daemon from 270 MiB to 1.8 GB (about 20 GB at the
default 256 MiB artefact limit) before the probe ever started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from onnx import TensorProto, helper

#: Run in a fresh interpreter, whose peak resident memory is this inspection's alone.
INSPECT = """
import resource, sys
from shadow import CandidateRejectedError, inspect_candidate
try:
    inspect_candidate(sys.argv[1], memory_limit_bytes=512 * 2**20, timeout_s=60)
    code = "passed"
except CandidateRejectedError as exc:
    code = exc.code
print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _inspected(path: Path) -> tuple[str, int]:
    """The code ``inspect_candidate`` answered for ``path`` and the inspecting process's
    peak resident memory (KiB)."""
    done = subprocess.run(
        [sys.executable, "-c", INSPECT, str(path)], capture_output=True, text=True, check=True
    )
    code, peak = done.stdout.split()
    return code, int(peak)


def test_a_file_of_empty_nodes_is_parsed_under_the_probe_s_limit(tmp_path: Path) -> None:
    small = tmp_path / "small.onnx"
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["variable"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 2])],
    )
    small.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    nodes = b"\x0a\x00" * (5 * 2**20)  # GraphProto.node, empty: 2 bytes each, 10 MiB
    bomb = tmp_path / "bomb.onnx"
    bomb.write_bytes(b"\x3a" + _varint(len(nodes)) + nodes)  # ModelProto.graph
    _, baseline = _inspected(small)
    code, peak = _inspected(bomb)
    assert code != "passed"
    assert peak - baseline < 100 * 1024, (code, baseline, peak)  # KiB: the file, not its tree
