"""A tuning job's winner made a candidate version (:func:`export_candidate`): refit on the
whole window and exported to ONNX under the parity gate, in the serving contract of the
version it would replace (:func:`served_model`, :func:`class_count`), with the details
its version records and the out-of-fold scores monitors calibrate on. Registering the
candidate is the job's (:class:`tunewatch._tuning.TuningJobRunner`)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
import time
from typing import Any

import numpy as np

from monitor.objectives import Objective
from retune import ExportedModel, TuningResult, refit_and_export
from retune.cv import CVScheme, NestedCV, TimeSeriesCV, out_of_fold
from shadow import OnnxModel, run_rows
from tunewatch import __version__
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import TuningJobConfig
from tunewatch._objective_display import objective_params
from tunewatch._tuning_plan import WarmStartKind, plan_mode
from tunewatch.store import JobRow, ModelRow, Store, VersionRow

#: The window rows whose one-row latency the candidate's ``latency_p99_s`` detail is of.
LATENCY_ROWS = 200

#: The distributions whose versions decide a tuned version's folds, fit and ONNX bytes:
#: its ``environment`` detail records each (with Python's and tunewatch's).
ENVIRONMENT_PACKAGES = (
    "numpy",
    "scipy",
    "scikit-learn",
    "optuna",
    "skl2onnx",
    "onnx",
    "onnxruntime",
)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """The winner, exported and described, ready to register."""

    exported: ExportedModel
    #: the version's ``details``
    details: dict[str, Any]
    #: its reference scores: the winner's out-of-fold scores of the window, float32
    scores: np.ndarray


def served_model(
    store: Store, artefacts: ArtefactStore, model: ModelRow, parent: VersionRow | None
) -> OnnxModel | None:
    """The version whose serving contract the challenger takes: the parent, else the
    current champion (a job queued with none), else none."""
    version = parent if parent is not None else store.champion(model.name)
    if version is None:
        return None
    return OnnxModel.from_bytes(artefacts.get(version.artefact_sha256))


def class_count(model: ModelRow, served: OnnxModel | None, x: np.ndarray) -> int | None:
    """How many classes a multiclass challenger must answer: as many as the version it
    would replace (a window missing a class must not export fewer columns), as its graph
    declares them, else as it answers the window's first row. That row is run as
    :func:`shadow.run_rows` runs rows: a graph fixing its batch at 4 refused a run of one
    (``shape_mismatch``), and every retune of it failed.

    Raises what :func:`shadow.run_rows` raises when it cannot be run."""
    if model.task != "multiclass" or served is None:
        return None
    width = served.signature.primary_width
    if width is not None:
        return width
    probe = np.ascontiguousarray(np.nan_to_num(x[:1]), dtype=served.signature.input.dtype)
    return int(served.primary(run_rows(served, probe)).shape[1])


def warm_start_mode(result: TuningResult, tuning: TuningJobConfig) -> WarmStartKind | None:
    """The ``tuning.warm_start`` mode of the plan ``result``'s study ran by, the one stored
    when the study began (:func:`tunewatch._tuning_plan.plan_mode`), not this worker's: a
    job begun with warm start off and finished by a worker configured ``combined`` was
    reported a cold start, and the reverse warm start off.

    A plan that names no mode learned from no earlier study. This release builds one only
    with warm start on (a plan built with it off names it), so this worker's mode is
    taken, unless it is ``none``: then the mode is unknown (``None``, reported as a cold
    start that learned from no earlier study), since the study's own was on, or, for a
    study begun by a release before plans recorded it, unrecorded."""
    mode = plan_mode(result.plan)
    if mode is not None:
        return mode
    return None if tuning.warm_start == "none" else tuning.warm_start


def export_candidate(
    *,
    job: JobRow,
    model: ModelRow,
    tuning: TuningJobConfig,
    result: TuningResult,
    x: np.ndarray,
    y: np.ndarray,
    n_traffic: int,
    served: OnnxModel | None,
    cv: CVScheme,
    groups: np.ndarray | None,
    objective: Objective,
    importances: dict[str, Any],
    nested_estimate: dict[str, Any] | None,
    search_space: str,
    nested: dict[str, Any] | None = None,
) -> Candidate:
    """Refit ``result``'s best parameters on the window ``(x, y)`` (``n_traffic`` of its
    rows traffic) and export them (:func:`retune.refit_and_export`) like ``served``, the
    version it would replace; time its one-row latency, describe the job's study
    (``importances`` and ``nested_estimate`` are its details of those; ``nested``, what
    the outer studies of ``cv: nested`` cost: :func:`tunewatch._tuning_cv.outer_cost`)
    and score the window out of fold under ``cv``."""
    tj = tuning
    exported = refit_and_export(
        dict(result.best_params),
        x,
        y,
        tolerance=tj.parity_tolerance,
        seed=tj.seed,
        name=f"{model.name}-job{job.id}",
        n_classes=class_count(model, served, x),
        # a request valid for the version it would replace is valid for it
        like=None if served is None else served.signature,
    )
    session = OnnxModel.from_bytes(exported.onnx)
    latencies = []
    for row in x[:LATENCY_ROWS].astype(session.signature.input.dtype):
        started = time.perf_counter()
        session.run(row.reshape(1, -1))
        latencies.append(time.perf_counter() - started)
    details = {
        "job": job.id,
        "trigger": job.trigger,
        "objective": objective.name,
        # what the study's losses mean besides the name: a cost matrix, a threshold
        "objective_params": objective_params(objective),
        "best_value": result.best_value,
        "n_trials": result.n_trials,
        "n_pruned": result.n_pruned,
        "n_vetoed": result.n_vetoed,
        "n_cost_rejected": result.n_cost_rejected,
        "stopped_by": result.stopped_by,
        "fold_scores": list(result.fold_scores_of_best.scores),
        "fold_spread": result.fold_scores_of_best.spread,
        "importances": importances,
        "cv": cv_details(cv, tj),
        "nested_estimate": nested_estimate,
        "parity_error": exported.parity_error,
        "latency_p99_s": float(np.quantile(latencies, 0.99)),
        # the plan the study ran by: a joining or resuming worker adopts the stored one
        "warm_start_plan": result.plan.to_dict() if result.plan else None,
        # the `tuning.warm_start` the study's plan was built with: "none" learns from no
        # earlier study
        "warm_start_mode": warm_start_mode(result, tj),
        "search_space": search_space,
        # the space the study searched (a resumed study keeps the one it began with):
        # the report says what was searched after the file changes
        "searched_space": result.space.model_dump(mode="json"),
        "rows": int(x.shape[0]),
        "traffic_rows": n_traffic,
        # the study's, over every run of it (all its workers', CPU summed), as the
        # budget counts them
        "wall_s": result.wall_s,
        "cpu_s": result.cpu_s,
        # the outer studies of `cv: nested`, which the main study's figures leave out:
        # their names, trials and seconds summed (none without nested CV)
        "nested": nested,
        # what an auditor refitting the version needs to get its artefact's bytes again
        "environment": environment(),
    }
    # what monitors calibrate on: the winner's scores of rows it did not train on (its
    # own scores of its training rows are overconfident), in the columns it answers:
    # P(class 1) alone when it answers like a one-column binary champion
    scores = out_of_fold(result.best_params, x, y, scheme=cv, seed=tj.seed, groups=groups).astype(
        np.float32
    )
    if session.signature.primary_width == 1 and scores.shape[1] == 2:
        scores = scores[:, 1:]
    return Candidate(exported=exported, details=details, scores=scores)


def cv_details(cv: CVScheme, tuning: TuningJobConfig) -> dict[str, Any]:
    """The version's ``cv`` detail: the scheme the job ran (``cv``, built from ``tuning``
    by :func:`tunewatch._tuning_cv.cv_scheme`) with its folds (a time series' gap and
    test size too), the group column, the seed the folds were drawn with and the fold
    spread that vetoed trials; for ``cv: nested``, its ``inner`` and ``outer`` schemes.
    Without them the folds a winner was scored on were in the Optuna study alone."""
    details: dict[str, Any] = {
        **_scheme_details(cv),
        "group_column": tuning.cv_group_column,
        "seed": tuning.seed,
        "max_fold_spread": cv.max_fold_spread,
    }
    if isinstance(cv, NestedCV):
        details["inner"] = _scheme_details(cv.inner)
        details["outer"] = _scheme_details(cv.outer)
    return details


def _scheme_details(cv: CVScheme) -> dict[str, Any]:
    details: dict[str, Any] = {"scheme": cv.name, "n_splits": cv.n_splits}
    if isinstance(cv, TimeSeriesCV):
        # test_size None: scikit-learn's, the window's rows // (n_splits + 1)
        details.update(gap=cv.gap, test_size=cv.test_size)
    return details


def environment() -> dict[str, str | None]:
    """The version's ``environment`` detail: the installed version of each of
    :data:`ENVIRONMENT_PACKAGES` (``None`` where one is not installed), Python's and
    tunewatch's. The same winner refit under other versions may fit or export to other
    bytes: an auditor matching a registered artefact's sha256 needs these."""
    versions: dict[str, str | None] = {}
    for package in ENVIRONMENT_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {**versions, "python": platform.python_version(), "tunewatch": __version__}
