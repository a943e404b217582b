"""The time a study's runs spent, from the records they keep in its attributes
(``time_spent:<run>``, :mod:`retune._runs`): what a resumed or joining run's budget
counts (:func:`~retune._runs.time_spent`) and what a study's progress shows
(:func:`~retune.study_progress`). No Optuna here: both read the attributes they hold."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

SPENT_PREFIX = "time_spent:"
"""Study attributes ``time_spent:<run>`` hold each run's record (see :mod:`retune._runs`)."""


def spent(
    attrs: Mapping[str, Any],
    *,
    before: float = math.inf,
    own: str | None = None,
    ended_before: frozenset[str] = frozenset(),
) -> dict[str, float]:
    """The wall and CPU seconds the runs recorded in ``attrs`` (a study's attributes)
    but ``own``: when they stopped, or, for a run that recorded no end, at its last
    budget check. CPU seconds add up; wall seconds are those of the union of the runs'
    intervals, each cut at ``before`` but for the runs in ``ended_before`` (see
    :func:`~retune._runs.time_spent`, which reads them so for a run's budget). By
    default, every run's as recorded: the study's own."""
    intervals: list[tuple[float, float]] = []
    unplaced_s = cpu_s = 0.0
    for key, run in attrs.items():
        if not key.startswith(SPENT_PREFIX) or key == own or not isinstance(run, dict):
            continue
        began = run.get("started_at")
        if "ended_at" in run or "wall_s" in run:  # it recorded its end
            ended, cpu = run.get("ended_at"), run.get("cpu_s", 0.0)
        else:
            ended, cpu = run.get("seen_at"), run.get("cpu_s_so_far", 0.0)
        cpu_s += float(cpu)
        if isinstance(began, int | float) and isinstance(ended, int | float):
            cut = float(ended) if key in ended_before else min(float(ended), before)
            intervals.append((float(began), cut))
        else:
            unplaced_s += float(run.get("wall_s", 0.0))
    return {"wall_s": _covered_s(intervals) + unplaced_s, "cpu_s": cpu_s}


def _covered_s(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of ``intervals`` (``(start, end)`` pairs; empty ones count
    nothing)."""
    covered = 0.0
    reach = -math.inf
    for began, ended in sorted(intervals):
        if ended <= max(began, reach):
            continue
        covered += ended - max(began, reach)
        reach = ended
    return covered
