"""Re-tuning jobs: build the training window (:mod:`tunewatch._tuning_window`), plan the
warm start (:mod:`tunewatch._tuning_plan`), run the study (its CV:
:mod:`tunewatch._tuning_cv`), refit and export with a parity gate
(:mod:`tunewatch._tuning_export`), register the winner in shadow.

A job runs in a worker process (``tunewatch worker --job ID``), never in the API's event
loop; the leader starts workers for queued jobs (``tunewatch._launcher``), and more
workers on any machine can join the same study through a shared Optuna RDB storage: each
runs under the job's budget, in the study its holder began, at the study's heartbeat
interval, whatever its own config says (:mod:`tunewatch._tuning_shared`).

This module is the job's front: :class:`TuningJobRunner` claims the job, runs the work
in order and decides how this worker's part ends; the job row records that end through
:mod:`tunewatch._tuning_outcome`, its heartbeat, progress and cancellation checks are
:mod:`tunewatch._tuning_progress`'s, and what its study left (its name, its registered
version, its importances) :mod:`tunewatch._tuning_results`'s. :func:`cv_scheme` is
re-exported here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from monitor import MonitorError
from monitor.objectives import ObjectiveError, make_objective
from retune import (
    RetuneError,
    StudyStorageUnavailableError,
    TuningResult,
    check_classes,
    run_study,
)
from retune.cv import NestedCV, dataset_version
from retune.space import load_search_space
from retune.warmstart import WarmStartPlan
from shadow import ShadowError
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config, ModelConfig
from tunewatch._errors import (
    ConflictError,
    StoreUnavailableError,
    TunewatchError,
    TuningError,
)
from tunewatch._objective_display import objective_params
from tunewatch._redaction import redacted
from tunewatch._registry import Registry
from tunewatch._serving_cost import serving_cost, with_ceiling
from tunewatch._shipped_spaces import default_search_space
from tunewatch._tuning_cv import (
    check_nested,
    cv_groups,
    cv_scheme,
    estimate_details,
    outer_cost,
    outer_plan,
    tuned_estimate,
)
from tunewatch._tuning_export import class_count, export_candidate, served_model
from tunewatch._tuning_outage import STORAGE_OUTAGE_LIMIT_S, resumed_after_outages
from tunewatch._tuning_outcome import fail_job, finish_job, finish_registered, requeue_job
from tunewatch._tuning_plan import warm_start_plan
from tunewatch._tuning_progress import CancelWatch, Heartbeat, ProgressReporter
from tunewatch._tuning_reference import reference_details, tuned_reference
from tunewatch._tuning_results import study_importances_of, study_name
from tunewatch._tuning_shared import SharedStudy, hold_study, join_study
from tunewatch._tuning_window import TuningWindow, tuning_window
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import JobRow, ModelRow, Store, VersionRow

__all__ = ["TuningJobRunner", "cv_scheme"]

logger = logging.getLogger(__name__)


class TuningJobRunner:
    def __init__(
        self,
        *,
        store: Store,
        registry: Registry,
        artefacts: ArtefactStore,
        config: Config,
        worker: str,
        stop: threading.Event | None = None,
        storage_outage_limit_s: float = STORAGE_OUTAGE_LIMIT_S,
    ) -> None:
        self.store = store
        self.registry = registry
        self.artefacts = artefacts
        self.config = config
        self.worker = worker
        # set (by the worker's SIGTERM handler) to end the study after the running trial
        # and put the job back in the queue for the next worker to resume
        self.stop = stop
        self.storage_outage_limit_s = storage_outage_limit_s

    def run(self, job_id: int, *, on_progress: Any = None) -> JobRow:
        """Run (or join) job ``job_id`` to its end; the job row records the outcome. A job
        cancelled meanwhile is left cancelled: this worker stops after its running trial
        and registers nothing."""
        wall0, cpu0 = time.monotonic(), time.process_time()  # this worker's cost of the job
        # a job its worker is tuning stays that worker's: this one joins its study
        job = self.store.claim_job(job_id, self.worker, alive_within=self._alive_within())
        registered = finish_registered(self.store, job)
        if registered is not None:
            return registered
        model = self.store.get_model(job.model)
        cfg = self.config.model_or_default(model.name, model.task)
        if job.worker == self.worker:
            logger.info("job=%d model=%s: tuning starts on %s", job.id, model.name, self.worker)
        else:
            logger.info(
                "job=%d model=%s: %s is to join the study of worker %s, which holds the job",
                job.id,
                model.name,
                self.worker,
                job.worker,
            )
        cancelled = CancelWatch(self.store, job.id)
        try:
            with Heartbeat(self.store, job.id, self.config.tuning.heartbeat_s):
                result = self._tune(job, model, cfg, on_progress, cancelled)
        except _Cancelled:
            ended = cancelled.cancelled
            logger.warning(
                "job=%d model=%s: the job was cancelled (%s); worker %s stopped after its "
                "running trial and registers nothing",
                job.id,
                model.name,
                ended.error if ended is not None else "cancelled",
                self.worker,
            )
            return self.store.get_job(job.id)
        except _Interrupted:
            requeue_job(self.store, job, worker=self.worker)
            return self.store.get_job(job.id)
        except _RegisteredElsewhere as exc:
            logger.info(
                "job=%d model=%s: %s; this worker's trials are in the study, and the worker "
                "that registered finishes the job",
                job.id,
                model.name,
                exc,
            )
            return self.store.get_job(job.id)
        except StoreUnavailableError as exc:
            # the store's condition (its database down, its artefact directory full), not
            # the job's: failed, the job lost its study's work for good. Left running under
            # this worker, whose exit the launcher reaps as a crash: queued again after a
            # wait, failed after MAX_CRASHES; the next worker resumes the study.
            logger.error(
                "job=%d model=%s: the store is unavailable (%s); the job is left to be "
                "queued again when this worker's exit is reaped",
                job.id,
                model.name,
                exc,
            )
            raise
        except StudyStorageUnavailableError as exc:
            # the study's storage's condition, not the job's, outlasting this worker's wait
            # (:func:`~tunewatch._tuning_outage.resumed_after_outages`): left as a store
            # outage is
            message = (
                f"job {job.id}: the study's storage is unavailable ({exc}); worker "
                f"{self.worker} leaves the job running, to be queued again when its exit "
                "is reaped"
            )
            logger.error(
                "job=%d model=%s: the study's storage is unavailable (%s); the job is left "
                "to be queued again when this worker's exit is reaped",
                job.id,
                model.name,
                exc,
            )
            raise TuningError(message) from exc
        except (
            TunewatchError,
            RetuneError,
            MonitorError,
            ObjectiveError,
            ShadowError,
            ValueError,
        ) as exc:
            message = f"{type(exc).__name__}: {exc}"
            logger.error("job=%d model=%s failed: %s", job.id, model.name, message)
            # shown to any caller: no database endpoint, no path under the data directory
            # (an artefact that could not be read or written named its file's)
            shown = redacted(
                message, data_dir=Path(self.config.data_dir), store_url=self.store.engine.url
            )
            failed = fail_job(self.store, job, shown, worker=self.worker)
            if failed is None:  # the job is another worker's: this one's failure is its own
                holder = self.store.get_job(job.id)
                raise TuningError(
                    f"job {job.id}: worker {self.worker} failed ({message}); the job is "
                    f"{holder.status}"
                    + (f" under worker {holder.worker}" if holder.worker else "")
                    + ", which this failure leaves as it is"
                ) from exc
            return failed
        except KeyboardInterrupt:  # Ctrl-C: stopped, not failed
            requeue_job(self.store, job, worker=self.worker)
            raise
        except Exception as exc:  # the job boundary: log with traceback, record, re-raise
            logger.exception("job=%d model=%s crashed", job.id, model.name)
            shown = redacted(
                f"{type(exc).__name__}: {exc}",
                data_dir=Path(self.config.data_dir),
                store_url=self.store.engine.url,
            )
            fail_job(self.store, job, shown, worker=self.worker)
            raise
        # this worker's own process, from its claim to now: window, study (and nested
        # CV's outer studies), refit, export (the study's wall and CPU seconds over every
        # run, all its workers', are the result's study_wall_s and study_cpu_s; the outer
        # studies', its nested entry's)
        result["wall_s"] = time.monotonic() - wall0
        result["cpu_s"] = time.process_time() - cpu0
        # its version is registered: succeeded, even if the launcher failed the job as
        # stale meanwhile (as the launcher itself finishes a stale job whose version it sees)
        row, finished = finish_job(
            self.store,
            job,
            status="succeeded",
            result=result,
            replacing=("queued", "running", "failed"),
        )
        if finished:  # not when the launcher finished (and announced) it first
            self.store.add_event(model=model.name, type="challenger_registered", payload=result)
        return row

    def _alive_within(self) -> timedelta:
        """How recent a job's heartbeat shows its worker alive, as the launcher judges it:
        a worker joining such a job leaves it to that worker."""
        from tunewatch._launcher import STALE_HEARTBEATS  # it imports this module

        return timedelta(seconds=STALE_HEARTBEATS * self.config.tuning.heartbeat_s)

    # -- the work --------------------------------------------------------------------------
    def _training_window(
        self, model: ModelRow, cfg: ModelConfig, job: JobRow
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """What ``job`` trains on (:attr:`TuningWindow.training` of :meth:`_window`)."""
        return self._window(model, cfg, job).training

    def _window(self, model: ModelRow, cfg: ModelConfig, job: JobRow) -> TuningWindow:
        """``job``'s window (:func:`tunewatch._tuning_window.tuning_window`).
        The first worker to read it records the time of its earliest request in the job's
        spec (``window_start``): the retention purge deletes nothing from then on while
        the job is queued or running, so a worker resuming or joining it reads the same
        window (another is a dataset its study refuses)."""

        def record(start: datetime) -> None:
            self.store.record_job_window_start(job.id, start)

        return tuning_window(
            self.store,
            self.artefacts,
            model,
            cfg,
            job,
            parent=self._parent(model, job),
            on_window_start=record,
        )

    @contextlib.contextmanager
    def _interruptible(self, cancelled: CancelWatch) -> Iterator[None]:
        """A study whose job was cancelled ends this worker's part (``_Cancelled``), and
        one this worker was asked to stop ends the job as interrupted (queued again),
        whether it returned or raised (stopped before any trial completed)."""
        try:
            yield
        except RetuneError as exc:
            self._stop_if_asked(cancelled, exc)
            raise
        self._stop_if_asked(cancelled)

    def _stop_if_asked(self, cancelled: CancelWatch, exc: Exception | None = None) -> None:
        if cancelled.cancelled is not None:
            raise _Cancelled() from exc
        if self.stop is not None and self.stop.is_set():
            raise _Interrupted() from exc

    def _interrupted(self, cancelled: CancelWatch) -> bool:
        """The study's check between trials: this worker was asked to stop, or its job
        was cancelled."""
        return (self.stop is not None and self.stop.is_set()) or cancelled()

    def _parent(self, model: ModelRow, job: JobRow) -> VersionRow | None:
        """The champion the job was queued against (``spec.champion_version``), whose
        reference rows it trains on and whose child it registers: none for a job queued
        while the model had none (``null``), the current one for a job queued before
        jobs recorded it (no key)."""
        if "champion_version" not in job.spec:
            return self.store.champion(model.name)
        version = job.spec["champion_version"]
        return None if version is None else self.store.get_version(model.name, int(version))

    def _tune(
        self,
        job: JobRow,
        model: ModelRow,
        cfg: ModelConfig,
        on_progress: Any,
        cancelled: CancelWatch,
    ) -> dict[str, Any]:
        tj = cfg.tuning
        study = study_name(job)
        storage = self.config.tuning_storage_url
        heartbeat = self.config.tuning.heartbeat_s if "://" in storage else None
        joined: SharedStudy | None = None
        if job.worker != self.worker:  # before anything else: a refused joiner makes nothing
            joined = join_study(
                self.store,
                job,
                storage=storage,
                study=study,
                tuning=tj,
                heartbeat_interval=heartbeat,
                interrupted=functools.partial(self._interrupted, cancelled),
                stop=self.stop,
            )
            if joined is None:  # stopped, or the job cancelled, while it waited
                self._stop_if_asked(cancelled)
                raise _Interrupted()
        window = self._window(model, cfg, job)
        x, y, n_traffic = window.training
        if model.task == "multiclass":  # the export's class check, before any trial
            served = served_model(self.store, self.artefacts, model, self._parent(model, job))
            n_classes = class_count(model, served, x)
            if n_classes is not None:
                check_classes(np.unique(y), n_classes)
        groups = cv_groups(tj, model.feature_names, x)  # None without a group column
        cv = cv_scheme(tj, model.task)
        objective = make_objective(cfg.objective.name, task=model.task, **cfg.objective.params)
        if isinstance(cv, NestedCV):  # its outer parts are tuned after the main study
            check_nested(cv, tj, x, y, groups, objective=objective)
        version_of_data = dataset_version(x, y)
        space_path = tj.search_space or default_search_space(model.task)
        space = load_search_space(space_path)
        plan = warm_start_plan(
            self.store,
            self.config.tuning_storage_url,
            model.name,
            kind=cfg.tuning.warm_start,
            space=space,
            objective=objective,
            freeze_below=cfg.tuning.freeze_unimportant_below,
            seed=tj.seed,
            archive=self.config.tuning_archive_url,
        )
        predictor, ceiling, unscreened = serving_cost(
            self.store, model.name, cfg, self._parent(model, job), space, job.created_at
        )
        if ceiling is not None:
            plan = with_ceiling(plan, ceiling, unscreened)
        elif unscreened:  # no ceiling applies: the plan says which guardrail set none, why
            plan = (
                WarmStartPlan(notes=unscreened)
                if plan is None
                else dataclasses.replace(plan, notes=(*plan.notes, *unscreened))
            )
        # every worker runs under the job's budget, in its study, at its heartbeat interval
        shared = joined or hold_study(
            job, storage=storage, study=study, tuning=tj, heartbeat_interval=heartbeat
        )
        max_trials = shared.max_trials
        self.store.update_job_progress(
            job.id,
            {
                "phase": "tuning",
                "study": study,
                "objective": objective.name,  # what its best_value is the loss of
                "objective_params": objective_params(objective),  # a cost matrix, …
                "dataset_version": version_of_data,
                "rows": int(x.shape[0]),
                "max_trials": max_trials,
            },
            # the holder's: the budget, the study's token and storage (a joiner's: nothing)
            spec=dict(shared.spec) or None,
        )
        run = functools.partial(
            run_study,
            storage=storage,
            space=space,
            objective=objective,
            budget=shared.budget,
            plan=plan,
            seed=tj.seed,
            heartbeat_interval=shared.heartbeat_interval,
            interrupted=functools.partial(self._interrupted, cancelled),
            cost_predictor=predictor,
            model=job.model,
            job_id=job.id,
        )
        tune = functools.partial(
            resumed_after_outages,
            run,
            what=f"job={job.id} model={job.model}",
            storage_url=self.config.tuning_storage_url,
            limit_s=self.storage_outage_limit_s,
            interrupted=functools.partial(self._interrupted, cancelled),
            stop=self.stop,
        )
        progress = ProgressReporter(self.store, job.id, storage, study, max_trials, on_progress)
        progress.start()
        try:
            with self._interruptible(cancelled):
                result: TuningResult = tune(study_name=study, x=x, y=y, cv=cv, groups=groups)
        finally:
            progress.stop()
        estimate, nested_plan, nested = None, None, None
        if isinstance(cv, NestedCV):
            outer_total = cv.outer.n_splits

            def outer_done(done: tuple[TuningResult, ...]) -> None:
                # the main study's figures stay; the outer studies' are counted beside
                self.store.update_job_progress(
                    job.id,
                    {
                        "phase": "nested_estimate",
                        "study": study,
                        "max_trials": max_trials,
                        "trials": result.n_trials,
                        "cost_rejected": result.n_cost_rejected,
                        "best_value": result.best_value,
                        "outer_done": len(done),
                        "outer_total": outer_total,
                        "nested": outer_cost(done),
                    },
                )

            outer_done(())
            nested_plan = outer_plan(ceiling)  # cold: see tuned_estimate
            with self._interruptible(cancelled):
                tuned = tuned_estimate(
                    tune, study, x, y, cv, objective, tj.seed, groups, nested_plan, outer_done
                )
            estimate, nested = tuned.estimate, outer_cost(tuned.outer)
        self.store.update_job_progress(
            job.id,
            {
                "phase": "exporting",
                "study": study,
                "max_trials": max_trials,
                "trials": result.n_trials,
                "cost_rejected": result.n_cost_rejected,
                "best_value": result.best_value,
            },
        )
        importances = study_importances_of(job, storage, study, seed=tj.seed)
        champion = self._parent(model, job)
        candidate = export_candidate(
            job=job,
            model=model,
            tuning=tj,
            result=result,
            x=x,
            y=y,
            n_traffic=n_traffic,
            served=served_model(self.store, self.artefacts, model, champion),
            cv=cv,
            groups=groups,
            objective=objective,
            importances=importances,
            nested_estimate=(None if estimate is None else estimate_details(estimate, nested_plan)),
            search_space=space_path,
            nested=nested,
        )
        if cancelled():  # during the refit and export: this worker registers nothing
            raise _Cancelled()
        # cancelled from here on (the candidate's sandboxed load takes a second), the
        # store refuses the version under the job's lock: `job_cancelled`
        try:
            row = self.registry.register(
                model.name,
                candidate.exported.onnx,
                VersionMetadata(
                    task=model.task,
                    feature_names=tuple(model.feature_names),
                    hyperparameters=dict(result.best_params),
                    dataset_version=version_of_data,
                    parent_version=champion.version if champion else None,
                    study=study,
                    # the snapshot's counts: it holds the window's every request
                    details={**candidate.details, **reference_details(window)},
                ),
                actor=f"job:{job.id}",
                stage="shadow",
                reference=tuned_reference(
                    window, candidate.scores, candidate.exported.onnx, model=model, job=job
                ),
                once_per_study=True,  # workers sharing the study: the first one registers
                for_job=job.id,
            )
        except ConflictError as exc:
            if exc.code == "job_cancelled":
                cancelled()  # reads the cancelled job, whose error the worker logs
                raise _Cancelled() from exc
            if exc.code != "study_registered":
                raise
            raise _RegisteredElsewhere(exc.message) from exc
        return {
            "version": row.version,
            "study": study,
            "objective": objective.name,
            "objective_params": objective_params(objective),
            "best_value": result.best_value,
            "best_params": dict(result.best_params),
            "n_trials": result.n_trials,
            "stopped_by": result.stopped_by,
            "parity_error": candidate.exported.parity_error,
            "dataset_version": version_of_data,
            "warm_start": list(result.plan.strategies) if result.plan else [],
            "parent": candidate.details and (champion.version if champion else None),
            "study_wall_s": result.wall_s,
            "study_cpu_s": result.cpu_s,
            # the outer studies of `cv: nested`, which study_* leave out (none without it)
            "nested": nested,
        }


class _Cancelled(Exception):
    """The job was cancelled: this worker stops, registering nothing."""


class _Interrupted(Exception):
    """The worker was asked to stop: the job goes back to the queue."""


class _RegisteredElsewhere(Exception):
    """Another worker of the same job registered the study's winner first."""
