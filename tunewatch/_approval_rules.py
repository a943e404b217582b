"""The rules that make a promotion wait for an approver who is not the requester.

A promotion waits when the model is marked regulated, or when any of the version's
hyperparameters lies outside its safe range: the model's ``safe_ranges``, read at the
values the pipeline builds (a name the version does not record at its default, when the
recorded or default choices build it: not ``gb_subsample`` under ``logistic``; a version
recording ``{}`` says nothing of how it was built and is read as it is), or the ``safe:``
bounds of its search space, on the names the version records
(:meth:`~retune.space.SearchSpace.outside_safe_ranges`). A space that cannot be read makes
every promotion wait, and so do hyperparameters the pipeline would not build (a name
outside its vocabulary, a choice it does not take), whose safe ranges cannot be checked.
A version registered as the champion skips promotion, so it must pass the same gate
(:func:`check_champion_registration`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from retune import SearchSpaceError
from retune.space import built_parameters, load_search_space
from tunewatch._config import Config, SafeRange
from tunewatch._errors import ConflictError, NotFoundError
from tunewatch._shipped_spaces import DEFAULT_SEARCH_SPACES, default_search_space
from tunewatch.store import ModelRow, Store, VersionRow


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
