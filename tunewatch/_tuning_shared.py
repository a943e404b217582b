"""What every worker of a re-tuning job shares, whatever its own config says: the job's
budget, its study in one Optuna storage, and the study's heartbeat interval.

The worker holding the job begins its study (:func:`hold_study`) and records in the job's
spec the budget the job runs under (``budget``, its config's, or the one the job began
with when it is resumed), a token the study was begun with (``study_token``) and its
storage, password hidden (``study_storage``). A worker joining the job
(``tunewatch worker --job ID`` on another machine; :func:`join_study`) waits for them,
runs under that budget, and joins the study only where its storage holds it with that
token: one whose ``tuning.storage_url`` was another (left at its default,
``<data_dir>/optuna.db``) said it joined, then created and tuned a study of the same name
alone, twice the budget trained, each worker overwriting the other's progress. Each
worker heartbeats at the interval the study pinned when it began
(:mod:`retune._optuna._pins`): workers whose ``tuning.heartbeat_s`` differed failed each
other's live trials as stale.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from retune import Budget, StudyPins, begin_study, study_pins
from tunewatch._config_tuning import TuningJobConfig
from tunewatch._errors import TuningError
from tunewatch.store import JobRow, Store, redact_url

__all__ = ["SharedStudy", "hold_study", "join_study"]

logger = logging.getLogger(__name__)

#: Keys of a job's spec the worker holding it records as it begins the study.
SPEC_BUDGET = "budget"
SPEC_TOKEN = "study_token"
SPEC_STORAGE = "study_storage"
#: How often a joining worker reads the job while it waits for its study to begin.
JOIN_POLL_S = 1.0


@dataclass(frozen=True, kw_only=True)
class SharedStudy:
    """The job as a worker runs it: under ``budget``, heartbeating its study's trials at
    ``heartbeat_interval`` (``None``: a journal file, no heartbeats); ``spec``, what the
    worker holding the job records in its spec (nothing for a joiner)."""

    budget: Budget
    heartbeat_interval: int | None
    spec: Mapping[str, Any]

    @property
    def max_trials(self) -> int:
        assert self.budget.max_trials is not None  # _job_budget's: a config's always has one
        return self.budget.max_trials


def config_budget(tuning: TuningJobConfig) -> Budget:
    """The budget a model's ``tuning`` config gives a job."""
    return Budget(
        max_trials=tuning.max_trials,
        wall_time_s=tuning.wall_time_s,
        cpu_time_s=tuning.cpu_time_s,
        patience=tuning.patience,
        min_relative_improvement=tuning.min_relative_improvement,
        pruner=tuning.pruner,
    )


def hold_study(
    job: JobRow,
    *,
    storage: str,
    study: str,
    tuning: TuningJobConfig,
    heartbeat_interval: int | None,
) -> SharedStudy:
    """The worker holding ``job`` begins its study ``study`` in ``storage`` (or finds it,
    resuming the job) and returns what to record in the job's spec. A study the job's
    spec says was begun elsewhere, absent from this storage, begins anew here (said so);
    one of the name this storage holds with another token is not the job's: refused."""
    budget = _job_budget(job, tuning)
    token = job.spec.get(SPEC_TOKEN)
    if isinstance(token, str):
        pins = study_pins(storage=storage, study_name=study)
        if pins is None:
            logger.warning(
                "job=%d model=%s: its study %s, begun in the tuning storage %s, is not in this "
                "worker's (%s): the study begins anew here, its earlier trials left there",
                job.id,
                job.model,
                study,
                job.spec.get(SPEC_STORAGE, "unrecorded"),
                _shown(storage),
            )
        elif pins.token != token:
            raise TuningError(_another_study(job, study, storage))
        else:
            return _shared(job, budget, pins, storage, heartbeat_interval)
    pins = begin_study(
        storage=storage,
        study_name=study,
        token=secrets.token_hex(8),
        heartbeat_interval=heartbeat_interval,
    )
    return _shared(job, budget, pins, storage, heartbeat_interval)


def join_study(
    store: Store,
    job: JobRow,
    *,
    storage: str,
    study: str,
    tuning: TuningJobConfig,
    heartbeat_interval: int | None,
    interrupted: Callable[[], bool],
    stop: threading.Event | None,
) -> SharedStudy | None:
    """A worker joining ``job``, which another worker holds: waits until that worker has
    begun the study (reading the job every :data:`JOIN_POLL_S`; ``None`` once
    ``interrupted()``), then checks that ``storage`` holds the very study, creating
    nothing. Raises :class:`TuningError` when it does not, or when the job stopped being
    that worker's before its study began."""
    current = _await_study(store, job, interrupted=interrupted, stop=stop)
    if current is None:
        return None
    budget = _job_budget(current, tuning)
    token = current.spec.get(SPEC_TOKEN)
    pins = study_pins(storage=storage, study_name=study)
    if pins is None:
        raise TuningError(
            f"job {job.id}: its study {study} is not in this worker's tuning storage "
            f"({_shown(storage)}); worker {job.worker}, which holds the job, tunes it in "
            f"{current.spec.get(SPEC_STORAGE, 'a storage it did not record')}: set "
            "`tuning.storage_url` to that storage to join it"
        )
    if isinstance(token, str) and pins.token != token:
        raise TuningError(_another_study(current, study, storage))
    # a joiner records nothing in the job's spec: what it runs under is the holder's
    return dataclasses.replace(_shared(job, budget, pins, storage, heartbeat_interval), spec={})


