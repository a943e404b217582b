"""A re-tuning job's training window: the newest labelled traffic when the job was
queued (labels old enough with ``comparison.label_maturity_s`` set), after the labelled
reference rows of the champion it was queued against that are not earlier traffic."""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np

from tunewatch._artefacts import ArtefactStore
from tunewatch._config import ModelConfig
from tunewatch._errors import TuningError
from tunewatch._reference import Reference
from tunewatch.store import JobRow, ModelRow, Store, VersionRow

logger = logging.getLogger(__name__)


def training_window(
    store: Store,
    artefacts: ArtefactStore,
    model: ModelRow,
    cfg: ModelConfig,
    job: JobRow,
    *,
    parent: VersionRow | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The newest requests holding ``window_rows`` rows, and the labels known, when
    ``job`` was created (every worker that joins or resumes the job trains on the same
    data), after the reference rows of ``parent`` (the champion the job was queued
    against) that are not earlier traffic. With ``comparison.label_maturity_s`` set, only
    requests at least that old then: younger ones hold only their early labels
    (outcome-dependent delay), which would bias the training set towards the early class.
    Returns the features, the labels and how many of the rows are traffic."""
    tj = cfg.tuning
    matured_before = cfg.comparison.matured_before(job.created_at)
    window = store.window(
        model.name,
        n_features=len(model.feature_names),
        last_n=tj.window_rows,
        end=matured_before or job.created_at,
    )
    labelled = window.labelled() & (window.label_received_at < job.created_at.timestamp())
    x, y = window.features[labelled], window.labels[labelled]
    n_traffic = int(labelled.sum())
    sha = parent.details.get("reference_sha256") if parent else None
    if tj.include_reference and sha:
        assert parent is not None
        reference = Reference.from_bytes(artefacts.get(sha, ".npz"))
        if reference.labels is not None:
            # a job's version holds its reference rows, then its traffic window's: the
            # traffic is read again here, so only the rows before it are added
            own = _reference_rows(parent, reference.labels.shape[0])
            labels = np.asarray(reference.labels[:own], dtype=np.float64)
            usable = _valid_labels(labels, model.task)
            if not usable.all():
                logger.warning(
                    "job=%d model=%s: %d of version %d's %d reference rows have no "
                    "label valid for a %s model (unlabelled, or not a class); left out",
                    job.id,
                    model.name,
                    int((~usable).sum()),
                    parent.version,
                    own,
                    model.task,
                )
            features = reference.features[:own][usable].astype(np.float32)
            x = np.vstack([features, x])
            y = np.concatenate([labels[usable], y])
    # too little traffic: say whether the label maturity left the rest out
    immature, maturity = 0, ""
    if matured_before is not None and n_traffic < tj.min_rows:
        immature = _immature_rows(store, model, cfg, job, matured_before)
        maturity = (
            f"comparison.label_maturity_s ({cfg.comparison.label_maturity_s:.10g} s) left "
            f"out {immature} labelled rows received less than that before the job was "
            "queued"
        )
    if immature and x.shape[0] >= tj.min_rows:
        logger.warning(
            "job=%d model=%s: the window holds %d traffic rows and trains on %d reference rows; %s",
            job.id,
            model.name,
            n_traffic,
            x.shape[0] - n_traffic,
            maturity,
        )
    if x.shape[0] < tj.min_rows:
        raise TuningError(
            f"model {model.name!r} has {x.shape[0]} labelled rows; a job "
            f"needs at least {tj.min_rows} (tuning.min_rows)"
            + (f"; {maturity}" if immature else "")
        )
    if model.task != "regression":
        y = y.astype(np.int64)
    return np.ascontiguousarray(x, dtype=np.float32), y, n_traffic


def _immature_rows(
    store: Store, model: ModelRow, cfg: ModelConfig, job: JobRow, matured_before: datetime
) -> int:
    """Labelled requests of the newest ``window_rows`` the label maturity left out of
    ``job``'s window: received after ``matured_before``, labelled before the job."""
    young = store.window(
        model.name,
        n_features=len(model.feature_names),
        last_n=cfg.tuning.window_rows,
        start=matured_before,
        end=job.created_at,
        with_features=False,
    )
    labelled = young.labelled() & (young.label_received_at < job.created_at.timestamp())
    return int(labelled.sum())


def _valid_labels(labels: np.ndarray, task: str) -> np.ndarray:
    """Which ``labels`` a job can train on, by the rules the labels API enforces for the
    task: finite; 0 or 1 (binary); a class index (multiclass)."""
    usable = np.isfinite(labels)
    if task == "binary":
        usable &= (labels == 0) | (labels == 1)
    elif task == "multiclass":
        usable &= (labels >= 0) & (labels < 2**31) & (labels == np.floor(labels))
    return np.asarray(usable)


def _reference_rows(version: VersionRow, n: int) -> int:
    """How many of ``version``'s ``n`` reference rows are not traffic: all of them, unless
    a job of this store registered it (its reference is its training rows, the traffic
    ones last). An imported version's traffic was another store's: none is read here."""
    if "imported" in version.details:  # imports once kept the source's `traffic_rows` here
        return n
    traffic = version.details.get("traffic_rows")
    if isinstance(traffic, int) and version.details.get("rows") == n:
        return max(n - traffic, 0)
    return n
