"""Tuning budgets and the stopping rule, independent of the tuner.

A study stops at the first limit reached, checked after every finished trial:
``max_trials`` (trained trials over all workers of the study, those running elsewhere
included: a configuration rejected for its predicted serving cost is not trained and
not counted), ``wall_time_s`` and ``cpu_time_s`` (this process's own clock and process
time since :meth:`BudgetTracker.start`, plus what the study's other runs spent, read
again at every check — :meth:`BudgetTracker.set_others`: wall seconds once however many
workers ran in them, up to this run's start, CPU seconds summed; a run killed before it
recorded its end up to its last finished trial, and one still working on another
worker as far as it recorded at its last check, so workers working at once spend one
``cpu_time_s`` between them, past it by at most about the trial each was running —,
so a resumed study continues its budget), and no
improvement — the best loss improved by less than ``min_relative_improvement``
(relative) over the last ``patience`` counted trials. A trial in flight when a time
limit passes is allowed to finish.

A time limit (:data:`TIME_LIMITS`) never stops a study before its first trial: a run
checks the budget before its first trial too (a resumed study whose budget is spent
starts none), but while no trial of the study has run, a time limit passed (by the
set-up alone: opening the study, enqueueing) lets one run, then stops the study after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from retune._errors import BudgetError

PrunerKind = Literal["none", "median", "successive_halving"]
StopReason = Literal[
    "max_trials", "wall_time", "cpu_time", "no_improvement", "exhausted", "interrupted"
]

TIME_LIMITS: frozenset[StopReason] = frozenset({"wall_time", "cpu_time"})
"""The stop reasons of the time limits, which let a study's first trial run."""


@dataclass(frozen=True, kw_only=True)
class Budget:
    """When a study stops (see the module docstring). Raises :class:`BudgetError` for an
    invalid argument."""

    max_trials: int | None = 50
    wall_time_s: float | None = None
    cpu_time_s: float | None = None
    patience: int | None = None
    min_relative_improvement: float = 0.0
    pruner: PrunerKind = "none"

    def __post_init__(self) -> None:
        if self.max_trials is None and self.wall_time_s is None and self.cpu_time_s is None:
            raise BudgetError(
                "a Budget needs at least one of `max_trials`, `wall_time_s`, `cpu_time_s`"
            )
        if self.max_trials is not None and self.max_trials < 1:
            raise BudgetError(f"`max_trials` must be >= 1, got {self.max_trials}")
        for name in ("wall_time_s", "cpu_time_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise BudgetError(f"`{name}` must be > 0, got {value}")
        if self.patience is not None and self.patience < 1:
            raise BudgetError(f"`patience` must be >= 1, got {self.patience}")
        if not 0 <= self.min_relative_improvement < 1:
            raise BudgetError(
                f"`min_relative_improvement` must be in [0, 1), got {self.min_relative_improvement}"
            )
        if self.pruner not in ("none", "median", "successive_halving"):
            raise BudgetError(
                "`pruner` must be one of ['none', 'median', 'successive_halving'], "
                f"got {self.pruner!r}"
            )


class BudgetTracker:
    """Measures one process's share of a study against a :class:`Budget`."""

    def __init__(
        self,
        budget: Budget,
        *,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self.budget = budget
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._t0 = clock()
        self._c0 = cpu_clock()
        self._earlier_wall_s = 0.0
        self._earlier_cpu_s = 0.0
        self._others_wall_s = 0.0
        self._others_cpu_s = 0.0

    def start(self) -> None:
        self._t0 = self._clock()
        self._c0 = self._cpu_clock()

    def add_earlier(self, *, wall_s: float, cpu_s: float) -> None:
        """Count time spent on the study outside the runs :meth:`set_others` counts
        (added up over calls; :func:`~retune.run_study` counts all runs with that)."""
        self._earlier_wall_s += wall_s
        self._earlier_cpu_s += cpu_s

    def set_others(self, *, wall_s: float, cpu_s: float) -> None:
        """Count the time the study's other runs spent as last read, replacing what the
        previous call set: runs working at once go on spending, so a caller reads their
        records again at each check (:func:`~retune._runs.time_spent`)."""
        self._others_wall_s = wall_s
        self._others_cpu_s = cpu_s

    @property
    def own_wall_s(self) -> float:
        """This process's wall-clock seconds since :meth:`start`."""
        return self._clock() - self._t0

    @property
    def own_cpu_s(self) -> float:
        """This process's CPU seconds since :meth:`start`."""
        return self._cpu_clock() - self._c0

    @property
    def wall_s(self) -> float:
        """Wall-clock seconds against the budget: other runs' and this process's."""
        return self._earlier_wall_s + self._others_wall_s + self.own_wall_s

    @property
    def cpu_s(self) -> float:
        """CPU seconds against the budget: other runs' and this process's."""
        return self._earlier_cpu_s + self._others_cpu_s + self.own_cpu_s

    def stop_reason(self, n_counted: int, losses: Sequence[float | None]) -> StopReason | None:
        """Why to stop now, if at all.

        ``n_counted`` is the number of trials in the whole study that trained or are
        training (finished ones, and those running in any worker); ``losses``
        is the loss of each counted trial in trial order (``None`` for trials without
        one: pruned, vetoed, rejected, failed).
        """
        b = self.budget
        if b.max_trials is not None and n_counted >= b.max_trials:
            return "max_trials"
        if b.wall_time_s is not None and self.wall_s >= b.wall_time_s:
            return "wall_time"
        if b.cpu_time_s is not None and self.cpu_s >= b.cpu_time_s:
            return "cpu_time"
        if b.patience is not None and _stalled(losses, b.patience, b.min_relative_improvement):
            return "no_improvement"
        return None


def _stalled(losses: Sequence[float | None], patience: int, min_rel: float) -> bool:
    if len(losses) <= patience:
        return False
    best: list[float] = []
    current = float("inf")
    for loss in losses:
        if loss is not None and loss < current:
            current = loss
        best.append(current)
    before, now = best[-patience - 1], best[-1]
    if before == float("inf"):
        return False
    improvement = (before - now) / max(abs(before), 1e-12)
    return improvement <= 0 or improvement < min_rel
