"""Whether a version can be put in service, and in the champion's place.

Whoever decides, a promoted version serves the champion's clients, whose requests are
read against the champion's signature: :func:`check_promotion_signature` refuses a
version that takes another input (name, width or element type) or a fixed number of rows
per request where the champion takes any or another number, lacks one of the champion's
outputs or answers one in another element type or width. A shadow or a
live-split arm may differ so (its rows are cast to its own type, it answers its own
outputs); registration allows it. :func:`check_servable` reads a version's artefact back
(its hash verified) and loads it in a session made and dropped here, before any stage
change that puts the version in service commits.
"""

from __future__ import annotations

from shadow import OnnxModel, ShadowError, Signature
from tunewatch._artefacts import ArtefactStore
from tunewatch._errors import ConflictError, StoreError
from tunewatch._registry import describe_input, served_signature
from tunewatch.store import VersionRow


def check_servable(artefacts: ArtefactStore, target: VersionRow) -> Signature:
    """``target``'s signature, once its artefact is read back intact and loaded (in a
    session made and dropped here); refuse (``ConflictError``, ``artefact_unavailable``)
    to put it in service when its artefact is missing, damaged or unreadable, or
    onnxruntime cannot load it. Called before the stage change commits, so that nothing
    is changed for such a version."""
    try:
        return OnnxModel.from_bytes(artefacts.get(target.artefact_sha256)).signature
    except (StoreError, ShadowError) as exc:
        raise ConflictError(
            f"model {target.model!r} version {target.version} cannot be put in service, and "
            f"nothing was changed: {exc.message}; restore its artefact "
            f"{target.artefact_sha256} (under {artefacts.root}) and try again",
            code="artefact_unavailable",
        ) from exc


def check_promotion_signature(
    artefacts: ArtefactStore,
    target: VersionRow,
    champion: VersionRow | None,
    *,
    candidate: Signature | None = None,
) -> None:
    """Refuse (``ConflictError``, ``signature_mismatch``) to put ``target`` in the place of
    ``champion`` when it takes another input than the champion (name, width or element
    type: a client's FP32 request to a float64 champion is a 400 ``dtype_mismatch``),
    takes a fixed number of rows per request where the champion takes any or another
    number (a batch dimension fixed at 1, as torch.onnx.export gives without
    ``dynamic_axes``, answers a 3-row request with a 400 ``shape_mismatch``; a dynamic
    batch replaces a fixed one), lacks an output the champion answers (a client asking for
    it gets a 400 ``unknown_output``), or answers one of them in another element type or
    shape past the first dimension (a client reading column 0 of a binary champion's
    P(class 1) would read P(class 0) in a two-column one; a dimension either leaves
    unknown differs from a known one). Tuned exports copy their parent's input, output
    names, types and shapes, and pass. ``candidate`` is ``target``'s signature where the
    caller has it (:func:`check_servable`). An artefact that cannot be read or loaded from
    this host's artefact directory (missing, damaged, unreadable) is logged, and not
    checked: a champion in that state must not block its replacement."""
    if champion is None or champion.version == target.version:
        return
    served = _signature(artefacts, champion)
    if candidate is None:
        candidate = _signature(artefacts, target)
    if served is None or candidate is None:
        return
    conflicts = []
    if (candidate.input.name, candidate.input.dtype, candidate.input.shape[1:]) != (
        served.input.name,
        served.input.dtype,
        served.input.shape[1:],
    ):
        conflicts.append(
            f"it takes input {describe_input(candidate.input)}, the champion "
            f"{describe_input(served.input)}"
        )
    batch = _batch_conflict(candidate.input.shape[0], served.input.shape[0])
    if batch is not None:
        conflicts.append(batch)
    missing = sorted(set(served.output_names) - set(candidate.output_names))
    if missing:
        conflicts.append(
            f"it lacks the outputs {missing} the champion answers (it answers "
            f"{sorted(candidate.output_names)})"
        )
    if candidate.primary_output != served.primary_output:
        conflicts.append(
            f"its primary output (the one its shadow runs recorded, the comparison judged "
            f"and registration checked) is {candidate.primary_output!r}, the champion's "
            f"{served.primary_output!r}: promoted on one output, it would answer the "
            "champion's clients from another, never judged"
        )
    for theirs in served.outputs:
        if theirs.name not in candidate.output_names:
            continue
        ours = candidate.output(theirs.name)
        if (ours.dtype, ours.shape[1:]) != (theirs.dtype, theirs.shape[1:]):
            conflicts.append(
                f"it answers output {describe_input(ours)}, the champion {describe_input(theirs)}"
            )
    if conflicts:
        raise ConflictError(
            f"model {target.model!r}: version {target.version} cannot replace the champion "
            f"(version {champion.version}), whose clients' requests it would read: "
            f"{'; '.join(conflicts)}",
            code="signature_mismatch",
        )


def _batch_conflict(ours: int | None, theirs: int | None) -> str | None:
    """Why a candidate whose input's batch dimension (dimension 0) is ``ours`` cannot read
    the requests of a champion whose is ``theirs`` (``None``: any number of rows), or
    ``None`` when it reads them all: a dynamic batch takes any request, a fixed one only
    requests of exactly that many rows (onnxruntime refuses others, a 400
    ``shape_mismatch``)."""
    if ours is None or ours == theirs:
        return None
    takes = "any number" if theirs is None else f"exactly {theirs}"
    return (
        f"its input's batch dimension (dimension 0) is fixed at {ours}: it takes exactly "
        f"{ours} row{'' if ours == 1 else 's'} per request, the champion {takes} (export "
        f"it with a dynamic batch dimension, e.g. torch.onnx.export's dynamic_axes)"
    )


def _signature(artefacts: ArtefactStore, row: VersionRow) -> Signature | None:
    return served_signature(artefacts, row, unchecked="its promotion signature")
