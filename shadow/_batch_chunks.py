"""Many rows through a model, in runs of the batch its graph fixes.

A graph may fix its batch dimension (``[1, n_features]``: what ``torch.onnx.export``
gives without ``dynamic_axes``, or skl2onnx with ``FloatTensorType([1, F])``).
onnxruntime then refuses a run of any other number of rows (``shape_mismatch``), which a
request of one row never meets but the daemon's own runs of many rows do: registration's
checks and the reference's scores. :func:`run_rows` scores such rows in chunks of that
batch, as the candidate probe (:mod:`shadow._probe`) scores its rows, and a dynamic
batch in one run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shadow._errors import ShadowError
from shadow._onnx import OnnxModel


def run_rows(model: OnnxModel, x: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
    """Score ``x`` (rows already of the model's input type) and return every output by
    name, one row per row of ``x``, as :meth:`OnnxModel.run` of them all would.

    With a dynamic batch dimension, that is one run. With a fixed one of ``b`` rows, runs
    of ``b`` rows: the last chunk, if short, is filled up with copies of its last row
    (of zeros when ``x`` has no rows) and the outputs of those copies dropped. Each run
    meets the model's deadline and breaker on its own (``scoring.run_timeout_s``).

    Raises what :meth:`OnnxModel.run` raises, and :class:`~shadow.ShadowError`
    ``output_shape_mismatch`` when, in runs of a fixed batch, an output does not hold
    one row per input row: chunks of it cannot be put together."""
    batch = model.signature.input.shape[0]
    if batch is None:
        return model.run(x)
    n = x.shape[0]
    chunks: dict[str, list[np.ndarray[Any, Any]]] = {}
    for start in range(0, max(n, 1), batch):
        rows = x[start : start + batch]
        kept = rows.shape[0]
        if kept < batch:
            filler = rows[-1:] if kept else np.zeros((1, *x.shape[1:]), dtype=x.dtype)
            rows = np.concatenate([rows, np.repeat(filler, batch - kept, axis=0)])
        for name, out in model.run(np.ascontiguousarray(rows)).items():
            if out.ndim < 1 or out.shape[0] != batch:
                raise ShadowError(
                    f"the model's output {name!r} must hold one row per input row to be "
                    f"scored in runs of its fixed batch of {batch} rows, got shape "
                    f"{list(out.shape)}",
                    code="output_shape_mismatch",
                )
            chunks.setdefault(name, []).append(out[:kept])
    return {name: np.concatenate(parts) for name, parts in chunks.items()}
