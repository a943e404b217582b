"""Warm start from history: the input (trials of earlier studies), the output (a
serialisable :class:`WarmStartPlan`) and the strategy interface.

Objective values of earlier studies were measured on other data; after drift they are
on another scale, so strategies rank configurations by their *rank within their own
study* (``HistoryTrial.rank``: 0 = that study's best, 1 = its worst), never by raw value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy.stats import rankdata

from monitor.objectives import Objective, objective_setup
from retune._errors import WarmStartError
from retune.space import SearchSpace

PLAN_FORMAT_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class HistoryTrial:
    """One finished trial of an earlier study (values are losses: lower is better)."""

    study_name: str
    number: int
    params: Mapping[str, Any]
    value: float
    rank: float = 0.0


@dataclass(frozen=True, kw_only=True)
class History:
    """Completed trials of earlier studies, oldest study first, ranks normalised per study.

    ``objectives`` holds what each study's losses mean, as it was pinned with the study
    (:func:`objective_setup`; ``None`` for a study that recorded none): a study tuned for
    another objective ranks configurations by another loss (:meth:`tuned_for`).
    """

    trials: tuple[HistoryTrial, ...] = ()
    study_names: tuple[str, ...] = ()
    objectives: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)

    @classmethod
    def from_trials(
        cls,
        trials: Iterable[HistoryTrial],
        *,
        objectives: Mapping[str, Mapping[str, Any] | None] | None = None,
    ) -> History:
        """Rank-normalise values within each study (ties share their mean rank)."""
        items = [t for t in trials if math.isfinite(t.value)]
        names = tuple(dict.fromkeys(t.study_name for t in items))
        ranked: list[HistoryTrial] = []
        for name in names:
            own = [t for t in items if t.study_name == name]
            ranks = rankdata([t.value for t in own], method="average")
            scale = max(len(own) - 1, 1)
            ranked.extend(
                replace(t, rank=float((r - 1) / scale)) for t, r in zip(own, ranks, strict=True)
            )
        return cls(trials=tuple(ranked), study_names=names, objectives=dict(objectives or {}))

    def with_objectives(self, objectives: Mapping[str, Mapping[str, Any]]) -> History:
        """This history with ``objectives`` (as :func:`objective_setup` gives one) read for
        the studies that recorded none: a caller that knows from elsewhere what an older
        study's losses mean (what the version it registered names) says so. A study's own
        recorded objective is kept, and one this history does not hold is ignored."""
        filled = dict(self.objectives)
        for name in (*self.study_names, *self.objectives):
            if filled.get(name) is None and name in objectives:
                filled[name] = objectives[name]
        return replace(self, objectives=filled)

    def tuned_for(self, objective: Objective) -> History:
        """The studies whose pinned objective (name and parameters) is ``objective``; their
        trials keep their ranks. One that recorded none is left out too: its losses may
        be another objective's."""
        setup = objective_setup(objective)
        names = tuple(n for n in self.study_names if self.objectives.get(n) == setup)
        return History(
            trials=tuple(t for t in self.trials if t.study_name in names),
            study_names=names,
            objectives={n: self.objectives[n] for n in names},
        )

    def left_out_for(self, objective: Objective) -> str | None:
        """A plan note naming the studies :meth:`tuned_for` leaves out, each with the
        objective it was tuned for, or ``None`` when it leaves out none. A study tuned for
        ``objective``'s name with other parameters (another cost matrix) is named with its
        parameters and ``objective``'s: "cost {...}, not cost {...}"."""
        kept = self.tuned_for(objective).study_names
        setup = objective_setup(objective)
        other = [
            f"{name} ({_tuned_for(self.objectives.get(name), setup)})"
            for name in self.study_names
            if name not in kept
        ]
        if not other:
            return None
        return (
            f"left out {len(other)} earlier stud{'y' if len(other) == 1 else 'ies'} tuned for "
            f"another objective than {objective.name!r}: {', '.join(other)}"
        )

    def best_first(self) -> list[HistoryTrial]:
        """Trials by normalised rank; on ties the more recent study first."""
        recency = {name: i for i, name in enumerate(self.study_names)}
        return sorted(self.trials, key=lambda t: (t.rank, -recency[t.study_name], t.number))

    def __len__(self) -> int:
        return len(self.trials)


