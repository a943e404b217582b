"""Promotion gates: who may promote what, and when a second person must approve.

A promotion waits for an approver who is not the requester when the model is marked
regulated, or when any of the version's hyperparameters lies outside its safe range: the
model's ``safe_ranges``, read at the values the pipeline builds (a name the version does not
record at its default, when the recorded or default choices build it: not ``gb_subsample``
under ``logistic``; a version recording ``{}`` says nothing of how it was built and is read
as it is), or the ``safe:`` bounds of its search space, on the names the version records
(:meth:`~retune.space.SearchSpace.outside_safe_ranges`). A space that cannot be read makes every
promotion wait, and so do hyperparameters the pipeline would not build (a name outside its
vocabulary, a choice it does not take), whose safe ranges cannot be checked. Everything
else is promoted at once. Both paths are
atomic in the store (stage, audit entry and event in one transaction). The store reads the
regulated flag again when it promotes: a model regulated after the rules were read gets an
approval request, not a champion.

Whoever decides, a promoted version serves the champion's clients, whose requests are
read against the champion's signature: :func:`check_promotion_signature` refuses a
version that takes another input (name, width or element type), lacks one of the
champion's outputs or answers one in another element type or width, when it is
promoted, before an approval is requested, and when an approval is decided. A shadow or
a live-split arm may differ so (its rows are cast to its own type, it answers its own
outputs); registration allows it. Rollback is not checked: it restores a champion that
served. A champion whose artefact cannot be read or loaded
here is logged and not checked against: it must not block its own replacement.

Every stage change that puts a version in service — a promotion, an approval, a rollback
(:func:`rollback`) — first reads the version's artefact back (its hash verified) and loads
it, and is refused before anything commits (``ConflictError``, ``artefact_unavailable``)
when that fails: committed, it named a champion no process could serve (the daemon kept
serving the one the store had replaced, and served nothing after a restart). The session
made for the check is dropped: one kept for the load that follows stayed open, a whole
model's memory, when the change was then refused (an approval, ``same_person``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from retune import SearchSpaceError
from retune.space import built_parameters, load_search_space
from shadow import OnnxModel, ShadowError, Signature
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config, SafeRange
from tunewatch._errors import ConflictError, NotFoundError, StoreError
from tunewatch._registry import describe_input, served_signature
from tunewatch._shipped_spaces import DEFAULT_SEARCH_SPACES, default_search_space
from tunewatch.store import MAX_ID, NO_CHAMPION, ApprovalRow, ModelRow, Stage, Store, VersionRow
from tunewatch.store._governance import replaced_champion

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PromotionOutcome:
    status: Literal["promoted", "pending_approval"]
    champion: VersionRow | None = None
    previous: VersionRow | None = None
    approval: ApprovalRow | None = None


def unsafe_hyperparameters(
    params: Mapping[str, Any],
    safe: Mapping[str, SafeRange],
    *,
    defaulted: Collection[str] = (),
) -> list[str]:
    """``name=value not in [low, high]`` for each numeric parameter outside its range,
    and ``name=value not in {choices}`` for categorical ones; a name ``params`` lacks is
    not checked. A name in ``defaulted`` (one the version does not record, in ``params``
    at the pipeline's default) is shown so."""
    out = []
    for name, rule in sorted(safe.items()):
        if name not in params:
            continue
        value = params[name]
        how = " (not recorded: the pipeline's default)" if name in defaulted else ""
        if rule.choices is not None:
            # ``True == 1``: a flag is one of the choices only as a flag, a number as a number
            if not any(
                value == c and isinstance(value, bool) == isinstance(c, bool) for c in rule.choices
            ):
                out.append(f"{name}={value!r}{how} not in {sorted(map(str, rule.choices))}")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.append(f"{name}={value!r}{how} is not numeric")
            continue
        low = -math.inf if rule.low is None else rule.low
        high = math.inf if rule.high is None else rule.high
        if not low <= value <= high:
            out.append(f"{name}={value}{how} not in [{rule.low}, {rule.high}]")
    return out


def as_built(params: Mapping[str, Any]) -> tuple[Mapping[str, Any], frozenset[str]]:
    """The values the pipeline builds ``params`` with (:func:`built_parameters
    <retune.space.built_parameters>`: a name not recorded at its default when the
    recorded, or default, choices build it; ``gb_subsample`` not under ``logistic``), and
    the names it adds. ``{}`` is read as it is: it records nothing of how the version was
    built (one registered by hand; a regression model's ``{}`` would read as the default
    ``logistic``). So is a set the pipeline would not build (``model__C``): the search
    space's check makes its promotion wait, its safe ranges unchecked."""
    if not params:
        return params, frozenset()
    try:
        built = built_parameters(params)
    except SearchSpaceError:
        return params, frozenset()
    return built, frozenset(built) - frozenset(params)


def promotion_rules(model: ModelRow, version: VersionRow, config: Config) -> list[str]:
    """The rules that make this promotion wait for an approver (empty: none)."""
    return _rules(
        config,
        model.name,
        model.task,
        regulated=model.regulated,
        hyperparameters=version.hyperparameters,
    )


def check_champion_registration(
    store: Store,
    config: Config,
    model: str,
    *,
    task: str,
    regulated: bool | None,
    hyperparameters: Mapping[str, Any],
) -> None:
    """A version registered as the champion skips promotion, so it must pass the gate a
    promotion would: where a rule would make the promotion wait (a regulated model, even
    for its first champion; unsafe hyperparameters), the registration is refused
    (``ConflictError``, ``approval_required``) and the operator registers the version as a
    shadow and promotes it. The store refuses a second champion (``champion_exists``)."""
    if _exists(store, model) and store.champion(model) is not None:
        return  # the store refuses it, ``champion_exists``: promote instead
    rules = champion_registration_rules(
        store, config, model, task=task, regulated=regulated, hyperparameters=hyperparameters
    )
    if rules:
        raise ConflictError(
            f"a version cannot be registered as the champion of {model!r} when its promotion "
            f"would wait for an approver ({'; '.join(rules)}): register it as a shadow and "
            "promote it",
            code="approval_required",
        )


def champion_registration_rules(
    store: Store,
    config: Config,
    model: str,
    *,
    task: str,
    regulated: bool | None,
    hyperparameters: Mapping[str, Any],
) -> list[str]:
    """The rules that would make a version registered as the champion wait for an
    approver, were it promoted instead (the model may not exist yet)."""
    row = _exists(store, model)
    if row is None:
        flagged = bool(regulated)
    else:
        flagged, task = row.regulated or bool(regulated), row.task
    return _rules(config, model, task, regulated=flagged, hyperparameters=hyperparameters)


def _exists(store: Store, model: str) -> ModelRow | None:
    try:
        return store.get_model(model)
    except NotFoundError:
        return None


def _rules(
    config: Config,
    model: str,
    task: str,
    *,
    regulated: bool,
    hyperparameters: Mapping[str, Any],
) -> list[str]:
    rules = []
    cfg = config.model(model)
    if regulated or (cfg is not None and cfg.regulated):
        rules.append("regulated model")
    if cfg is not None:
        built, defaulted = as_built(hyperparameters)
        rules += [
            f"outside safe range: {u}"
            for u in unsafe_hyperparameters(built, cfg.safe_ranges, defaulted=defaulted)
        ]
    # not model_or_default: a name from before names were checked may not validate
    space_path = cfg.tuning.search_space if cfg is not None else None
    if space_path is None:
        if task not in DEFAULT_SEARCH_SPACES:
            return rules  # a task the registry refuses: nothing to be promoted
        space_path = default_search_space(task)
    try:
        space = load_search_space(space_path)
    except SearchSpaceError as exc:
        return [*rules, f"search space unreadable, safe ranges not checked: {exc}"]
    try:
        unsafe = space.outside_safe_ranges(hyperparameters)
    except SearchSpaceError as exc:  # not a set the pipeline builds: `model__C`, `Logistic`
        return [*rules, f"safe ranges not checked: {exc}"]
    return rules + [f"outside safe range: {u}" for u in unsafe]


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
    lacks an output the champion answers (a client asking for it gets a 400
    ``unknown_output``), or answers one of them in another element type or shape past the
    first dimension (a client reading column 0 of a binary champion's P(class 1) would
    read P(class 0) in a two-column one; a dimension either leaves unknown differs from a
    known one). Tuned exports copy their parent's input, output names, types and shapes,
    and pass. ``candidate`` is ``target``'s signature where the caller has it
    (:func:`check_servable`). An artefact that cannot be read or loaded from this host's
    artefact directory (missing, damaged, unreadable) is logged, and not checked: a
    champion in that state must not block its replacement."""
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
    missing = sorted(set(served.output_names) - set(candidate.output_names))
    if missing:
        conflicts.append(
            f"it lacks the outputs {missing} the champion answers (it answers "
            f"{sorted(candidate.output_names)})"
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


def _signature(artefacts: ArtefactStore, row: VersionRow) -> Signature | None:
    return served_signature(artefacts, row, unchecked="its promotion signature")


def _checked_champion(
    store: Store,
    artefacts: ArtefactStore,
    target: VersionRow,
    expected: int | None,
    candidate: Signature | None = None,
) -> int | None:
    """Check ``target`` (whose signature is ``candidate``, when known) against the
    champion and return that champion's version, which the promotion then expects
    (``expected`` itself when another champion serves: the store refuses it,
    ``champion_changed``), or ``NO_CHAMPION`` when there is none: a first champion
    registered meanwhile is refused too, and checked against."""
    champion = store.champion(target.model)
    found = None if champion is None else champion.version
    if expected is not None and found != expected:
        return expected
    check_promotion_signature(artefacts, target, champion, candidate=candidate)
    return NO_CHAMPION if found is None else found


def _in_service(target: VersionRow) -> bool:
    """Whether the store refuses to promote ``target`` whatever its artefact: the
    champion already, or rolled back (final). Its artefact is then not read."""
    return target.stage in ("champion", "rolled_back")


def promote(
    store: Store,
    config: Config,
    model: str,
    version: int,
    *,
    actor: str,
    reason: str,
    expected_champion: int | None = None,
    expected_stage: Stage | None = None,
    artefacts: ArtefactStore | None = None,
) -> PromotionOutcome:
    """Promote now, or open an approval request when a rule says a second person must.
    With ``expected_champion`` (the champion the evidence was about), neither happens if
    another champion arrived meanwhile (``ConflictError``, ``champion_changed``); with
    ``expected_stage`` (the stage the caller found the version in), neither happens if
    the version was moved meanwhile (``ConflictError``, ``stage_changed``: an operator
    retired it), the store checking both under the model's lock. Neither
    happens either for a version whose artefact cannot be read back intact or loaded
    (``ConflictError``, ``artefact_unavailable``: :func:`check_servable`), nor for one
    whose signature does not serve the champion's clients (``ConflictError``,
    ``signature_mismatch``: :func:`check_promotion_signature`, with ``artefacts`` those
    under the config's ``data_dir`` unless given); it is checked against the champion the
    store replaces, again if another arrived meanwhile."""
    artefacts = ArtefactStore(config.artefact_dir, store=store) if artefacts is None else artefacts
    row = store.get_model(model)
    target = store.get_version(model, version)
    rules = promotion_rules(row, target, config)
    candidate = None
    if not _in_service(target):  # else the store refuses it
        # an approval request loads nothing in the serving process: the approval does
        candidate = check_servable(artefacts, target)
    while True:
        checked = _checked_champion(store, artefacts, target, expected_champion, candidate)
        try:
            return _promote_checked(
                store,
                config,
                row,
                target,
                rules,
                actor=actor,
                reason=reason,
                expected_champion=checked,
                expected_stage=expected_stage,
            )
        except ConflictError as exc:
            if exc.code != "champion_changed" or expected_champion is not None:
                raise
            # a champion the check did not read arrived: check the version against it


def _promote_checked(
    store: Store,
    config: Config,
    row: ModelRow,
    target: VersionRow,
    rules: list[str],
    *,
    actor: str,
    reason: str,
    expected_champion: int | None,
    expected_stage: Stage | None,
) -> PromotionOutcome:
    model, version = row.name, target.version
    if not rules:
        try:
            new, previous = store.promote(
                model,
                version,
                actor=actor,
                reason=reason,
                expected_champion=expected_champion,
                expected_stage=expected_stage,
            )
        except ConflictError as exc:
            if exc.code != "approval_required":
                raise
            # regulated since it was read: the store reads the flag again under its lock
            rules = promotion_rules(replace(row, regulated=True), target, config)
        else:
            return PromotionOutcome(status="promoted", champion=new, previous=previous)
    approval = store.request_approval(
        model,
        version,
        requested_by=actor,
        reason=reason,
        rules=rules,
        expected_champion=expected_champion,
        expected_stage=expected_stage,
    )
    return PromotionOutcome(status="pending_approval", approval=approval)


def decide_approval(
    store: Store,
    config: Config,
    approval_id: int,
    *,
    approver: str,
    approve: bool,
    reason: str,
    artefacts: ArtefactStore | None = None,
) -> tuple[ApprovalRow, tuple[VersionRow, VersionRow | None] | None]:
    """Approve (the store promotes in the same transaction) or reject an approval
    request. An approval that promotes — its request's champion (or none) still serves:
    approved after another arrived, the store closes it unpromoted — first reads and loads
    its version (:func:`check_servable`) and checks it
    (:func:`check_promotion_signature`) against that champion. A request for a version
    whose artefact is unavailable (``artefact_unavailable``), or opened before promotions
    checked signatures (``signature_mismatch``), is so refused and stays pending, to be
    rejected or approved once its artefact is restored."""
    if approve:
        approval = store.get_approval(approval_id)
        champion = store.champion(approval.model)
        found = None if champion is None else champion.version
        target = store.get_version(approval.model, approval.version)
        if (
            approval.status == "pending"
            and found == approval.champion_version
            and not _in_service(target)
        ):
            artefacts = (
                ArtefactStore(config.artefact_dir, store=store) if artefacts is None else artefacts
            )
            candidate = check_servable(artefacts, target)
            check_promotion_signature(artefacts, target, champion, candidate=candidate)
    return store.decide_approval(approval_id, approver=approver, approve=approve, reason=reason)


def rollback(
    store: Store,
    artefacts: ArtefactStore,
    model: str,
    *,
    actor: str,
    reason: str,
    expected_champion: int | None = None,
) -> tuple[VersionRow, VersionRow]:
    """:meth:`Store.rollback <tunewatch.store.Store.rollback>` (``(restored,
    rolled_back)``), once the version it restores reads back intact and loads
    (:func:`check_servable`; ``ConflictError``,
    ``artefact_unavailable``, and nothing changed, otherwise): committed, the rollback made
    a champion no process could serve, and the version it replaced is rolled back for good.

    It rolls back ``expected_champion`` (the champion the caller saw misbehave) or, without
    it, the champion read here, and no other: a champion that serves instead when the store
    writes — another rollback (the rollback watch's, a retry) restored it meanwhile — is
    refused (``ConflictError``, ``champion_changed``, naming it) and nothing changes.
    Rolling back the newcomer instead made a good version ``rolled_back``, which is final."""
    store.get_model(model)  # an unknown model (a name no model can have): 404
    current = store.champion(model)
    found = None if current is None else current.version
    if found is not None and expected_champion in (None, found):  # else refused
        restored = _rollback_target(store, model, found)
        if restored is not None and restored.stage != "rolled_back":  # else refused
            check_servable(artefacts, restored)
    if expected_champion is not None:
        expected = expected_champion
    else:  # what was read: no champion is "none", which a first champion arriving changes
        expected = NO_CHAMPION if found is None else found
    try:
        return store.rollback(model, actor=actor, reason=reason, expected_champion=expected)
    except ConflictError as exc:
        if exc.code != "champion_changed":
            raise
        raise ConflictError(
            f"{exc.message}; nothing was rolled back (a rollback rolls back only the "
            "champion it names, or that it read: name the current one to roll it back)",
            code="champion_changed",
        ) from exc


def _rollback_target(store: Store, model: str, champion: int) -> VersionRow | None:
    """The version a rollback of ``champion`` restores, read as the store reads it
    (:func:`~tunewatch.store._governance.replaced_champion`); ``None`` when there is none
    (the store refuses the rollback, ``no_previous_champion``)."""
    promotions = store.list_events(model=model, type="promoted", limit=MAX_ID)
    previous = replaced_champion((e.payload for e in promotions), champion)
    if previous is None:
        return None
    try:
        return store.get_version(model, previous)
    except NotFoundError:
        return None  # the store refuses it
