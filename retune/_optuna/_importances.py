"""Hyperparameter importances of a finished study: seeded fANOVA shares of its loss, for
the version's rationale report (DESIGN.md §6)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from retune._optuna._storage import _translated, close_storage, make_storage

#: Fewer completed trials than this get no importances: fANOVA's forest fits a handful of
#: points exactly, and shares computed from them would read as findings.
MIN_IMPORTANCE_TRIALS = 10
#: How Optuna's fANOVA refuses trials none of its trees can split.
_ZERO_VARIANCE = "zero total variance"


@dataclass(frozen=True, slots=True)
class StudyImportances:
    """fANOVA importance shares of a study's parameters, or why there are none.

    ``shares`` (largest first, summing to 1) rate the parameters every completed trial
    has; ``not_rated`` names those only some have (a conditional parameter, such as one
    estimator's own). Empty ``shares`` come with a ``reason``.
    """

    study_name: str
    seed: int
    n_complete: int
    shares: Mapping[str, float]
    not_rated: tuple[str, ...]
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        """As a version's ``details["importances"]`` stores it."""
        return {
            "method": "fanova",
            "seed": self.seed,
            "n_complete": self.n_complete,
            "shares": dict(self.shares),
            "not_rated": list(self.not_rated),
            "reason": self.reason,
        }


def study_importances(
    storage: str, study_name: str, *, seed: int, min_trials: int = MIN_IMPORTANCE_TRIALS
) -> StudyImportances:
    """fANOVA importances (seeded with ``seed``) of ``study_name``'s completed trials.

    No shares, with the reason, for fewer than ``min_trials`` completed trials, for one
    parameter or none varying over them (a lone share is 1 by definition), and for losses
    fANOVA finds no variance in. Raises :class:`~retune.StudyError` when the study cannot
    be read (it does not exist, the storage fails) or Optuna refuses the trials.
    """
    with _translated(study_name, "computing importances", storage):
        backend = make_storage(storage, heartbeat_interval=None)
        try:
            study = optuna.load_study(study_name=study_name, storage=backend)
            trials = study.get_trials(deepcopy=True, states=(TrialState.COMPLETE,))
        finally:
            close_storage(backend)
        complete = [t for t in trials if t.value is not None and math.isfinite(t.value)]
        n = len(complete)

        def none(reason: str, not_rated: tuple[str, ...] = ()) -> StudyImportances:
            return StudyImportances(
                study_name=study_name,
                seed=seed,
                n_complete=n,
                shares={},
                not_rated=not_rated,
                reason=reason,
            )

        if n < min_trials:
            return none(
                f"{n} completed trials, fewer than the {min_trials} fANOVA needs for shares "
                "that are more than noise"
            )
        names = sorted({name for t in complete for name in t.params})
        common = [name for name in names if all(name in t.params for t in complete)]
        not_rated = tuple(name for name in names if name not in common)
        varying = [name for name in common if len({repr(t.params[name]) for t in complete}) > 1]
        if not varying:
            return none(f"no parameter varies over the {n} completed trials", not_rated)
        if len(varying) == 1:
            return none(
                f"only `{varying[0]}` varies over the {n} completed trials (a lone share is 1 "
                "by definition)",
                not_rated,
            )
        # rated on copies in memory: trials other workers finish meanwhile change nothing
        rated = optuna.create_study(direction="minimize")
        rated.add_trials(complete)
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        try:
            # losses too large to square overflow to NaN shares, refused below
            with np.errstate(over="ignore", invalid="ignore"):
                result = optuna.importance.get_param_importances(
                    rated, evaluator=evaluator, params=common
                )
        except RuntimeError as exc:
            if _ZERO_VARIANCE not in str(exc):
                raise
            quoted = ", ".join(f"`{name}`" for name in common)
            return none(
                f"the {n} completed trials' losses do not vary with {quoted} (fANOVA finds "
                "zero variance)",
                not_rated,
            )
    if not all(math.isfinite(share) for share in result.values()):
        # losses so large that fANOVA's squares overflow: no shares rather than NaN ones
        return none(
            f"fANOVA's variances over the {n} completed trials' losses are not finite "
            "(losses too large to square)",
            not_rated,
        )
    shares = sorted(result.items(), key=lambda item: (-item[1], item[0]))
    return StudyImportances(
        study_name=study_name,
        seed=seed,
        n_complete=n,
        shares={name: float(share) for name, share in shares},
        not_rated=not_rated,
        reason=None,
    )