def _await_study(
    store: Store,
    job: JobRow,
    *,
    interrupted: Callable[[], bool],
    stop: threading.Event | None,
) -> JobRow | None:
    """``job`` once the worker holding it has begun its study (its spec records the token,
    or, from a worker begun before tokens, the budget); ``None`` once ``interrupted()``."""
    current, said = job, False
    wait = stop if stop is not None else threading.Event()
    while SPEC_TOKEN not in current.spec and SPEC_BUDGET not in current.spec:
        if interrupted():
            return None
        if current.status != "running" or current.worker != job.worker:
            raise TuningError(
                f"job {job.id}: worker {job.worker}, which held it, stopped before it began "
                f"the job's study (the job is {current.status}"
                + (f" under worker {current.worker}" if current.worker else "")
                + "); this worker waited to join that study: start it again to run the job"
            )
        if not said:
            logger.info(
                "job=%d model=%s: waiting for worker %s, which holds the job, to begin its "
                "study (it records the job's budget and study as it does)",
                job.id,
                job.model,
                job.worker,
            )
            said = True
        wait.wait(JOIN_POLL_S)
        current = store.get_job(job.id)
    return current


def _job_budget(job: JobRow, tuning: TuningJobConfig) -> Budget:
    """The budget ``job`` runs under: the one its spec records (the worker that began it
    recorded its config's), else this worker's config's."""
    own = config_budget(tuning)
    recorded = job.spec.get(SPEC_BUDGET)
    if not isinstance(recorded, dict):
        if job.spec.get(SPEC_TOKEN) is not None:  # begun, but recorded no budget
            logger.warning(
                "job=%d model=%s: the job records no budget (begun before jobs recorded "
                "theirs); this worker runs under its config's: max_trials %d",
                job.id,
                job.model,
                tuning.max_trials,
            )
        return own
    names = {field.name for field in dataclasses.fields(Budget)}
    try:
        budget = Budget(**{k: v for k, v in recorded.items() if k in names})
        if not isinstance(budget.max_trials, int):
            raise ValueError(f"`max_trials` must be a whole number, got {budget.max_trials!r}")
    except (TypeError, ValueError) as exc:
        logger.warning(
            "job=%d model=%s: its recorded budget %s cannot be read (%s); this worker runs "
            "under its config's",
            job.id,
            job.model,
            recorded,
            exc,
        )
        return own
    differ = {
        key: (value, getattr(own, key))
        for key, value in dataclasses.asdict(budget).items()
        if value != getattr(own, key)
    }
    if differ:
        logger.info(
            "job=%d model=%s: runs under the job's budget, not this worker's config's (%s): "
            "max_trials counts the trials of all the job's workers",
            job.id,
            job.model,
            ", ".join(f"{k} {job_v}, not {own_v}" for k, (job_v, own_v) in differ.items()),
        )
    return budget


def _shared(
    job: JobRow,
    budget: Budget,
    pins: StudyPins,
    storage: str,
    heartbeat_interval: int | None,
) -> SharedStudy:
    interval = heartbeat_interval
    if heartbeat_interval is not None and pins.heartbeat_interval is not None:
        interval = pins.heartbeat_interval
        if interval != heartbeat_interval:
            logger.info(
                "job=%d model=%s: heartbeat interval %d s, its study's (pinned when it "
                "began); this worker's `tuning.heartbeat_s` is %d s: it heartbeats, and "
                "judges other workers' trials stale, at the study's",
                job.id,
                job.model,
                interval,
                heartbeat_interval,
            )
    spec = {
        SPEC_BUDGET: dataclasses.asdict(budget),
        SPEC_TOKEN: pins.token,
        SPEC_STORAGE: _shown(storage),
    }
    return SharedStudy(budget=budget, heartbeat_interval=interval, spec=spec)


def _another_study(job: JobRow, study: str, storage: str) -> str:
    return (
        f"job {job.id}: this worker's tuning storage ({_shown(storage)}) holds another study "
        f"named {study}, not the one worker {job.worker} began in "
        f"{job.spec.get(SPEC_STORAGE, 'its storage')}: set `tuning.storage_url` to that "
        "storage to join it"
    )


def _shown(storage: str) -> str:
    """``storage`` for a message and the job's spec: a URL's password as ``***``."""
    if "://" not in storage:
        return storage  # a journal file's path
    try:
        return redact_url(storage)
    except ValueError:  # a port that is not a number
        return "<unparseable URL>"
