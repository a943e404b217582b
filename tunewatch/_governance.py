"""Promotion gates: who may promote what, and when a second person must approve.

A promotion waits for an approver who is not the requester when the model is marked
regulated, or when any of the version's hyperparameters lies outside its safe range: the
model's ``safe_ranges`` or the ``safe:`` bounds of its search space (a space that cannot be
read makes every promotion wait). Everything else is promoted at once. Both paths are
atomic in the store (stage, audit entry and event in one transaction). The store reads the
regulated flag again when it promotes: a model regulated after the rules were read gets an
approval request, not a champion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from retune import SearchSpaceError
from retune.space import load_search_space
from tunewatch._config import Config, SafeRange
from tunewatch._errors import ConflictError, NotFoundError
from tunewatch._tuning import DEFAULT_SEARCH_SPACES, default_search_space
from tunewatch.store import ApprovalRow, ModelRow, Store, VersionRow


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


def promote(
    store: Store,
    config: Config,
    model: str,
    version: int,
    *,
    actor: str,
    reason: str,
    expected_champion: int | None = None,
) -> PromotionOutcome:
    """Promote now, or open an approval request when a rule says a second person must.
    With ``expected_champion`` (the champion the evidence was about), neither happens if
    another champion arrived meanwhile (``ConflictError``, ``champion_changed``)."""
    row = store.get_model(model)
    target = store.get_version(model, version)
    rules = promotion_rules(row, target, config)
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
