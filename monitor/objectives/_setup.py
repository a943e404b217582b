"""What an objective is, as the records of its figures say it: its name and parameters."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from monitor.objectives._base import Objective


def objective_setup(objective: Objective) -> dict[str, Any]:
    """The objective's name and parameters (its public attributes: a threshold, a cost
    matrix, …, with their defaults filled in), as JSON reads them back (lists for tuples
    and arrays): what a study pins beside its losses, and what versions, jobs and verdicts
    record, so figures under two cost matrices are told apart however the config spells
    them (``accuracy {}`` and ``accuracy {threshold: 0.5}`` are one setup)."""
    params = {k: v for k, v in vars(objective).items() if not k.startswith("_")}
    setup = {"name": objective.name, "params": params}
    loaded: dict[str, Any] = json.loads(json.dumps(setup, default=lambda v: np.asarray(v).tolist()))
    return loaded
