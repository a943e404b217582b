"""Promotion gates: who may promote what, and when a second person must approve.

A promotion waits for an approver who is not the requester when the model is marked
regulated, or when any of the version's hyperparameters lies outside its safe range: the
model's ``safe_ranges`` or the ``safe:`` bounds of its search space (a space that cannot be
read makes every promotion wait). Everything else is promoted at once. Both paths are
atomic in the store (stage, audit entry and event in one transaction). The store reads the
regulated flag again when it promotes: a model regulated after the rules were read gets an
approval request, not a champion.

Whoever decides, a promoted version serves the champion's clients, whose requests are
read against the champion's signature: :func:`check_promotion_signature` refuses a
version that takes another input (name, width or element type) or lacks one of the
champion's outputs, when it is promoted, before an approval is requested, and when an
approval is decided. A shadow or a live-split arm may differ so (its rows are cast to its
own type, it answers its own outputs); registration allows it. Rollback is not checked:
it restores a champion that served.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from retune import SearchSpaceError
from retune.space import load_search_space
from shadow import OnnxModel, Signature
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config, SafeRange
from tunewatch._errors import ConflictError, NotFoundError
from tunewatch._registry import describe_input
from tunewatch._tuning import DEFAULT_SEARCH_SPACES, default_search_space
from tunewatch.store import NO_CHAMPION, ApprovalRow, ModelRow, Store, VersionRow

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PromotionOutcome:
    status: Literal["promoted", "pending_approval"]
    champion: VersionRow | None = None
    previous: VersionRow | None = None
    approval: ApprovalRow | None = None


def unsafe_hyperparameters(params: Mapping[str, Any], safe: Mapping[str, SafeRange]) -> list[str]:
    """``name=value not in [low, high]`` for each numeric parameter outside its range,
    and ``name=value not in {choices}`` for categorical ones."""
    out = []
    for name, rule in sorted(safe.items()):
        if name not in params:
            continue
        value = params[name]
        if rule.choices is not None:
            # ``True == 1``: a flag is one of the choices only as a flag, a number as a number
            if not any(
                value == c and isinstance(value, bool) == isinstance(c, bool) for c in rule.choices
            ):
                out.append(f"{name}={value!r} not in {sorted(map(str, rule.choices))}")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.append(f"{name}={value!r} is not numeric")
            continue
        low = -math.inf if rule.low is None else rule.low
        high = math.inf if rule.high is None else rule.high
        if not low <= value <= high:
            out.append(f"{name}={value} not in [{rule.low}, {rule.high}]")
    return out


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
        rules += [
            f"outside safe range: {u}"
            for u in unsafe_hyperparameters(hyperparameters, cfg.safe_ranges)
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
    return rules + [f"outside safe range: {u}" for u in space.outside_safe_ranges(hyperparameters)]


def check_promotion_signature(
    artefacts: ArtefactStore, target: VersionRow, champion: VersionRow | None
) -> None:
    """Refuse (``ConflictError``, ``signature_mismatch``) to put ``target`` in the place of
    ``champion`` when it takes another input than the champion (name, width or element
    type: a client's FP32 request to a float64 champion is a 400 ``dtype_mismatch``) or
    lacks an output the champion answers (a client asking for it gets a 400
    ``unknown_output``). Tuned exports copy their parent's input and output names, and
    pass. An artefact missing from this host's artefact directory is logged, and not
    checked."""
    if champion is None or champion.version == target.version:
        return
    served = _signature(artefacts, champion)
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
    if conflicts:
        raise ConflictError(
            f"model {target.model!r}: version {target.version} cannot replace the champion "
            f"(version {champion.version}), whose clients' requests it would read: "
            f"{'; '.join(conflicts)}",
            code="signature_mismatch",
        )


def _signature(artefacts: ArtefactStore, row: VersionRow) -> Signature | None:
    try:
        data = artefacts.get(row.artefact_sha256)
    except NotFoundError as exc:
        logger.warning(
            "model=%s version=%d: its promotion signature is not checked: %s",
            row.model,
            row.version,
            exc,
        )
        return None
    return OnnxModel.from_bytes(data).signature


def _checked_champion(
    store: Store, artefacts: ArtefactStore, target: VersionRow, expected: int | None
) -> int | None:
    """Check ``target`` against the champion and return that champion's version, which
    the promotion then expects (``expected`` itself when another champion serves: the
    store refuses it, ``champion_changed``), or ``NO_CHAMPION`` when there is none: a
    first champion registered meanwhile is refused too, and checked against."""
    champion = store.champion(target.model)
    found = None if champion is None else champion.version
    if expected is not None and found != expected:
        return expected
    check_promotion_signature(artefacts, target, champion)
    return NO_CHAMPION if found is None else found


def promote(
    store: Store,
    config: Config,
    model: str,
    version: int,
    *,
    actor: str,
    reason: str,
    expected_champion: int | None = None,
    artefacts: ArtefactStore | None = None,
) -> PromotionOutcome:
    """Promote now, or open an approval request when a rule says a second person must.
    With ``expected_champion`` (the champion the evidence was about), neither happens if
    another champion arrived meanwhile (``ConflictError``, ``champion_changed``). Neither
    happens either for a version whose signature does not serve the champion's clients
    (``ConflictError``, ``signature_mismatch``: :func:`check_promotion_signature`, with
    ``artefacts`` those under the config's ``data_dir`` unless given); it is checked
    against the champion the store replaces, again if another arrived meanwhile."""
    artefacts = ArtefactStore(config.artefact_dir) if artefacts is None else artefacts
    row = store.get_model(model)
    target = store.get_version(model, version)
    rules = promotion_rules(row, target, config)
    while True:
        checked = _checked_champion(store, artefacts, target, expected_champion)
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
) -> PromotionOutcome:
    model, version = row.name, target.version
    if not rules:
        try:
            new, previous = store.promote(
                model, version, actor=actor, reason=reason, expected_champion=expected_champion
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
    request. An approval's version is checked (:func:`check_promotion_signature`) against
    the champion it was requested against, if that still serves: approved after another
    arrived, the store closes it unpromoted. A request opened before promotions checked
    signatures is so refused (``signature_mismatch``) and stays pending, to be rejected."""
    if approve:
        approval = store.get_approval(approval_id)
        champion = store.champion(approval.model)
        if (
            approval.status == "pending"
            and champion is not None
            and champion.version == approval.champion_version
        ):
            check_promotion_signature(
                ArtefactStore(config.artefact_dir) if artefacts is None else artefacts,
                store.get_version(approval.model, approval.version),
                champion,
            )
    return store.decide_approval(approval_id, approver=approver, approve=approve, reason=reason)
