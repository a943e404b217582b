"""A multiclass version answers as many classes as its model's champion
(:func:`check_class_count`), checked when it registers.

A challenger of four classes beside a champion of three registered as a shadow: its
comparison reads both versions' probabilities for the same labels, and refused it only
then, and promotion (:func:`tunewatch._promotion_signature.check_promotion_signature`)
never could put it in the champion's place. A tuning job's export takes the count of the
version it would replace (:func:`tunewatch._tuning_export.class_count`), and its window
must hold every class (:func:`retune.check_classes`), so its winner passes.
"""

from __future__ import annotations

import logging

import numpy as np

from shadow import OnnxModel, ShadowError, run_rows
from tunewatch._artefacts import ArtefactStore
from tunewatch._errors import ConflictError, StoreError
from tunewatch.store import Store, VersionRow

logger = logging.getLogger(__name__)


def check_class_count(
    store: Store, artefacts: ArtefactStore, model: str, classes: int, *, output: str
) -> None:
    """Refuse (``ConflictError``, ``class_count_mismatch``) a version of the multiclass
    ``model`` whose primary output (``output``) answers ``classes`` columns when its
    champion answers another number. Without a champion any count registers (no version
    serves the model's clients yet); a champion whose artefact cannot be read or run is
    logged and not checked against: it must not block the version that replaces it."""
    champion = store.champion(model)
    if champion is None:
        return
    served = champion_classes(artefacts, champion)
    if served is None or served == classes:
        return
    raise ConflictError(
        f"the champion of model {model!r} (version {champion.version}) answers {served} "
        f"classes; a version must answer as many, got {classes} (output {output!r}): its "
        f"comparison reads both versions' probabilities for the same labels, and it could "
        f"never be promoted. Train it on the classes 0 to {served - 1}, or register a model "
        f"of {classes} classes under another name",
        code="class_count_mismatch",
    )


def champion_classes(artefacts: ArtefactStore, champion: VersionRow) -> int | None:
    """The columns of ``champion``'s primary output: as its graph declares them, else as
    it answers a row of zeros (run as :func:`shadow.run_rows` runs rows: a graph fixing
    its batch at 4 refused a run of one, and a version of another count registered
    unchecked); ``None`` when neither says, or (logged as a warning) when its artefact
    cannot be read, loaded or run."""
    try:
        session = OnnxModel.from_bytes(artefacts.get(champion.artefact_sha256))
        width = session.signature.primary_width
        if width is None:
            spec = session.signature.input
            row = np.zeros((1, session.signature.n_features), dtype=spec.dtype)
            answered = session.primary(run_rows(session, row))
            width = int(answered.shape[1]) if answered.ndim == 2 else None
    except (StoreError, ShadowError) as exc:
        logger.warning(
            "model=%s version=%d cannot be read, loaded or run, a new version's class count "
            "is not checked against it: %s",
            champion.model,
            champion.version,
            exc,
        )
        return None
    return width
