"""What a champion version's drift and estimate are compared with: its baseline, built
from its reference snapshot (the profile, the scores, CBPE and the reference accuracy).

A tuning job's snapshot holds its training rows in order: the labelled reference rows of
the champion it was queued against first, then the traffic window it was tuned on
(:func:`tunewatch._tuning_window.training_window`); ``details["rows"]`` counts them
all, ``details["traffic_rows"]`` the traffic at the end. The baseline is that traffic
part: whole, a job queued on drift carried the rows from before the drift, and every
later version the very first ones, so each new champion saw its own regime as drift."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from monitor import CBPE, EstimationError, ReferenceProfile
from monitor.objectives import decision_threshold, make_objective
from shadow import OnnxModel, representable_rows
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config
from tunewatch._drift_frame import LABEL, PREDICTION, column_types, prediction_column
from tunewatch._errors import RegistrationError, StoreError, StoreUnavailableError
from tunewatch._reference import Reference, reference_scores
from tunewatch.store import ModelRow, VersionRow

logger = logging.getLogger(__name__)


#: Reference rows scored in one run of the champion's session: a run of the whole
#: reference held the session's buffers for all of it at once.
SCORE_ROWS = 65_536


@dataclass(frozen=True, slots=True, eq=False)
class Baseline:
    """What a champion version is compared with: its reference profile and scores.

    It is cached for as long as the version is champion, so it keeps what the verdicts
    and the drift report read and not the reference rows (a snapshot unpacks to up to
    1 GiB; kept, with a float64 copy, they held ~500 MiB a model): the profile (a sample
    of each numeric column, counts, bins), the scores (the report's prediction column)
    and the estimate's calibration. The report rebuilds its reference from these, and
    reads a column of the rows again (``rows``) only to test it on its full values
    (:func:`tunewatch._drift_frame.reference_frame`)."""

    profile: ReferenceProfile
    scores: np.ndarray  # the champion's primary output on the reference rows, float32
    has_labels: bool  # whether the reference has labels: drift tests the label
    cbpe: CBPE | None  # at the objective's decision threshold (``cbpe.threshold``)
    reference_accuracy: float | None  # of the reference's decisions at that threshold
    no_estimate: str | None  # why ``cbpe`` is None: the estimate's reason
    #: the rows compared with (the snapshot's traffic part, if told), read again from the
    #: snapshot at each call: ``StoreError`` naming it when it cannot be read
    rows: Callable[[], Reference]


@dataclass(frozen=True, slots=True)
class NoBaseline:
    """Why a champion has no baseline: the reason its drift and estimate verdicts give."""

    reason: str


NO_SNAPSHOT = NoBaseline("no reference snapshot")


def traffic_rows(details: Mapping[str, Any], n: int) -> int | None:
    """How many of the last of a snapshot's ``n`` rows are the traffic its version was
    tuned on, by the version's ``details``: ``traffic_rows`` when its ``rows`` is ``n``
    (a job of this store wrote both; an import keeps the source's under ``imported``, of
    the same snapshot). ``None`` when they do not tell (a version registered by hand, or
    before jobs recorded them; counts of another snapshot)."""
    imported = details.get("imported")
    for held in (details, imported if isinstance(imported, Mapping) else {}):
        rows, traffic = held.get("rows"), held.get("traffic_rows")
        if "rows" in held or "traffic_rows" in held:
            if (
                isinstance(rows, int)
                and isinstance(traffic, int)
                and rows == n
                and 0 < traffic <= n
            ):
                return traffic
            return None
    return None


def traffic_part(
    reference: Reference, details: Mapping[str, Any], *, min_rows: int, label: str
) -> Reference:
    """``reference``'s traffic part (:func:`traffic_rows`), or all of it when that part
    cannot be told or holds fewer than ``min_rows`` rows (``drift.min_rows``: too few to
    test a column against). ``label`` names the version in the log."""
    n = reference.features.shape[0]
    traffic = traffic_rows(details, n)
    if traffic is None or traffic == n:
        return reference
    if traffic < min_rows:
        logger.warning(
            "%s: the %d traffic rows of its %d reference rows are fewer than "
            "drift.min_rows (%d); drift and the estimate compare with all of them",
            label,
            traffic,
            n,
            min_rows,
        )
        return reference
    logger.info(
        "%s: drift and the estimate compare with the last %d of its %d reference rows, "
        "the traffic it was tuned on",
        label,
        traffic,
        n,
    )
    return Reference(
        features=reference.features[n - traffic :],
        labels=None if reference.labels is None else reference.labels[n - traffic :],
        scores=None if reference.scores is None else reference.scores[n - traffic :],
    )


def read_snapshot(artefacts: ArtefactStore, sha256: str) -> Reference:
    """The reference snapshot ``sha256``: ``StoreError`` naming it when it is missing,
    damaged or unreadable (``NotFoundError`` when missing); ``StoreUnavailableError``
    as raised, the store's outage, not the snapshot's."""
    try:
        return Reference.from_bytes(artefacts.get(sha256, ".npz"))
    except StoreUnavailableError:
        raise
    except StoreError as exc:  # the message names the artefact and where it was read
        raise type(exc)(f"reference snapshot cannot be read: {exc.message}") from exc
    except RegistrationError as exc:  # intact bytes it cannot unpack, or a newer format
        raise StoreError(f"reference snapshot {sha256} cannot be read: {exc.message}") from exc


def reference_rows(
    champion: VersionRow, model: ModelRow, sha256: str, *, artefacts: ArtefactStore, config: Config
) -> Reference:
    """The rows of ``champion``'s reference snapshot ``sha256`` its drift and estimate
    compare with: its traffic part, if told (:func:`traffic_part`)."""
    cfg = config.model_or_default(model.name, model.task)
    return traffic_part(
        read_snapshot(artefacts, sha256),
        champion.details,
        min_rows=cfg.evaluation.drift.min_rows,
        label=f"model={champion.model} version={champion.version}",
    )


def chunked_scores(
    session: OnnxModel, features: np.ndarray, *, model: str, version: int
) -> np.ndarray:
    """:func:`tunewatch._reference.reference_scores` of ``features``, run on
    :data:`SCORE_ROWS` rows at a time: NaN for a row the session's input type cannot hold
    (said once, for all of them)."""
    held = representable_rows(features, session.signature.input.dtype)
    n = len(held)
    if not held.all():
        logger.warning(
            "model=%s version=%d: %d of %d reference rows hold values its %s input %r "
            "cannot; they have no score",
            model,
            version,
            int((~held).sum()),
            n,
            session.signature.input.dtype,
            session.signature.input.name,
        )
    scores: np.ndarray | None = None
    for start in range(0, n, SCORE_ROWS):
        rows = slice(start, start + SCORE_ROWS)
        kept = held[rows]
        if not kept.any():
            continue
        chunk = features[rows] if kept.all() else np.ascontiguousarray(features[rows][kept])
        scored = reference_scores(session, chunk, model=model, version=version)
        if scores is None:
            scores = np.full((n, scored.shape[1]), np.nan, dtype=np.float32)
        scores[rows][kept] = scored
    if scores is None:  # no row it can hold
        return np.full((n, session.signature.primary_width or 1), np.nan, dtype=np.float32)
    return scores


def build_baseline(
    champion: VersionRow, model: ModelRow, *, artefacts: ArtefactStore, config: Config
) -> Baseline | None:
    """``champion``'s baseline; ``None`` without a reference snapshot. A snapshot or
    artefact that cannot be read raises ``StoreError`` naming it (:func:`read_snapshot`).

    The reference is scored in chunks (:func:`chunked_scores`) and profiled a column at a
    time from its float32 features (:meth:`ReferenceProfile.from_columns`): built from
    one float64 frame of it, a 229 MiB snapshot took the daemon to a peak of 2.7 GB."""
    label = f"model={champion.model} version={champion.version}"
    sha = champion.details.get("reference_sha256")
    if not sha:
        logger.warning("%s has no reference snapshot: drift and estimates are skipped", label)
        return None
    cfg = config.model_or_default(model.name, model.task)
    rows = partial(reference_rows, champion, model, sha, artefacts=artefacts, config=config)
    reference = rows()
    session = OnnxModel.from_bytes(artefacts.get(champion.artefact_sha256))
    # the features as the store records a request's: the profile drift compares with
    features = np.ascontiguousarray(reference.features, dtype=np.float32)
    scores = chunked_scores(session, features, model=champion.model, version=champion.version)
    del session  # and its run buffers, before the profile is built
    if reference.scores is not None and reference.scores.shape == scores.shape:
        # held out (a tuning job's out-of-fold scores): the version's own scores of
        # rows it trained on are overconfident, and so would be the calibration, the
        # reference accuracy and the prediction profile built on them
        scores = np.asarray(reference.scores, dtype=np.float32)
    elif reference.scores is not None:  # registered before the width was checked
        logger.warning(
            "%s: reference scores of shape %s do not match the primary output %s; its "
            "own scores of the reference rows are used instead",
            label,
            list(reference.scores.shape),
            list(scores.shape),
        )
    prediction = prediction_column(model, scores, len(features))
    labels = None if reference.labels is None else np.asarray(reference.labels, np.float64)
    columns: dict[str, Any] = {
        name: features[:, j] for j, name in enumerate(model.feature_names)
    }  # views: each read (as float64) on its own
    columns[PREDICTION] = prediction
    if labels is not None:
        columns[LABEL] = labels
    profile = ReferenceProfile.from_columns(
        columns, column_types=column_types(model, labelled=labels is not None)
    )
    # the features go before the estimate's calibration (an isotonic fit: several
    # copies of the scores)
    del reference, features, columns
    cbpe = None
    accuracy = None
    no_estimate = None
    objective = make_objective(cfg.objective.name, task=model.task, **cfg.objective.params)
    threshold = decision_threshold(objective) if model.task == "binary" else None
    if model.task != "binary":
        no_estimate = "the estimate is of binary models only"
    elif labels is None:
        no_estimate = "the reference snapshot has no labels"
    elif threshold is None:
        no_estimate = (
            f"objective {objective.name!r} decides the positive class below a threshold "
            "of its probability (a cost matrix whose errors cost less than right "
            "decisions): the estimate is of decisions at or above one"
        )
    else:
        # calibrated on the rows with both a score (a time series' first rows have
        # none) and a known label (NaN is unknown): CBPE refused a NaN label, and the
        # reference accuracy counted one as misclassified
        known = np.isfinite(scores).all(axis=1) & ~np.isnan(labels)
        if not known.any():
            no_estimate = "no reference row has both a score and a known label"
        else:
            p = prediction  # the positive class's probability, as positive_proba gives it
            if not known.all():
                p, labels = p[known], labels[known]
            try:
                cbpe = CBPE(threshold=threshold, seed=0).fit(p, labels)
            except EstimationError as exc:  # one class or non-0/1 labels: no estimate,
                # but drift and decay still run (the baseline is cached: said once)
                logger.warning("%s: reference labels cannot calibrate an estimate: %s", label, exc)
                no_estimate = f"the reference labels cannot calibrate an estimate: {exc}"
            else:
                accuracy = float(((p >= threshold) == (labels >= 0.5)).mean())
    return Baseline(
        profile=profile,
        scores=scores,
        has_labels=labels is not None,
        cbpe=cbpe,
        reference_accuracy=accuracy,
        no_estimate=no_estimate,
        rows=rows,
    )
