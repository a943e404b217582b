"""A classifier's integer ``label`` output must answer the class index its probabilities
are read by: checked when a version is registered (:mod:`tunewatch._registry`), on the
candidate's answers the sandboxed probe sent back (:attr:`shadow.CandidateInfo.scored`):
the registering process does not load the candidate."""

from __future__ import annotations

import logging
from typing import Final

import numpy as np

from shadow import CandidateInfo, Signature
from tunewatch._errors import RegistrationError
from tunewatch._reference import Reference

logger = logging.getLogger(__name__)

#: The most reference rows a registration scores to hold a classifier's ``label`` output
#: to its probabilities (spread over the window), besides rows of 0, 1 and -1.
LABEL_CHECK_ROWS: Final = 1000


#: How close a row's two largest probabilities (or a single column's probability and 0.5)
#: may be before the row cannot tell which class a ``label`` should name.
LABEL_TIE_TOLERANCE: Final = 1e-4


def _label_output(signature: Signature) -> str | None:
    """The classifier's integer label output (a ``[batch]`` or ``[batch, 1]`` integer
    tensor besides the primary output; one named like a label where there are several),
    ``None`` when it has none."""
    ints = [
        o
        for o in signature.outputs
        if o.name != signature.primary_output
        and o.dtype.kind in "iu"
        and (o.rank == 1 or (o.rank == 2 and o.shape[1] == 1))
    ]
    if len(ints) > 1:
        ints = [o for o in ints if "label" in o.name.lower()]
    return ints[0].name if len(ints) == 1 else None


def label_check_rows(reference: Reference | None) -> np.ndarray | None:
    """Up to :data:`LABEL_CHECK_ROWS` reference rows spread over the window (float64),
    which reach more than one class where rows of 0, 1 and -1 do not: the rows the
    candidate probe scores besides those (``check_rows`` of
    :func:`shadow.inspect_candidate`, which keeps those the input's type holds)."""
    if reference is None:
        return None
    x = reference.features
    picked = np.unique(np.linspace(0, x.shape[0] - 1, LABEL_CHECK_ROWS).astype(np.int64))
    return np.asarray(x[picked], dtype=np.float64)


def check_label_output(task: str, info: CandidateInfo) -> None:
    """Refuse (``task_output_mismatch``) a classifier whose integer ``label`` output does
    not answer the class index its primary output is read by — a value past its last
    column, or one that is not the argmax of its probabilities (of a single column, 1
    above 0.5 and 0 below) on more than half the rows — on rows of 0, 1 and -1 and on
    reference rows (:func:`label_check_rows`), as the sandboxed probe scored them
    (``info.scored``: two batches, each scored alone). A model trained on classes 1..3
    answered ``label`` 1..3 while its probabilities and every label fed back are indexed
    0..2; its retune answered 0..2, and clients reading ``label`` got other codes once it
    was promoted. Rows whose class is a near tie, or NaN, are not compared; a model with
    no such output, or whose run on these rows failed (as serving would answer it),
    passes. The rows were scored in runs of the batch the graph fixes, if it fixes one
    (:func:`shadow.run_rows`)."""
    label = _label_output(info.signature)
    if label is None:
        return
    primary = info.signature.primary_output
    scored, labels = [], []
    for batch in info.scored.values():
        if batch.error is not None:
            logger.warning(
                "a %s model's %r output is not checked on %d rows: %s",
                task,
                label,
                batch.rows,
                batch.error,
            )
            continue
        answered = np.asarray(batch.outputs[label]).reshape(-1)
        if answered.shape[0] == batch.rows:
            scored.append(batch.primary().astype(np.float64))
            labels.append(answered)
    if not scored:
        return
    p, got = np.concatenate(scored), np.concatenate(labels)
    if p.shape[1] == 1:
        expected = (p[:, 0] > 0.5).astype(np.int64)
        margin = np.abs(p[:, 0] - 0.5)
        rule = f"1 where {primary!r} is above 0.5, else 0"
    else:
        expected = np.argmax(p, axis=1)
        top = np.sort(p, axis=1)
        margin = top[:, -1] - top[:, -2]
        rule = f"the argmax of {primary!r}"
    n_classes = max(p.shape[1], 2)
    clear = ~np.isnan(p).any(axis=1) & (margin > LABEL_TIE_TOLERANCE)
    outside = np.flatnonzero((got < 0) | (got >= n_classes))
    wrong = np.flatnonzero(clear & (got != expected))
    # Codes that are not class indices disagree on (nearly) every row, or name a class
    # past the last column. A valid classifier may disagree on a few rows: an SVC's label
    # comes from its decision function, its probabilities from Platt scaling, and
    # scikit-learn documents that the two can differ (4 of 402 rows here).
    if outside.size == 0 and 2 * wrong.size <= int(clear.sum()):
        return
    first = int(outside[0] if outside.size else wrong[0])
    raise RegistrationError(
        f"a {task} model's output {label!r} must answer the class index ({rule}), got "
        f"{got[first]} where the index is {expected[first]} ({outside.size} rows outside "
        f"0..{n_classes - 1}, {wrong.size} of {int(clear.sum())} rows disagreeing, of "
        "those the registration scored: rows of 0, 1 and -1, and the "
        "reference's, when given); encode classes as integers (0 to n_classes - 1, e.g. "
        "with scikit-learn's LabelEncoder) before training, and convert the model again",
        code="task_output_mismatch",
    )
