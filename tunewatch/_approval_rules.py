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

The ranges are checked twice: from the config of the process that promotes (when it lists
the model; else the task's default space), and as the daemon stored them from its own
config when it started (:func:`store_configured_safe_ranges`,
:attr:`~tunewatch.store.ModelRow.stored_safe_ranges`). A version outside either waits, so a
stale or missing config (``tunewatch promote`` with only the store's URL, a replica still on
an older config) only adds approvals, never removes one. A rule only the stored ranges find
says so ("outside safe range (stored by the daemon): ..."); one both find is shown once, in
the caller's words. The regulated flag is stored with them
(:attr:`~tunewatch.store.StoredSafeRanges.regulated`), for a model its daemon's config
regulates that is not registered yet: a first champion registered under another config
waits too ("regulated model (stored by the daemon)"), and the model's first registration
creates it regulated (:func:`tunewatch.store._registration.register_version`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping
from typing import Any

from retune import SearchSpaceError
from retune.space import (
    CategoricalParam,
    SearchSpace,
    built_parameters,
    load_search_space,
    outside_safe,
)
from tunewatch._config import Config, ModelConfig, SafeRange
from tunewatch._errors import ConflictError, NotFoundError
from tunewatch._shipped_spaces import DEFAULT_SEARCH_SPACES, default_search_space
from tunewatch.store import ModelRow, SafeBound, Store, StoredSafeRanges, VersionRow

logger = logging.getLogger(__name__)

#: Where a rule found only by the ranges the daemon stored comes from, in its text.
STORED = "stored by the daemon"
#: The rule a regulated model's promotion waits on.
REGULATED = "regulated model"
#: The audit reason of a daemon storing the ranges its config sets.
CONFIG_REASON = "the config of this daemon sets them (`models[].safe_ranges`, its search space)"


def unsafe_hyperparameters(
    params: Mapping[str, Any],
    safe: Mapping[str, SafeRange | SafeBound],
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
        stored=model.stored_safe_ranges,
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
    if row is None:  # the daemon stores a listed model's ranges and regulation before it
        # is registered (:func:`store_configured_safe_ranges`), which ``_rules`` reads
        flagged, stored = bool(regulated), store.stored_safe_ranges(model)
    else:
        flagged, task = row.regulated or bool(regulated), row.task
        stored = row.stored_safe_ranges
    return _rules(
        config, model, task, regulated=flagged, hyperparameters=hyperparameters, stored=stored
    )


def configured_safe_ranges(cfg: ModelConfig) -> StoredSafeRanges:
    """The ranges a promotion of the model ``cfg`` configures is checked against, as a
    daemon stores them: its ``safe_ranges`` and the ``safe:`` bounds of its search space
    (the task's default where it names none), read now, and its ``regulated`` flag."""
    safe = {
        name: SafeBound(low=rule.low, high=rule.high, choices=rule.choices)
        for name, rule in cfg.safe_ranges.items()
    }
    regulated = cfg.regulated
    path = cfg.tuning.search_space
    if path is None:
        if cfg.task not in DEFAULT_SEARCH_SPACES:
            return StoredSafeRanges(safe_ranges=safe, regulated=regulated)
        path = default_search_space(cfg.task)
    try:
        space = load_search_space(path)
    except SearchSpaceError as exc:
        return StoredSafeRanges(
            safe_ranges=safe, search_space_unreadable=str(exc), regulated=regulated
        )
    return StoredSafeRanges(
        safe_ranges=safe, search_space=_space_bounds(space), regulated=regulated
    )


def store_configured_safe_ranges(
    store: Store, config: Config, *, actor: str = "tunewatch"
) -> list[str]:
    """Store the ranges of every model ``config`` lists (:func:`configured_safe_ranges`),
    registered or not, so that a promotion run under another config (or none) checks them
    too; each change is audited (``set_safe_ranges``, old and new values). A daemon calls
    it when it starts. The models whose ranges changed.

    With them, whether the config regulates the model: a model not registered yet has no
    flag of its own, and a first champion registered under a config that does not list it
    went into service with no approver. Stored regulated, it stays so (regulation only
    tightens), and the model's first registration creates it regulated."""
    changed = []
    for cfg in config.models:
        ranges = configured_safe_ranges(cfg)
        if store.set_safe_ranges(cfg.name, ranges, actor=actor, reason=CONFIG_REASON):
            logger.info("model=%s: stored the promotion safe ranges its config sets", cfg.name)
            changed.append(cfg.name)
    return changed


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
    stored: StoredSafeRanges | None,
) -> list[str]:
    rules = _configured_rules(
        config, model, task, regulated=regulated, hyperparameters=hyperparameters
    )
    if stored is not None and stored.regulated and REGULATED not in rules:
        # the model's flag may not be set yet: not registered when the daemon stored it,
        # or registered by a build that did not read it and not yet regulated by the daemon
        rules.insert(0, f"{REGULATED} ({STORED})")
    if stored is not None:
        # a rule the caller's config found too is shown once, in its words
        rules += [
            f"{head} ({STORED}): {detail}"
            for head, detail in _stored_rules(stored, hyperparameters)
            if f"{head}: {detail}" not in rules
        ]
    return rules


def _stored_rules(
    stored: StoredSafeRanges, hyperparameters: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """The rules the ranges a daemon stored find, as (rule, detail), worded as those of a
    config: its ``safe_ranges`` read at the values the pipeline builds, its search space's
    ``safe:`` bounds on the names the version records (as
    :meth:`~retune.space.SearchSpace.outside_safe_ranges` reads them)."""
    if stored.unreadable is not None:
        return [("safe ranges not checked", stored.unreadable)]
    built, defaulted = as_built(hyperparameters)
    found = [
        ("outside safe range", u)
        for u in unsafe_hyperparameters(built, stored.safe_ranges, defaulted=defaulted)
    ]
    if stored.search_space_unreadable is not None:
        found.append(
            ("search space unreadable, safe ranges not checked", stored.search_space_unreadable)
        )
    found += [
        ("outside safe range", u)
        for u in _outside_space_bounds(hyperparameters, stored.search_space)
    ]
    return found


def _space_bounds(space: SearchSpace) -> dict[str, SafeBound]:
    """The ``safe:`` bounds of ``space``, by parameter (conditional ones included)."""
    out = {}
    for name, decl in space.declarations().items():
        if decl.safe is None:
            continue
        if isinstance(decl, CategoricalParam):
            out[name] = SafeBound(choices=tuple(decl.safe))
        else:
            out[name] = SafeBound(low=decl.safe[0], high=decl.safe[1])
    return out


def _outside_space_bounds(params: Mapping[str, Any], bounds: Mapping[str, SafeBound]) -> list[str]:
    """What :meth:`~retune.space.SearchSpace.outside_safe_ranges` says of ``params``, for
    a space's ``safe:`` bounds as stored (the pipeline's vocabulary is the caller's
    space's to check)."""
    problems = []
    for name, value in params.items():
        bound = bounds.get(name)
        if bound is None:
            continue
        low = -math.inf if bound.low is None else bound.low
        high = math.inf if bound.high is None else bound.high
        problem = outside_safe(name, value, choices=bound.choices, bounds=(low, high))
        if problem is not None:
            problems.append(problem)
    return problems


def _configured_rules(
    config: Config,
    model: str,
    task: str,
    *,
    regulated: bool,
    hyperparameters: Mapping[str, Any],
) -> list[str]:
    """The rules of the caller's config (the model's defaults where it does not list
    it), and the regulated flag."""
    rules = []
    cfg = config.model(model)
    if regulated or (cfg is not None and cfg.regulated):
        rules.append(REGULATED)
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
