"""The promotion rules a bundle brings: its source's config for the model (``regulated``,
``safe_ranges``) and search space (the bundled one's ``safe:`` bounds; the task's default
space where the source's config names none, as the source's governance read it). An import
makes the bundle's champion the target's only where neither these nor the target's own rules
would make its promotion wait for an approver (:func:`tunewatch._bundle_import.plan`): the
target's config need not list the model yet (the CLI advises merging the bundle's config into
it after the import), and a champion its own config holds back must not arrive in service.

What cannot be read (a safe range or a search space that does not load, a space the config
names that the bundle lacks) makes the promotion wait, as an unreadable space of the
target's does (:mod:`tunewatch._governance`)."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from retune import SearchSpaceError
from retune.space import SearchSpace, load_search_space, parse_search_space, read_yaml
from tunewatch._approval_rules import as_built, champion_registration_rules, unsafe_hyperparameters
from tunewatch._bundle_archive import read_space
from tunewatch._config import Config, SafeRange
from tunewatch._shipped_spaces import DEFAULT_SEARCH_SPACES, default_search_space
from tunewatch.store import Store

CONFIG = "the bundle's config"
SPACE = "the bundle's search space"


@dataclass(frozen=True, slots=True)
class BundledRules:
    """The source's rules for the bundle's model: ``unchecked`` holds what makes every
    promotion wait (what could not be read), each rule with where it comes from."""

    regulated: bool
    safe_ranges: Mapping[str, SafeRange]
    space: SearchSpace | None
    unchecked: tuple[tuple[str, str], ...]

    def rules(self, hyperparameters: Mapping[str, Any], *, known: list[str]) -> list[str]:
        """The rules that would make promoting a version of ``hyperparameters`` wait for an
        approver under the bundle's own config, worded as the target's (:func:`promotion_rules
        <tunewatch._approval_rules.promotion_rules>`) and followed by where they come from; a
        rule the target's holds too (``known``) is left to the target's wording."""
        found: list[tuple[str, str]] = []
        if self.regulated:
            found.append(("regulated model", CONFIG))
        built, defaulted = as_built(hyperparameters)
        found += [
            (f"outside safe range: {u}", CONFIG)
            for u in unsafe_hyperparameters(built, self.safe_ranges, defaulted=defaulted)
        ]
        if self.space is not None:
            try:
                unsafe = self.space.outside_safe_ranges(hyperparameters)
            except SearchSpaceError as exc:  # not a set the pipeline builds
                found.append((f"safe ranges not checked: {exc}", SPACE))
            else:
                found += [(f"outside safe range: {u}", SPACE) for u in unsafe]
        found += self.unchecked
        return [f"{rule} ({where})" for rule, where in found if rule not in known]


def champion_held(
    store: Store,
    config: Config,
    target: str,
    entry: Mapping[str, Any],
    *,
    task: str,
    regulated: bool | None,
    own_rules: BundledRules,
    current: int | None,
    new_champion: int | None,
) -> tuple[str, ...]:
    """Why the bundle's champion ``entry`` is not to be model ``target``'s (empty: it is):
    the champion the target has (``current``), or the bundle's version that this import
    makes champion (``new_champion``), else the rules that would make its promotion wait
    for an approver, the target's (``config``, the model's ``regulated`` flag or the one the
    import asks for) first, then the bundle's own."""
    if new_champion is not None:
        return (f"the bundle's version {new_champion} becomes the champion",)
    if current is not None:
        return (f"model {target!r} has a champion (version {current})",)
    rules = champion_registration_rules(
        store,
        config,
        target,
        task=task,
        regulated=regulated,
        hyperparameters=entry["hyperparameters"],
    )
    return (*rules, *own_rules.rules(entry["hyperparameters"], known=rules))


def bundled_rules(archive: zipfile.ZipFile, manifest: Mapping[str, Any]) -> BundledRules:
    """The rules of ``manifest``'s config (``None``: the source's config did not list the
    model, whose defaults then applied) and search space, read from ``archive``."""
    config = manifest.get("config") or {}
    unchecked: list[tuple[str, str]] = []
    safe: dict[str, SafeRange] = {}
    ranges = config.get("safe_ranges") or {}
    if not isinstance(ranges, Mapping):
        unchecked.append((f"`safe_ranges` unreadable, not checked: got {ranges!r:.200}", CONFIG))
        ranges = {}
    for name, rule in ranges.items():
        try:
            safe[str(name)] = SafeRange.model_validate(rule)
        except ValidationError as exc:
            why = exc.errors()[0]["msg"]
            unchecked.append((f"safe range {name!r:.80} unreadable, not checked: {why}", CONFIG))
    space, problem = _space(archive, manifest, config)
    if problem is not None:
        unchecked.append((problem, SPACE))
    return BundledRules(
        # anything but false or absent: a hand-made manifest's "yes" regulates
        regulated=config.get("regulated", False) not in (False, None),
        safe_ranges=safe,
        space=space,
        unchecked=tuple(unchecked),
    )


def _space(
    archive: zipfile.ZipFile, manifest: Mapping[str, Any], config: Mapping[str, Any]
) -> tuple[SearchSpace | None, str | None]:
    """The source's search space, or why it cannot be read: the bundled one, else the
    task's default where the config names none (``None`` for a task the registry refuses)."""
    data = read_space(archive, manifest)
    if data is None:
        tuning = config.get("tuning")
        named = tuning.get("search_space") if isinstance(tuning, Mapping) else None
        if named is not None:
            return None, f"search space {named!r:.200} not in the bundle, safe ranges not checked"
        task = manifest["model"]["task"]
        if task not in DEFAULT_SEARCH_SPACES:
            return None, None
        try:
            return load_search_space(default_search_space(task)), None
        except SearchSpaceError as exc:
            return None, f"search space unreadable, safe ranges not checked: {exc}"
    try:
        parsed = read_yaml(data.decode("utf-8"))
        if not isinstance(parsed, dict):
            raise SearchSpaceError("a search space must be a mapping at the top level")
        return parse_search_space(parsed), None
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError, SearchSpaceError) as exc:
        return None, f"search space unreadable, safe ranges not checked: {exc}"