@dataclass(frozen=True, kw_only=True)
class NumericBound:
    name: str
    low: float
    high: float


@dataclass(frozen=True, kw_only=True)
class CostCeiling:
    """Configurations predicted above either ceiling are rejected before training."""

    max_latency_p99_s: float | None = None
    max_memory_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_latency_p99_s is not None and not self.max_latency_p99_s > 0:
            raise ValueError(f"`max_latency_p99_s` must be > 0, got {self.max_latency_p99_s}")
        if self.max_memory_bytes is not None and not self.max_memory_bytes > 0:
            raise ValueError(f"`max_memory_bytes` must be > 0, got {self.max_memory_bytes}")

    def violation(self, latency_p99_s: float, memory_bytes: float) -> str | None:
        if self.max_latency_p99_s is not None and latency_p99_s > self.max_latency_p99_s:
            return f"predicted p99 latency {latency_p99_s:.4g}s > {self.max_latency_p99_s:g}s"
        if self.max_memory_bytes is not None and memory_bytes > self.max_memory_bytes:
            return f"predicted memory {memory_bytes:.4g} B > {self.max_memory_bytes} B"
        return None


@dataclass(frozen=True, kw_only=True)
class WarmStartPlan:
    """What a study does with its history; stored with the study and shown in reports.

    * ``enqueue`` — parameter sets re-scored first (already valid in the current space).
    * ``numeric_box`` / ``choice_box`` — the learned box non-exploring trials sample in.
    * ``frozen`` — parameters fixed to a value in non-exploring trials.
    * ``explore_every`` — every k-th sampled trial ignores box and freezing (full space).
    * ``cost`` — serving-cost ceilings checked before training.
    """

    strategies: tuple[str, ...] = ()
    enqueue: tuple[Mapping[str, Any], ...] = ()
    numeric_box: tuple[NumericBound, ...] = ()
    choice_box: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    frozen: Mapping[str, Any] = field(default_factory=dict)
    explore_every: int | None = None
    cost: CostCeiling | None = None
    importances: Mapping[str, float] = field(default_factory=dict)
    history_studies: tuple[str, ...] = ()
    n_history_trials: int = 0
    notes: tuple[str, ...] = ()
    format_version: int = PLAN_FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.explore_every is not None and self.explore_every < 1:
            raise ValueError(f"`explore_every` must be >= 1 or None, got {self.explore_every}")
        empty = [name for name, choices in self.choice_box.items() if not choices]
        if empty:
            raise WarmStartError(f"`choice_box` must never be empty, but is for {empty}")

    @property
    def is_empty(self) -> bool:
        return not (self.enqueue or self.numeric_box or self.choice_box or self.frozen)

    def box_for(self, name: str) -> NumericBound | None:
        return next((b for b in self.numeric_box if b.name == name), None)

    def merged(self, other: WarmStartPlan) -> WarmStartPlan:
        """This plan with ``other``'s parts added (``other`` wins where both set one)."""
        seen = {json.dumps(dict(p), sort_keys=True, default=str) for p in self.enqueue}
        extra = tuple(
            p for p in other.enqueue if json.dumps(dict(p), sort_keys=True, default=str) not in seen
        )
        boxed = {b.name for b in other.numeric_box}
        return WarmStartPlan(
            strategies=self.strategies + other.strategies,
            enqueue=self.enqueue + extra,
            numeric_box=tuple(b for b in self.numeric_box if b.name not in boxed)
            + other.numeric_box,
            choice_box={**self.choice_box, **other.choice_box},
            frozen={**self.frozen, **other.frozen},
            explore_every=other.explore_every or self.explore_every,
            cost=other.cost or self.cost,
            importances={**self.importances, **other.importances},
            history_studies=self.history_studies or other.history_studies,
            n_history_trials=max(self.n_history_trials, other.n_history_trials),
            notes=self.notes + other.notes,
        )

    # -- persistence ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "strategies": list(self.strategies),
            "enqueue": [dict(p) for p in self.enqueue],
            "numeric_box": [
                {"name": b.name, "low": b.low, "high": b.high} for b in self.numeric_box
            ],
            "choice_box": {k: list(v) for k, v in self.choice_box.items()},
            "frozen": dict(self.frozen),
            "explore_every": self.explore_every,
            "cost": None
            if self.cost is None
            else {
                "max_latency_p99_s": self.cost.max_latency_p99_s,
                "max_memory_bytes": self.cost.max_memory_bytes,
            },
            "importances": dict(self.importances),
            "history_studies": list(self.history_studies),
            "n_history_trials": self.n_history_trials,
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WarmStartPlan:
        version = data.get("format_version")
        # a bool is an int to Python, not a version; a newer one is refused below, saying why
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise WarmStartError(
                f"`format_version` must be an integer from 1 to {PLAN_FORMAT_VERSION}, "
                f"got {version!r}"
            )
        if version > PLAN_FORMAT_VERSION:
            raise WarmStartError(
                f"warm-start plan format_version {version} is newer than this tunewatch "
                f"reads ({PLAN_FORMAT_VERSION}); upgrade tunewatch to use it"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise WarmStartError(f"unknown warm-start plan field(s) {unknown}")
        try:
            cost = data.get("cost")
            return cls(
                format_version=version,
                strategies=tuple(data.get("strategies", ())),
                enqueue=tuple(dict(p) for p in data.get("enqueue", ())),
                numeric_box=tuple(NumericBound(**b) for b in data.get("numeric_box", ())),
                choice_box={k: tuple(v) for k, v in data.get("choice_box", {}).items()},
                frozen=dict(data.get("frozen", {})),
                explore_every=data.get("explore_every"),
                cost=None if cost is None else CostCeiling(**cost),
                importances=dict(data.get("importances", {})),
                history_studies=tuple(data.get("history_studies", ())),
                n_history_trials=int(data.get("n_history_trials", 0)),
                notes=tuple(data.get("notes", ())),
            )
        except (TypeError, ValueError) as exc:
            raise WarmStartError(f"invalid warm-start plan: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> WarmStartPlan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WarmStartError(f"warm-start plan is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise WarmStartError("warm-start plan must be a JSON object")
        return cls.from_dict(data)


@runtime_checkable
class WarmStartStrategy(Protocol):
    """Turns history into (part of) a plan for the current search space."""

    @property
    def name(self) -> str: ...

    def plan(self, history: History, space: SearchSpace) -> WarmStartPlan: ...


def _tuned_for(pinned: Mapping[str, Any] | None, setup: Mapping[str, Any]) -> str:
    """What a left-out study was tuned for (``pinned``), beside the job's ``setup``: the
    objective's name, or when it is the job's (its parameters differ) both setups with
    their parameters."""
    name = None if pinned is None else pinned.get("name")
    if pinned is None or name is None:
        return "no recorded objective"
    if name != setup["name"]:
        return str(name)
    return f"{_with_params(pinned)}, not {_with_params(setup)}"


def _with_params(setup: Mapping[str, Any]) -> str:
    """``cost {"cost_matrix": [[0.0, 1.0], [20.0, 0.0]]}``: an objective's name and its
    parameters as JSON (its name alone with none)."""
    params = setup.get("params")
    if not isinstance(params, Mapping) or not params:
        return str(setup["name"])
    return f"{setup['name']} {json.dumps(dict(params), sort_keys=True, default=str)}"


def log_or_linear(value: float, log: bool) -> float:
    return math.log(value) if log else value


def from_log_or_linear(value: float, log: bool) -> float:
    return math.exp(value) if log else value


def empty_plan(name: str, history: History, note: str) -> WarmStartPlan:
    return WarmStartPlan(
        strategies=(name,),
        history_studies=history.study_names,
        n_history_trials=len(history),
        notes=(note,),
    )


def quantile_best(history: History, fraction: float, minimum: int) -> list[HistoryTrial]:
    """The best ``fraction`` of each study (by normalised rank), at least ``minimum`` overall."""
    ordered = history.best_first()
    chosen = [t for t in ordered if t.rank <= fraction]
    if len(chosen) < minimum:
        chosen = ordered[:minimum]
    return chosen


def finite(values: Iterable[float]) -> np.ndarray[Any, Any]:
    arr = np.asarray(list(values), dtype=np.float64)
    return arr[np.isfinite(arr)]
