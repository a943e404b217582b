"""Tuning figures as people read them, in the objective's own orientation.

A study minimises :meth:`Objective.loss <monitor.objectives.Objective.loss>`: the
objective's value, negated when greater is better. What a job stores is that loss (its
progress's and result's ``best_value``, a version's ``best_value``, ``fold_scores`` and
``nested_estimate``), and stays one. Shown, a loss is turned back into the value of the
objective it names (a ROC AUC of 0.745, not -0.745) and labelled with the objective's
name; a loss whose objective this release does not know (free ``details`` registered by
hand, a bundle of a newer release) is shown as stored, and called a loss.

An objective's parameters (a cost matrix, a decision threshold) are recorded beside its
name as ``objective_params`` (:func:`objective_params`): two `cost` figures tuned under
different cost matrices are not comparable, and are shown with their matrices
(:func:`with_params`).
"""

from __future__ import annotations

import json
from typing import Any

from monitor.objectives import OBJECTIVES, Objective, objective_setup
from tunewatch._config import Config
from tunewatch._errors import NotFoundError
from tunewatch._version_metadata import finite_float
from tunewatch.store import JobRow, Store


def known(objective: Any) -> str | None:
    """``objective`` if it names an objective of this release, else ``None``."""
    return objective if isinstance(objective, str) and objective in OBJECTIVES else None


def score(loss: Any, objective: Any) -> float | None:
    """The value of ``objective`` (a name) whose loss is ``loss``: ``None`` when ``loss`` is
    not a finite number or no objective of this release has the name."""
    value = finite_float(loss)
    name = known(objective)
    if value is None or name is None:
        return None
    # 0.0 - x, not -x: a loss of 0.0 is a score of 0.0, not -0.0
    return 0.0 - value if OBJECTIVES[name].greater_is_better else value


def scores(losses: Any, objective: Any) -> list[float] | None:
    """Per-fold losses as ``objective``'s values, or ``None`` when ``losses`` is not a list
    of finite numbers or the objective is unknown."""
    if not isinstance(losses, list):
        return None
    out = [score(v, objective) for v in losses]
    return None if any(v is None for v in out) else [v for v in out if v is not None]


def labelled(loss: Any, objective: Any, *, spec: str = ".4f") -> str:
    """``roc_auc 0.7450`` for the loss -0.745 of ``roc_auc``; ``loss 0.2543`` when the
    objective is unknown; ``—`` for no finite loss. ``spec`` formats the number."""
    value = score(loss, objective)
    if value is not None:
        return f"{objective} {value:{spec}}"
    stored = finite_float(loss)
    return "—" if stored is None else f"loss {stored:{spec}}"


def objective_params(objective: Objective) -> dict[str, Any]:
    """The parameters ``objective`` was built with, as its study pins them beside its name
    (:func:`monitor.objectives.objective_setup`: JSON, lists for arrays; ``{}`` for
    none), so a version, a job or a verdict compares with its study's setup."""
    params: dict[str, Any] = objective_setup(objective)["params"]
    return params


def with_params(objective: Any, params: Any) -> Any:
    """``cost {"cost_matrix": [[0.0, 1.0], [20.0, 0.0]]}``: ``objective`` (a name) with the
    parameters recorded beside it, as JSON; the name alone when it recorded none (a
    version or a job of an older release) or an empty set."""
    if objective is None or not isinstance(params, dict) or not params:
        return objective
    return f"{objective} {json.dumps(params, sort_keys=True, default=str)}"


def recorded_params(job: JobRow) -> dict[str, Any] | None:
    """The parameters of the objective ``job`` records (:func:`recorded`), recorded by the
    same part of it (its result, else its progress); ``None`` for a job that recorded
    none (one of an older release)."""
    for figures in (job.result or {}, job.progress):
        if known(figures.get("objective")) is not None:
            params = figures.get("objective_params")
            return params if isinstance(params, dict) else None
    return None


def recorded(job: JobRow) -> tuple[str | None, float | None]:
    """What ``job`` records of itself: the objective it tunes (its result's, else its
    progress's; ``None`` for a job of an older release, which recorded none) and its best
    value as that objective's (its result's, else its progress's so far)."""
    figures = job.result if job.result else job.progress
    objective = known(figures.get("objective")) or known(job.progress.get("objective"))
    return objective, score(figures.get("best_value"), objective)


def configured_objective(config: Config, store: Store, model: str) -> str | None:
    """The objective ``config`` tunes ``model`` for (a worker tunes a job for its
    configuration's), or ``None`` when the store holds no such model."""
    try:
        task = store.get_model(model).task
    except NotFoundError:
        return None
    return config.model_or_default(model, task).objective.name
