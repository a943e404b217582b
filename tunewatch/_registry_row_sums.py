"""A classifier's rows of several probabilities must sum to 1: checked when a version is
registered (:mod:`tunewatch._registry`), on rows of 0, 1 and -1 the candidate answers."""

from __future__ import annotations

import logging
from typing import Final

import numpy as np

from shadow import OnnxModel, ShadowError, Signature, run_rows
from tunewatch._errors import RegistrationError

logger = logging.getLogger(__name__)

#: How far from 1 a classifier's row of several probabilities may sum (registration's
#: rows, mirrored outputs, reference scores): float32 softmax rows sum to 1 within ~1e-6,
#: and rows rounded to 4 decimals (each off by at most 5e-5) stay within it up to 20
#: columns. A row of [1, 1] had log loss 0 on every request and was promoted.
ROW_SUM_TOLERANCE: Final = 1e-3

#: The deadline of each run of :func:`check_row_sums`: a model still going after it is
#: not checked so (as :data:`~tunewatch._registry_labels.LABEL_CHECK_TIMEOUT_S`).
ROW_SUM_CHECK_TIMEOUT_S: Final = 5.0


def check_row_sums(task: str, onnx_bytes: bytes, signature: Signature, width: int | None) -> None:
    """Refuse (``task_output_mismatch``) a classifier whose primary output of several
    columns answered a row not summing to 1 (give or take :data:`ROW_SUM_TOLERANCE`) on
    rows of 0, 1 and -1 (as the input's type holds them): each value in [0, 1] passed
    the registry's check of the probe's values, and a challenger answering [1, 1] had log
    loss 0 on every request and was promoted. A single column (P(class 1)), as ``width``
    (the primary output's columns, ``None`` when unknown) says or the run shows, has no
    sum to check; a model whose run on these rows fails (as serving would answer it)
    passes. The rows are scored in runs of the batch the graph fixes, if it fixes one
    (:func:`shadow.run_rows`). The candidate is loaded in this process: the sandboxed
    probe has loaded and scored it first, rows of 0, 1 and -1 among them."""
    if width is not None and width < 2:
        return
    values = [0.0, 1.0] if signature.input.dtype.kind == "u" else [0.0, 1.0, -1.0]
    column = np.asarray(values, dtype=signature.input.dtype)[:, None]
    rows = np.repeat(column, signature.n_features, axis=1)
    try:
        session = OnnxModel.from_bytes(onnx_bytes, run_timeout_s=ROW_SUM_CHECK_TIMEOUT_S)
        p = session.primary(run_rows(session, rows)).astype(np.float64)
    except ShadowError as exc:
        logger.warning("a %s model's row sums are not checked: %s", task, exc.message)
        return
    if p.ndim != 2 or p.shape[1] < 2:
        return
    off = np.abs(p.sum(axis=1) - 1.0)
    off[np.isnan(off)] = 0.0  # a NaN row is not a probability row to sum
    if not (off > ROW_SUM_TOLERANCE).any():
        return
    worst = int(np.argmax(off))
    raise RegistrationError(
        f"a {task} model's probability rows must sum to 1 (within {ROW_SUM_TOLERANCE:g}), "
        f"got a row summing to {float(p[worst].sum()):.6g} (output "
        f"{signature.primary_output!r}) on the rows the registration scored (0, 1 and -1 as "
        "the input's type holds them): export normalised probabilities (a Softmax over the "
        "logits), or a single column of P(class 1) for a binary model",
        code="task_output_mismatch",
    )
