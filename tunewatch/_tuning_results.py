"""What a tuning job's study left: its name, the version it registered, the job's result
read back from that version, and the study's importances for the version's report."""

from __future__ import annotations

import logging
import time
from typing import Any

from retune import RetuneError, study_importances
from tunewatch.store import JobRow, Store, VersionRow

logger = logging.getLogger(__name__)


def study_importances_of(job: JobRow, storage: str, study: str, *, seed: int) -> dict[str, Any]:
    """The finished study's fANOVA importances for the version's details and report
    (:func:`retune.study_importances`): shares, or none with the reason. They explain the
    version, they do not make it: a study whose importances cannot be computed registers
    its winner all the same, with the reason."""
    started = time.perf_counter()
    try:
        importances = study_importances(storage, study, seed=seed)
    except RetuneError as exc:
        logger.warning(
            "job=%d model=%s: importances of study %s not computed: %s",
            job.id,
            job.model,
            study,
            exc,
        )
        return {"method": "fanova", "seed": seed, "shares": {}, "reason": str(exc)}
    logger.info(
        "job=%d model=%s: importances of %d completed trials computed in %.2f s%s",
        job.id,
        job.model,
        importances.n_complete,
        time.perf_counter() - started,
        f" ({importances.reason})" if importances.reason else "",
    )
    return importances.to_dict()


def study_name(job: JobRow) -> str:
    """Job ``job``'s Optuna study: the name recorded when the job was queued, the job's
    own even in an Optuna storage other stores use (``tunewatch.store._jobs.new_study_name``);
    ``{model}-job{id}`` for a job queued before jobs recorded one, whose study (resumed,
    or learned from by later jobs' warm starts) keeps the name it was given."""
    recorded = job.spec.get("study")
    return recorded if isinstance(recorded, str) and recorded else f"{job.model}-job{job.id}"


def registered_version(store: Store, job: JobRow) -> VersionRow | None:
    """The version job ``job``'s study registered (a study registers one), if any."""
    study = study_name(job)
    return next((v for v in store.list_versions(job.model) if v.study == study), None)


def job_result(version: VersionRow) -> dict[str, Any]:
    """A succeeded job's result, read back from the version its study registered (for a
    job whose worker registered it and stopped before finishing the job)."""
    return {
        "version": version.version,
        "study": version.study,
        "objective": version.details.get("objective"),
        "objective_params": version.details.get("objective_params"),
        "best_value": version.details.get("best_value"),
        "best_params": dict(version.hyperparameters),
        "n_trials": version.details.get("n_trials"),
        "stopped_by": version.details.get("stopped_by"),
        "parity_error": version.details.get("parity_error"),
        "dataset_version": version.dataset_version,
        "warm_start": (version.details.get("warm_start_plan") or {}).get("strategies", []),
        "parent": version.parent_version,
        "study_wall_s": version.details.get("wall_s"),
        "study_cpu_s": version.details.get("cpu_s"),
        "nested": version.details.get("nested"),
    }
