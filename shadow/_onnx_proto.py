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


def _tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every ``TensorProto`` anywhere in ``model``, found by walking each message field
    the protobuf descriptors list (initializers, sparse ones, attributes, subgraphs,
    functions' nodes and their default attributes, training info, and any field a later
    ONNX adds), not a list of fields kept by hand: a model-local function's default
    attribute (``FunctionProto.attribute_proto``) was missed, and its tensor's external
    data — a file under the daemon's working directory, which onnxruntime read when it
    inlined the function — came back byte by byte in a regression model's answers. An
    explicit stack: nested subgraphs must not reach Python's recursion limit."""
    stack: list[Any] = [model]
    while stack:
        message = stack.pop()
        if isinstance(message, onnx.TensorProto):
            yield message
            continue  # a tensor holds no tensor
        for field, value in message.ListFields():
            if field.type != field.TYPE_MESSAGE:
                continue
            if field.is_repeated:
                stack.extend(value)
            else:
                stack.append(value)


def external_data_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of every tensor (:func:`_tensors`: anywhere in the model) whose data lives in
    an external file."""
    return [
        t.name or "<unnamed>"
        for t in _tensors(model)
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
