"""A classifier's rows of several probabilities must sum to 1, in one output: checked when
a version is registered (:mod:`tunewatch._registry`), on rows of 0, 1 and -1 the candidate
answers. A classifier's probabilities split into one rank-1 output per class (skl2onnx's
``zipmap: 'columns'``) are refused so too: the rows those outputs answer sum to 1."""

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


def _probe_rows(signature: Signature) -> np.ndarray:
    """Rows of 0, 1 and -1, as the input's type holds them."""
    values = [0.0, 1.0] if signature.input.dtype.kind == "u" else [0.0, 1.0, -1.0]
    column = np.asarray(values, dtype=signature.input.dtype)[:, None]
    return np.repeat(column, signature.n_features, axis=1)


def check_class_columns(task: str, onnx_bytes: bytes, signature: Signature) -> None:
    """Refuse (``unsupported_signature``) a classifier whose floating-point outputs are
    several of rank 1 that answer rows summing to 1 (give or take
    :data:`ROW_SUM_TOLERANCE`) on rows of 0, 1 and -1: one output per class, a ZipMap of
    columns (skl2onnx's ``zipmap: 'columns'``), whose first, P(class 0), was served and
    recorded as P(class 1) (a 0.89-accurate model recorded at 0.109). Rank-1 outputs that
    are not one per class (a probability and its logit) do not sum to 1 and pass, as
    does a regressor's ``pred`` and ``std`` (the caller checks classifiers only). A model
    whose run on these rows fails (as serving would answer it) passes; rows with a NaN
    are not summed. The rows are scored in runs of the batch the graph fixes, if it fixes
    one (:func:`shadow.run_rows`); the sandboxed probe has loaded and scored it first."""
    floats = [o.name for o in signature.outputs if o.dtype.kind == "f"]
    if len(floats) < 2 or any(signature.output(n).rank != 1 for n in floats):
        return
    try:
        session = OnnxModel.from_bytes(onnx_bytes, run_timeout_s=ROW_SUM_CHECK_TIMEOUT_S)
        outputs = run_rows(session, _probe_rows(signature))
    except ShadowError as exc:
        logger.warning("a %s model's outputs %s are not checked: %s", task, floats, exc.message)
        return
    columns = np.stack([np.asarray(outputs[n], dtype=np.float64) for n in floats], axis=1)
    sums = columns[~np.isnan(columns).any(axis=1)].sum(axis=1)
    if sums.size == 0 or (np.abs(sums - 1.0) > ROW_SUM_TOLERANCE).any():
        return
    raise RegistrationError(
        f"a {task} model has one rank-1 floating-point output per class {floats} (their "
        "rows sum to 1 on the rows the registration scored: a ZipMap of columns, most "
        "often); tunewatch serves a classifier's probabilities as one output of shape "
        "[batch, n_classes] (convert classifiers with options={id(clf): {'zipmap': False}})",
        code="unsupported_signature",
    )


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
    try:
        session = OnnxModel.from_bytes(onnx_bytes, run_timeout_s=ROW_SUM_CHECK_TIMEOUT_S)
        p = session.primary(run_rows(session, _probe_rows(signature))).astype(np.float64)
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
