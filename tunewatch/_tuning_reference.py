"""A tuning job's reference snapshot (:class:`tunewatch._reference.Reference`, format 2)
and the row counts its version's details tell of it.

The snapshot holds the rows the job took from its parent's reference, then every request
of its traffic window in the order received (its traffic part): the labels of those it
did not train on (none had come back, or one no job can train on) are NaN, and every row
has a held-out score, the winner's out-of-fold one of a row it trained on and its own of
one it did not (the refit never saw it). The traffic part is what the version's drift and
estimate compare with (:func:`tunewatch._evaluation_baseline.traffic_part`). Holding the
labelled rows alone, a version tuned where labels come back for a selected part of the
traffic (a lender observes repayment of the applications it approved) saw its own,
unchanged traffic drift in every window, and a drift event queued a retune every
cool-down."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from shadow import OnnxModel
from tunewatch._reference import Reference, reference_scores
from tunewatch._tuning_window import TuningWindow
from tunewatch.store import JobRow, ModelRow

logger = logging.getLogger(__name__)


def tuned_reference(
    window: TuningWindow, scores: np.ndarray, onnx: bytes, *, model: ModelRow, job: JobRow
) -> Reference:
    """``job``'s snapshot of ``window``: ``scores`` are its winner's out-of-fold scores
    of the rows it trained on (``window.x``), ``onnx`` the winner, which scores the
    traffic rows it did not train on."""
    k = window.n_inherited
    trained = window.trained
    labels = np.full(trained.shape[0], np.nan)
    labels[trained] = window.y[k:]
    own = None
    if not trained.all():
        own = reference_scores(
            OnnxModel.from_bytes(onnx),
            window.traffic[~trained],
            model=model.name,
            version=f"job {job.id}'s candidate",
        )
        if own.shape[1] > scores.shape[1] and model.task == "multiclass":
            # classes the window lacked, which out_of_fold gives no column past its
            # largest: no fold's model predicts them (as its columns of a class between)
            scores = np.pad(scores, ((0, 0), (0, own.shape[1] - scores.shape[1])))
    traffic_scores = np.full((trained.shape[0], scores.shape[1]), np.nan, dtype=np.float32)
    traffic_scores[trained] = scores[k:]
    if own is not None and own.shape[1] == scores.shape[1]:
        traffic_scores[~trained] = own
    elif own is not None:
        logger.warning(
            "job=%d model=%s: the candidate answers %d columns, its out-of-fold scores %d: "
            "the %d traffic rows it did not train on have no score in its reference",
            job.id,
            model.name,
            own.shape[1],
            scores.shape[1],
            int((~trained).sum()),
        )
    return Reference(
        features=np.vstack([window.x[:k], window.traffic]),
        labels=np.concatenate([np.asarray(window.y[:k], dtype=np.float64), labels]),
        scores=np.vstack([np.asarray(scores[:k], dtype=np.float32), traffic_scores]),
    )


def reference_details(window: TuningWindow) -> dict[str, Any]:
    """What a job's version tells of ``window``'s snapshot: ``rows`` in all and the last
    ``traffic_rows`` of them its traffic part (which the evaluation reads by them,
    :func:`tunewatch._evaluation_baseline.traffic_rows`), when the newest of those was
    received (``traffic_through``, which tells the next job which of them its own window
    reads again: :func:`tunewatch._tuning_window.tuning_window`); ``trained_rows``
    trained on, the last ``trained_traffic_rows`` of them labelled traffic."""
    traffic = int(window.traffic.shape[0])
    return {
        "rows": window.n_inherited + traffic,
        "traffic_rows": traffic,
        "traffic_through": None if window.through is None else window.through.isoformat(),
        "trained_rows": int(window.x.shape[0]),
        "trained_traffic_rows": window.n_traffic,
    }
