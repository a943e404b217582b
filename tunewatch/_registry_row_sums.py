"""A classifier's rows of several probabilities must sum to 1, in one output: checked when
a version is registered (:mod:`tunewatch._registry`), on rows of 0, 1 and -1 the candidate
answers. A classifier's probabilities split into one rank-1 output per class (skl2onnx's
``zipmap: 'columns'``) are refused so too: the rows those outputs answer sum to 1.

The candidate's answers are those the sandboxed probe sent back
(:attr:`shadow.CandidateInfo.scored`, ``"constant"``): the registering process does not
load the candidate (a 284 MiB forest took it 57 s and 3.7 GB, twice, outside
``scoring.candidate_memory_limit_mb`` and ``candidate_timeout_s``)."""

from __future__ import annotations

import logging
from typing import Final

import numpy as np

from shadow import CandidateInfo
from tunewatch._errors import RegistrationError

logger = logging.getLogger(__name__)

#: How far from 1 a classifier's row of several probabilities may sum (registration's
#: rows, mirrored outputs, reference scores): float32 softmax rows sum to 1 within ~1e-6,
#: and rows rounded to 4 decimals (each off by at most 5e-5) stay within it up to 20
#: columns. A row of [1, 1] had log loss 0 on every request and was promoted.
ROW_SUM_TOLERANCE: Final = 1e-3


def check_class_columns(task: str, info: CandidateInfo) -> None:
    """Refuse (``unsupported_signature``) a classifier whose floating-point outputs are
    several of rank 1 that answer rows summing to 1 (give or take
    :data:`ROW_SUM_TOLERANCE`) on rows of 0, 1 and -1: one output per class, a ZipMap of
    columns (skl2onnx's ``zipmap: 'columns'``), whose first, P(class 0), was served and
    recorded as P(class 1) (a 0.89-accurate model recorded at 0.109). Rank-1 outputs that
    are not one per class (a probability and its logit) do not sum to 1 and pass, as
    does a regressor's ``pred`` and ``std`` (the caller checks classifiers only). A model
    whose run on these rows failed (as serving would answer it) passes; rows with a NaN
    are not summed. The rows are those the sandboxed probe scored (``info.scored``), in
    runs of the batch the graph fixes, if it fixes one (:func:`shadow.run_rows`)."""
    signature = info.signature
    floats = [o.name for o in signature.outputs if o.dtype.kind == "f"]
    if len(floats) < 2 or any(signature.output(n).rank != 1 for n in floats):
        return
    scored = info.scored.get("constant")
    if scored is None or scored.error is not None:
        why = "not scored" if scored is None else scored.error
        logger.warning("a %s model's outputs %s are not checked: %s", task, floats, why)
        return
    outputs = scored.outputs
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


def check_row_sums(task: str, info: CandidateInfo, width: int | None) -> None:
    """Refuse (``task_output_mismatch``) a classifier whose primary output of several
    columns answered a row not summing to 1 (give or take :data:`ROW_SUM_TOLERANCE`) on
    rows of 0, 1 and -1 (as the input's type holds them): each value in [0, 1] passed
    the registry's check of the probe's values, and a challenger answering [1, 1] had log
    loss 0 on every request and was promoted. A single column (P(class 1)), as ``width``
    (the primary output's columns, ``None`` when unknown) says or the run shows, has no
    sum to check; a model whose run on these rows fails (as serving would answer it)
    passes. The rows are those the sandboxed probe scored (``info.scored``), in runs of
    the batch the graph fixes, if it fixes one (:func:`shadow.run_rows`)."""
    if width is not None and width < 2:
        return
    signature = info.signature
    scored = info.scored.get("constant")
    if scored is None or scored.error is not None:
        why = "not scored" if scored is None else scored.error
        logger.warning("a %s model's row sums are not checked: %s", task, why)
        return
    p = scored.primary().astype(np.float64)
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
