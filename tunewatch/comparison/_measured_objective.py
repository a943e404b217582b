"""What a test measures (:class:`MeasuredObjective`): the objective its state records, and
whether the model's objective is still that one (:func:`objective_change`). A test's sums
are of that objective's per-request losses: kept across a change of the model's
objective, log-loss differences were added to accuracy differences and a challenger
worse on accuracy was promoted. Objectives are compared by what they build, not by how
the config spells them (a default written out is the same objective)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.objectives import ObjectiveError, make_objective, objective_setup
from tunewatch.store._canonical import canonical_json, json_roundtrip
from tunewatch.store._comparisons import ComparisonTestRow

#: The key of a test's state naming the objective it measures (see
#: :meth:`MeasuredObjective.as_state`); absent from states stored before it was kept.
OBJECTIVE = "objective"
#: The key of a test's state holding the earliest ``received_at`` it reads (ISO time): a
#: test that followed one closed for a change of objective reads no request of its.
OBJECTIVE_SINCE = "objective_since"
#: The key of the outcome of a test closed because the model's objective changed (the
#: objective's key before and after): a test follows it.
OBJECTIVE_CHANGED = "objective_changed"


@dataclass(frozen=True, slots=True)
class MeasuredObjective:
    """The objective a test measures: the configured name and parameters as written (what
    a test's state records) and :attr:`key`, a short hash of the canonical JSON of what
    they build for the model's ``task`` (:attr:`setup`: defaults filled in). Hashed as
    written, ``accuracy {}`` and ``accuracy {threshold: 0.5}`` differed, and writing out
    a default closed every open test and watch as "objective changed"."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    task: str | None = field(default=None, compare=False)

    @property
    def setup(self) -> dict[str, Any] | None:
        """What the objective built for :attr:`task` is, whole numbers as floats (``None``:
        no task, or it no longer builds; its key is then of the params as written)."""
        if self.task is None:
            return None
        try:
            made = make_objective(self.name, task=self.task, **self.params)
        except (ObjectiveError, TypeError, ValueError):
            return None
        return dict(_as_floats(objective_setup(made)))

    @property
    def key(self) -> str:
        setup = self.setup
        text = canonical_json(setup or {"name": self.name, "params": dict(self.params)})
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def __str__(self) -> str:
        return self.name if not self.params else f"{self.name} {canonical_json(dict(self.params))}"

    def as_state(self) -> dict[str, Any]:
        return {"name": self.name, "params": json_roundtrip(dict(self.params)), "key": self.key}


def _as_floats(value: Any) -> Any:
    """``value`` with its whole numbers as floats, at any depth: ``beta: 1`` is 1.0."""
    if isinstance(value, Mapping):
        return {k: _as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_floats(v) for v in value]
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def recorded_objective(
    state: Mapping[str, Any], task: str | None = None
) -> MeasuredObjective | None:
    """The objective ``state`` records, as written (``None``: none, a state stored before
    it was), resolved for a model of ``task`` when it is compared (:attr:`~.key`)."""
    item = state.get(OBJECTIVE)
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
        return None
    params = item.get("params")
    written = dict(params) if isinstance(params, Mapping) else {}
    return MeasuredObjective(str(item["name"]), written, task)


def objective_change(
    test: ComparisonTestRow, objective: MeasuredObjective, kind: str
) -> str | None:
    """Why ``test`` no longer measures ``objective``, which a test of ``kind`` compares
    (``None``: it does, or nothing says otherwise). A test that records no objective
    measures another only when its kind does: a DeLong test compares ROC AUC, a paired
    test or a watch a per-request loss. Compared by :attr:`MeasuredObjective.key`, of what
    the two build: spelt apart (a default written out), they are one."""
    was = recorded_objective(test.state, objective.task)
    if was is not None:
        if was.key == objective.key:
            return None
        return f"objective changed from {was} to {objective}"
    if test.kind == kind or test.kind in ("rollback_watch", "split"):
        return None  # unknown: it adopts the objective (see the module docstring)
    before = "roc_auc" if test.kind == "delong" else "an unrecorded per-request loss"
    return f"objective changed from {before} to {objective}"


def adopting(state: Mapping[str, Any], objective: MeasuredObjective) -> dict[str, Any] | None:
    """``state`` recording ``objective``, when it records none (``None``: it does)."""
    if recorded_objective(state) is not None:
        return None
    return {**state, OBJECTIVE: objective.as_state()}


def changed_objective(test: ComparisonTestRow) -> bool:
    """Whether ``test`` was closed because the model's objective changed: a test follows
    it (it may be still to start, if the run that closed it stopped there)."""
    return (
        test.status == "closed" and test.outcome is not None and OBJECTIVE_CHANGED in test.outcome
    )


def closing_outcome(
    test: ComparisonTestRow, objective: MeasuredObjective, why: str
) -> dict[str, Any]:
    """The outcome of ``test`` closed for a change of objective, ``why``."""
    was = recorded_objective(test.state, objective.task)
    return {
        "action": "closed",
        "reason": why,
        OBJECTIVE_CHANGED: {"from": None if was is None else was.key, "to": objective.key},
    }
