"""Re-tuning jobs: build the training window (:mod:`tunewatch._tuning_window`), plan the
warm start, run the study (its CV: :mod:`tunewatch._tuning_cv`), refit and export with a
parity gate, register the winner in shadow.

A job runs in a worker process (``tunewatch worker --job ID``), never in the API's event
loop; the leader starts workers for queued jobs (``tunewatch._launcher``), and more
workers on any machine can join the same study through a shared Optuna RDB storage.
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
from typing import Any

import numpy as np

from monitor import MonitorError
from monitor.objectives import ObjectiveError, make_objective
from retune import (
    Budget,
    RetuneError,
    TuningResult,
    check_classes,
    refit_and_export,
    run_study,
)
from retune.cv import NestedCV, dataset_version, out_of_fold
from retune.space import load_search_space
from shadow import OnnxModel, ShadowError
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config, ModelConfig
from tunewatch._errors import ConflictError, TunewatchError, TuningError
from tunewatch._reference import Reference
from tunewatch._registry import Registry
from tunewatch._serving_cost import serving_cost, with_ceiling
from tunewatch._shipped_spaces import default_search_space
from tunewatch._tuning_cv import (
    check_nested,
    cv_groups,
    cv_scheme,
    estimate_details,
    outer_plan,
    tuned_estimate,
)
from tunewatch._tuning_plan import warm_start_plan
from tunewatch._tuning_progress import CancelWatch, Heartbeat, ProgressReporter
from tunewatch._tuning_results import (
    job_result,
    registered_version,
    study_importances_of,
    study_name,
)
from tunewatch._tuning_window import training_window
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import JobRow, ModelRow, Store, VersionRow

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
    ) -> None:
        self.store = store
        self.registry = registry
        self.artefacts = artefacts
        self.config = config
        self.worker = worker
        # set (by the worker's SIGTERM handler) to end the study after the running trial
        # and put the job back in the queue for the next worker to resume
        self.stop = stop

    def run(self, job_id: int, *, on_progress: Any = None) -> JobRow:
        """Run (or join) job ``job_id`` to its end; the job row records the outcome. A job
        cancelled meanwhile is left cancelled: this worker stops after its running trial
        and registers nothing."""
        wall0, cpu0 = time.monotonic(), time.process_time()  # this worker's cost of the job
        # a job its worker is tuning stays that worker's: this one joins its study
        job = self.store.claim_job(job_id, self.worker, alive_within=self._alive_within())
        registered = self._registered(job)
        if registered is not None:
            return registered
        model = self.store.get_model(job.model)
        cfg = self.config.model_or_default(model.name, model.task)
        if job.worker == self.worker:
            logger.info("job=%d model=%s: tuning starts on %s", job.id, model.name, self.worker)
        else:
            logger.info(
                "job=%d model=%s: %s joins the study of worker %s, which holds the job",
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
            self._requeue(job)
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
            failed = self._fail(job, message)
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
            self._requeue(job)
            raise
        except Exception as exc:  # the job boundary: log with traceback, record, re-raise
            logger.exception("job=%d model=%s crashed", job.id, model.name)
            self._fail(job, f"{type(exc).__name__}: {exc}")
            raise
        # this worker's own process, from its claim to now: window, study, refit, export
        # (the study's wall and CPU seconds over every run, all its workers', are the
        # result's study_wall_s and study_cpu_s)
        result["wall_s"] = time.monotonic() - wall0
        result["cpu_s"] = time.process_time() - cpu0
        # its version is registered: succeeded, even if the launcher failed the job as
        # stale meanwhile (as the launcher itself finishes a stale job whose version it sees)
        row, finished = self._finish(
            job, status="succeeded", result=result, replacing=("queued", "running", "failed")
        )
        if finished:  # not when the launcher finished (and announced) it first
            self.store.add_event(model=model.name, type="challenger_registered", payload=result)
        return row

    def _registered(self, job: JobRow) -> JobRow | None:
        """Finish a job whose study registered its version already, before any work: its
        worker died between registering and finishing (killed after the launcher's stop
        timeout, say, and the job queued again), and the study, registering once, would
        tune again only to be refused. ``None`` when no version is registered."""
        version = registered_version(self.store, job)
        if version is None:
            return None
        result = {
            **job_result(version),
            "recovered": "the worker that registered it stopped; finished by the next worker",
        }
        row, finished = self._finish(job, status="succeeded", result=result)
        if finished:
            self.store.add_event(model=job.model, type="challenger_registered", payload=result)
            logger.warning(
                "job=%d model=%s: version %d of its study was registered by an earlier "
                "worker that did not finish the job; finished",
                job.id,
                job.model,
                version.version,
            )
        return row

    def _alive_within(self) -> timedelta:
        """How recent a job's heartbeat shows its worker alive, as the launcher judges it:
        a worker joining such a job leaves it to that worker."""
        from tunewatch._launcher import STALE_HEARTBEATS  # it imports this module

        return timedelta(seconds=STALE_HEARTBEATS * self.config.tuning.heartbeat_s)

    def _fail(self, job: JobRow, message: str) -> JobRow | None:
        """Fail the job with ``message`` and announce it (``retune_failed``), unless it had
        ended otherwise (and said so) meanwhile: a crash (a MemoryError) failed its job
        unannounced, unlike the errors a study is expected to meet.

        Only while this worker holds the job: ``None`` when another does (this worker
        joined the study of a worker tuning it, or the job was queued again, or taken
        over, since), whose work goes on; this worker's failure is logged, not the job's."""
        try:
            row = self.store.finish_job(job.id, status="failed", error=message, worker=self.worker)
        except ConflictError as exc:
            if exc.code == "job_claimed":
                logger.error(
                    "job=%d model=%s: %s; this worker's failure is not recorded on the job, "
                    "whose work goes on",
                    job.id,
                    job.model,
                    exc.message,
                )
                return None
            if exc.code != "job_finished":
                raise
            logger.warning(
                "job=%d model=%s: %s; this worker's outcome (failed) is not recorded on it",
                job.id,
                job.model,
                exc.message,
            )
            return self.store.get_job(job.id)
        self.store.add_event(
            model=job.model, type="retune_failed", payload={"job": job.id, "error": message}
        )
        return row

    def _finish(self, job: JobRow, **outcome: Any) -> tuple[JobRow, bool]:
        """Record the job's end, unless it ended otherwise meanwhile (the launcher failed
        it as stale while this worker was slow to heartbeat): that end stands. Returns
        the job and whether this end was recorded."""
        try:
            return self.store.finish_job(job.id, **outcome), True
        except ConflictError as exc:
            if exc.code != "job_finished":
                raise
            logger.warning(
                "job=%d model=%s: %s; this worker's outcome (%s) is not recorded on it",
                job.id,
                job.model,
                exc.message,
                outcome.get("status"),
            )
            return self.store.get_job(job.id), False

    def _requeue(self, job: JobRow) -> None:
        """This worker was stopped: the job goes back to the queue, unless another worker
        has claimed it since."""
        if self.store.requeue_job(job.id, self.worker):
            logger.warning("job=%d model=%s: stopped, queued again", job.id, job.model)
            self.store.add_event(
                model=job.model, type="retune_interrupted", payload={"job": job.id}
            )

    # -- the work --------------------------------------------------------------------------
    def _training_window(
        self, model: ModelRow, cfg: ModelConfig, job: JobRow
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """``job``'s training window (:func:`tunewatch._tuning_window.training_window`).
        The first worker to read it records the time of its earliest request in the job's
        spec (``window_start``): the retention purge deletes nothing from then on while
        the job is queued or running, so a worker resuming or joining it reads the same
        window (another is a dataset its study refuses)."""

        def record(start: datetime) -> None:
            self.store.record_job_window_start(job.id, start)

        return training_window(
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

    def _served(self, model: ModelRow, parent: VersionRow | None) -> OnnxModel | None:
        """The version whose serving contract the challenger takes: the parent, else the
        current champion (a job queued with none), else none."""
        version = parent if parent is not None else self.store.champion(model.name)
        if version is None:
            return None
        return OnnxModel.from_bytes(self.artefacts.get(version.artefact_sha256))

    def _classes(self, model: ModelRow, served: OnnxModel | None, x: np.ndarray) -> int | None:
        """How many classes a multiclass challenger must answer: as many as the version it
        would replace (a window missing a class must not export fewer columns)."""
        if model.task != "multiclass" or served is None:
            return None
        probe = np.ascontiguousarray(np.nan_to_num(x[:1]), dtype=served.signature.input.dtype)
        return int(served.primary(served.run(probe)).shape[1])

    def _tune(
        self,
        job: JobRow,
        model: ModelRow,
        cfg: ModelConfig,
        on_progress: Any,
        cancelled: CancelWatch,
    ) -> dict[str, Any]:
        tj = cfg.tuning
        x, y, n_traffic = self._training_window(model, cfg, job)
        if model.task == "multiclass":  # the export's class check, before any trial
            served = self._served(model, self._parent(model, job))
            n_classes = self._classes(model, served, x)
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
        )
        predictor, ceiling, unscreened = serving_cost(
            self.store, model.name, cfg, self._parent(model, job), space, job.created_at
        )
        if ceiling is not None:
            plan = with_ceiling(plan, ceiling, unscreened)
        study = study_name(job)
        storage = self.config.tuning_storage_url
        budget = Budget(
            max_trials=tj.max_trials,
            wall_time_s=tj.wall_time_s,
            cpu_time_s=tj.cpu_time_s,
            patience=tj.patience,
            min_relative_improvement=tj.min_relative_improvement,
            pruner=tj.pruner,
        )
        self.store.update_job_progress(
            job.id,
            {
                "phase": "tuning",
                "study": study,
                "dataset_version": version_of_data,
                "rows": int(x.shape[0]),
                "max_trials": tj.max_trials,
            },
            # the whole budget the job runs under, as the worker holding it reads its
            # config (a worker joining the study leaves it: its budget is its own run's)
            spec={"budget": dataclasses.asdict(budget)} if job.worker == self.worker else None,
        )
        tune = functools.partial(
            run_study,
            storage=storage,
            space=space,
            objective=objective,
            budget=budget,
            plan=plan,
            seed=tj.seed,
            heartbeat_interval=self.config.tuning.heartbeat_s if "://" in storage else None,
            interrupted=functools.partial(self._interrupted, cancelled),
            cost_predictor=predictor,
        )
        progress = ProgressReporter(self.store, job.id, storage, study, tj.max_trials, on_progress)
        progress.start()
        try:
            with self._interruptible(cancelled):
                result: TuningResult = tune(study_name=study, x=x, y=y, cv=cv, groups=groups)
        finally:
            progress.stop()
        estimate, nested_plan = None, None
        if isinstance(cv, NestedCV):
            self.store.update_job_progress(
                job.id,
                {
                    "phase": "nested_estimate",
                    "study": study,
                    "max_trials": tj.max_trials,
                    "trials": result.n_trials,
                    "cost_rejected": result.n_cost_rejected,
                    "best_value": result.best_value,
                },
            )
            nested_plan = outer_plan(ceiling)  # cold: see tuned_estimate
            with self._interruptible(cancelled):
                estimate = tuned_estimate(
                    tune, study, x, y, cv, objective, tj.seed, groups, nested_plan
                )
        self.store.update_job_progress(
            job.id,
            {
                "phase": "exporting",
                "study": study,
                "max_trials": tj.max_trials,
                "trials": result.n_trials,
                "cost_rejected": result.n_cost_rejected,
                "best_value": result.best_value,
            },
        )
        importances = study_importances_of(job, storage, study, seed=tj.seed)
        champion = self._parent(model, job)
        served = self._served(model, champion)
        exported = refit_and_export(
            dict(result.best_params),
            x,
            y,
            tolerance=tj.parity_tolerance,
            seed=tj.seed,
            name=f"{model.name}-job{job.id}",
            n_classes=self._classes(model, served, x),
            # a request valid for the version it would replace is valid for it
            like=None if served is None else served.signature,
        )
        session = OnnxModel.from_bytes(exported.onnx)
        latencies = []
        for row in x[:200].astype(session.signature.input.dtype):
            started = time.perf_counter()
            session.run(row.reshape(1, -1))
            latencies.append(time.perf_counter() - started)
        details = {
            "job": job.id,
            "trigger": job.trigger,
            "objective": objective.name,
            "best_value": result.best_value,
            "n_trials": result.n_trials,
            "n_pruned": result.n_pruned,
            "n_vetoed": result.n_vetoed,
            "n_cost_rejected": result.n_cost_rejected,
            "stopped_by": result.stopped_by,
            "fold_scores": list(result.fold_scores_of_best.scores),
            "fold_spread": result.fold_scores_of_best.spread,
            "importances": importances,
            "cv": {"scheme": cv.name, "group_column": tj.cv_group_column},
            "nested_estimate": (
                None if estimate is None else estimate_details(estimate, nested_plan)
            ),
            "parity_error": exported.parity_error,
            "latency_p99_s": float(np.quantile(latencies, 0.99)),
            # the plan the study ran by: a joining or resuming worker adopts the stored one
            "warm_start_plan": result.plan.to_dict() if result.plan else None,
            # this worker's `tuning.warm_start`: "none" learns from no earlier study
            "warm_start_mode": tj.warm_start,
            "search_space": space_path,
            # the space the study searched (a resumed study keeps the one it began with):
            # the report says what was searched after the file changes
            "searched_space": result.space.model_dump(mode="json"),
            "rows": int(x.shape[0]),
            "traffic_rows": n_traffic,
            # the study's, over every run of it (all its workers', CPU summed), as the
            # budget counts them
            "wall_s": result.wall_s,
            "cpu_s": result.cpu_s,
        }
        # what monitors calibrate on: the winner's scores of rows it did not train on (its
        # own scores of its training rows are overconfident), in the columns it answers:
        # P(class 1) alone when it answers like a one-column binary champion
        scores = out_of_fold(
            result.best_params, x, y, scheme=cv, seed=tj.seed, groups=groups
        ).astype(np.float32)
        if session.signature.primary_width == 1 and scores.shape[1] == 2:
            scores = scores[:, 1:]
        if cancelled():  # during the refit and export: this worker registers nothing
            raise _Cancelled()
        # cancelled from here on (the candidate's sandboxed load takes a second), the
        # store refuses the version under the job's lock: `job_cancelled`
        try:
            row = self.registry.register(
                model.name,
                exported.onnx,
                VersionMetadata(
                    task=model.task,
                    feature_names=tuple(model.feature_names),
                    hyperparameters=dict(result.best_params),
                    dataset_version=version_of_data,
                    parent_version=champion.version if champion else None,
                    study=study,
                    details=details,
                ),
                actor=f"job:{job.id}",
                stage="shadow",
                reference=Reference(features=x, labels=y.astype(np.float64), scores=scores),
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
            "best_value": result.best_value,
            "best_params": dict(result.best_params),
            "n_trials": result.n_trials,
            "stopped_by": result.stopped_by,
            "parity_error": exported.parity_error,
            "dataset_version": version_of_data,
            "warm_start": list(result.plan.strategies) if result.plan else [],
            "parent": details and (champion.version if champion else None),
            "study_wall_s": result.wall_s,
            "study_cpu_s": result.cpu_s,
        }


class _Cancelled(Exception):
    """The job was cancelled: this worker stops, registering nothing."""


class _Interrupted(Exception):
    """The worker was asked to stop: the job goes back to the queue."""


class _RegisteredElsewhere(Exception):
    """Another worker of the same job registered the study's winner first."""
