"""ONNX bytes read as a protobuf: the only module of :mod:`shadow` importing ``onnx``.

:func:`parse_model` reads bytes without touching external files and translates the
parser's failure into :class:`~shadow.CandidateRejectedError` ``not_onnx``;
:func:`external_data_tensors`, :func:`opset_imports` and :func:`declared_primary_width`
inspect what it returns. Both
:meth:`shadow.OnnxModel.from_bytes` and candidate inspection (:mod:`shadow._candidate`)
use them before onnxruntime sees the bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from shadow._errors import CandidateRejectedError
from shadow._signature import TensorSpec, primary_output

#: The floating-point element types of a declared output; any other is not primary.
_FLOATS: dict[int, np.dtype[Any]] = {
    onnx.TensorProto.FLOAT: np.dtype(np.float32),
    onnx.TensorProto.DOUBLE: np.dtype(np.float64),
    onnx.TensorProto.FLOAT16: np.dtype(np.float16),
}


def parse_model(data: bytes) -> onnx.ModelProto:
    """Parse ONNX bytes without touching external files; not_onnx on failure."""
    try:
        model: onnx.ModelProto = onnx.ModelProto.FromString(data)
    except DecodeError as exc:  # the parser's only failure (40,000 fuzzed inputs: no other)
        raise CandidateRejectedError(
            f"not an ONNX model: {type(exc).__name__}: {exc}", code="not_onnx"
        ) from exc
    if not model.HasField("graph"):
        raise CandidateRejectedError("not an ONNX model: it has no graph", code="not_onnx")
    return model


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        for sparse in attr.sparse_tensors:
            yield sparse.values
            yield sparse.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from _graph_tensors(sub)


def external_data_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of every tensor (initializers, attributes, subgraphs, functions) whose
    data lives in an external file."""
    tensors = list(_graph_tensors(model.graph))
    for function in model.functions:
        for node in function.node:
            tensors.extend(_node_tensors(node))
    return [
        t.name or "<unnamed>"
        for t in tensors
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data) > 0
    ]


def opset_imports(model: onnx.ModelProto) -> dict[str, int]:
    """``{domain: version}``, with the default domain spelt ``"ai.onnx"``."""
    return {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}


def declared_primary_width(data: bytes) -> int | None:
    """The columns of the primary output (:func:`~shadow.primary_output`'s rule, as a
    session's signature picks it) as the ONNX graph declares them, read without a
    session: 1 for a rank-1 output, ``None`` when the graph leaves them dynamic or has
    no floating-point output."""
    specs = []
    for out in parse_model(data).graph.output:
        kind = out.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in kind.shape.dim)
        dtype = _FLOATS.get(kind.elem_type, np.dtype(np.int64))
        specs.append(TensorSpec(name=out.name, dtype=dtype, shape=dims))
    primary = primary_output(specs)
    spec = next((s for s in specs if s.name == primary), None)
    if spec is None:
        return None
    if spec.rank == 1:
        return 1
    return spec.shape[1] if spec.rank == 2 else None
