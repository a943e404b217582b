"""The only module of :mod:`retune` importing Optuna; it translates Optuna's errors, and
those of the storage beneath it (an RDB's through SQLAlchemy, a journal file's).

It opens (or joins) studies on an RDB URL or a journal file, applies a
:class:`~retune.warmstart.WarmStartPlan` through a sampler wrapper, reads history and
computes importances. Optuna's experimental features used here (heartbeats, stale-trial
retry, ``fail_stale_trials``) are used knowingly: their ``ExperimentalWarning`` is
silenced around those calls only.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.exceptions import ExperimentalWarning, OptunaError, UpdateFinishedTrialError
from optuna.samplers import BaseSampler, TPESampler
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from retune._budget import PrunerKind
from retune._errors import StudyError, WarmStartError
from retune.space import CategoricalParam, Choice, FloatParam, IntParam, SearchSpace
from retune.space._params import grid_bounds
from retune.warmstart._base import History, HistoryTrial, WarmStartPlan

logger = logging.getLogger(__name__)

MAX_STALE_RETRIES = 2
#: A RUNNING trial is stale, and failed, once its last heartbeat is this many heartbeat
#: intervals old (by the database's clock): Optuna's grace period.
STALE_AFTER_HEARTBEATS = 2
_CATEGORICAL_TRIES = 8


def _is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the storage under Optuna, which lets it through
    unwrapped: a journal file's I/O error, or an RDB's error as SQLAlchemy raises it.
    SQLAlchemy's are recognised by their package, not imported: no domain package
    imports SQLAlchemy (DESIGN.md §1)."""
    if isinstance(exc, OSError):
        return True
    return any(cls.__module__.partition(".")[0] == "sqlalchemy" for cls in type(exc).__mro__)


class PruneTrial(Exception):
    """Raised by an objective to end its trial as PRUNED."""


class FailTrial(Exception):
    """Raised by an objective to end its trial as FAIL (recorded, not re-raised)."""


@contextlib.contextmanager
def _experimental_ok() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ExperimentalWarning)
        yield


@contextlib.contextmanager
def _translated(study_name: str, doing: str) -> Iterator[None]:
    try:
        yield
    except (OptunaError, KeyError, ValueError, RuntimeError) as exc:
        if isinstance(exc, (PruneTrial, FailTrial)):
            raise
        raise StudyError(
            f"{doing} failed: {type(exc).__name__}: {exc}", study_name=study_name
        ) from exc
    except Exception as exc:
        if not _is_storage_error(exc):
            raise
        raise StudyError(
            f"{doing} failed: {type(exc).__name__}: {exc}", study_name=study_name
        ) from exc


# Opening an RDB storage sets up Optuna's schema when the database is new, and two
# openers doing it at once collide ("table studies already exists", a duplicate
# alembic_version row). In a process (a job's progress reporter opens the storage while
# its worker does) opening is serialised; processes (workers the launcher starts in one
# tick, `tunewatch worker` on another host) retry: once the winner has set the schema up,
# the others find it in place.
_OPENING = threading.Lock()
#: Tries at opening an RDB storage whose schema another process is setting up, and the
#: wait before the first retry (doubled at each).
_OPEN_TRIES = 6
_OPEN_RETRY_S = 0.05
_SCHEMA_SETUP_COLLISIONS = (
    "already exists",  # a table (SQLite), a relation (PostgreSQL), an index
    "alembic_version",  # the schema version row: a UNIQUE constraint
    "duplicate key value",  # PostgreSQL's unique violation (pg_type, alembic_version)
)


def _is_schema_setup_collision(exc: BaseException) -> bool:
    """Whether ``exc`` is the database refusing Optuna's schema set-up because another
    process was doing it at the same time."""
    return (
        _is_storage_error(exc)
        and not isinstance(exc, OSError)
        and any(text in str(exc) for text in _SCHEMA_SETUP_COLLISIONS)
    )


def make_storage(storage: str, *, heartbeat_interval: int | None) -> optuna.storages.BaseStorage:
    """An RDB storage for ``dialect://`` URLs, else a journal file at that path."""
    if "://" in storage:
        return _open_rdb(storage, heartbeat_interval=heartbeat_interval)
    if heartbeat_interval is not None:
        raise ValueError(
            "`heartbeat_interval` needs an RDB storage URL (journal files have no heartbeats), "
            f"got storage {storage!r}"
        )
    return JournalStorage(JournalFileBackend(storage))


def close_storage(backend: optuna.storages.BaseStorage) -> None:
    """Close the connections ``backend`` holds: an RDB storage's engine keeps a pool of
    them open until the garbage collector frees it (on PostgreSQL each is a server
    process), so a storage opened for a read or a run is closed after it."""
    if isinstance(backend, RDBStorage):
        backend.remove_session()
        backend.engine.dispose()


def _open_rdb(storage: str, *, heartbeat_interval: int | None) -> RDBStorage:
    for attempt in range(_OPEN_TRIES - 1):
        try:
            return _new_rdb(storage, heartbeat_interval=heartbeat_interval)
        except Exception as exc:
            if not _is_schema_setup_collision(exc):
                raise
            wait_s = _OPEN_RETRY_S * 2**attempt
            logger.info(
                "opening the Optuna storage collided with another process setting its schema "
                "up (%s: %s); trying again in %.2f s",
                type(exc).__name__,
                str(exc).splitlines()[0],
                wait_s,
            )
        time.sleep(wait_s)
    return _new_rdb(storage, heartbeat_interval=heartbeat_interval)


def _new_rdb(storage: str, *, heartbeat_interval: int | None) -> RDBStorage:
    with _OPENING, _experimental_ok():
        if heartbeat_interval is None:
            return RDBStorage(storage)
        return RDBStorage(
            storage,
            heartbeat_interval=heartbeat_interval,
            grace_period=STALE_AFTER_HEARTBEATS * heartbeat_interval,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_STALE_RETRIES
            ),
        )


# -- the plan-aware sampler -----------------------------------------------------------
class PlanSampler(BaseSampler):
    """Samples independently with ``base`` inside the plan's box, honours frozen
    parameters, and lets every ``explore_every``-th trial sample the full space.

    Distributions stay the full-space ones in every trial (Optuna forbids changing
    categorical choices within a study); only the draw is narrowed: numeric parameters
    by handing the base sampler the boxed distribution, categorical ones by rejection.
    """

    def __init__(self, base: BaseSampler, plan: WarmStartPlan, *, seed: int) -> None:
        self._base = base
        self._plan = plan
        self._rng = np.random.default_rng(seed)

    def _explores(self, trial: FrozenTrial) -> bool:
        every = self._plan.explore_every
        return every is not None and trial.number % every == every - 1

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if self._explores(trial):
            return self._base.sample_independent(study, trial, param_name, param_distribution)
        frozen = self._plan.frozen
        if param_name in frozen:
            internal = _internal_or_none(param_distribution, frozen[param_name])
            if internal is not None:
                return frozen[param_name]
        bound = self._plan.box_for(param_name)
        if bound is not None and isinstance(
            param_distribution, (FloatDistribution, IntDistribution)
        ):
            narrowed = _narrow(param_distribution, bound.low, bound.high)
            if narrowed is not None:
                return self._base.sample_independent(study, trial, param_name, narrowed)
        allowed = self._plan.choice_box.get(param_name)
        if allowed and isinstance(param_distribution, CategoricalDistribution):
            usable = [c for c in param_distribution.choices if c in allowed]
            if usable:
                for _ in range(_CATEGORICAL_TRIES):
                    value = self._base.sample_independent(
                        study, trial, param_name, param_distribution
                    )
                    if value in usable:
                        return value
                return usable[int(self._rng.integers(len(usable)))]
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._base.reseed_rng()


def _internal_or_none(dist: BaseDistribution, value: Any) -> float | None:
    try:
        internal = dist.to_internal_repr(value)
    except (ValueError, TypeError):
        return None
    return internal if dist._contains(internal) else None


def _narrow(
    dist: FloatDistribution | IntDistribution, low: float, high: float
) -> BaseDistribution | None:
    lo, hi = max(dist.low, low), min(dist.high, high)
    if isinstance(dist, IntDistribution):
        step = dist.step
        ilo = dist.low + int(np.ceil((lo - dist.low) / step)) * step
        ihi = dist.low + int(np.floor((hi - dist.low) / step)) * step
        if ilo >= ihi:
            return None
        return IntDistribution(ilo, ihi, log=dist.log, step=step)
    if dist.step is not None:
        bounds = grid_bounds(dist.low, dist.step, lo, hi)
        if bounds is None:
            return None
        lo, hi = bounds
    if not lo < hi:
        return None
    return FloatDistribution(float(lo), float(hi), log=dist.log, step=dist.step)


# -- studies ----------------------------------------------------------------------------
OUTCOME = "outcome"
"""Trial user attribute: ``complete`` | ``pruned`` | ``vetoed`` | ``cost_rejected`` | ``error``."""


def ran(user_attrs: Mapping[str, Any]) -> bool:
    """Whether a trial ran, as :class:`~retune.TuningResult` and :func:`study_progress`
    count trials: it recorded an ``outcome`` (trained, pruned, vetoed, failed, or rejected
    for its serving cost). Not one WAITING (a warm-start configuration enqueued), one
    still running, one given up untrained beyond ``max_trials`` (``skipped``), nor one a
    killed worker left."""
    return user_attrs.get(OUTCOME) is not None


@dataclass(frozen=True, kw_only=True)
class TrialRecord:
    number: int
    state: str
    value: float | None
    params: Mapping[str, Any]
    user_attrs: Mapping[str, Any]


class TrialHandle:
    """What an objective sees of a running trial (and a :class:`~retune.space.Suggester`)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self._trial = trial

    @property
    def number(self) -> int:
        return self._trial.number

    def suggest_int(self, name: str, low: int, high: int, *, step: int, log: bool) -> int:
        return self._trial.suggest_int(name, low, high, step=step, log=log)

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None, log: bool
    ) -> float:
        return self._trial.suggest_float(name, low, high, step=step, log=log)

    def suggest_categorical(self, name: str, choices: tuple[Choice, ...]) -> Choice:
        value = self._trial.suggest_categorical(name, list(choices))
        if value is None:  # choices never contain None: the space forbids it
            raise StudyError(f"`{name}` sampled None", study_name=self._trial.study.study_name)
        return value

    def set_attr(self, key: str, value: Any) -> None:
        self._trial.set_user_attr(key, value)

    def report_fold(self, fold: int, mean_loss: float) -> None:
        """Report the running mean after ``fold``; raise :class:`PruneTrial` when pruned."""
        self._trial.report(mean_loss, fold)
        if self._trial.should_prune():
            raise PruneTrial(f"pruned after fold {fold} at mean loss {mean_loss:.6g}")


class StudyHandle:
    """One process's connection to a (possibly shared) study."""

    def __init__(
        self,
        study: optuna.Study,
        *,
        created: bool,
        seed: int,
        storage: optuna.storages.BaseStorage,
    ) -> None:
        self._study = study
        self._storage = storage  # as opened: the study holds it wrapped in a cache
        self.created = created
        self.seed = seed  # this worker's sampler seed
        self.name = study.study_name
        self.stopped_by: str | None = None

    @property
    def user_attrs(self) -> dict[str, Any]:
        with _translated(self.name, "reading study attributes"):
            return dict(self._study.user_attrs)

    def set_user_attr(self, key: str, value: Any) -> None:
        with _translated(self.name, "writing a study attribute"):
            self._study.set_user_attr(key, value)

    def enqueue(self, params: Sequence[Mapping[str, Any]]) -> None:
        with _translated(self.name, "enqueueing warm-start trials"):
            for p in params:
                self._study.enqueue_trial(
                    dict(p), user_attrs={"warm_start": "enqueued"}, skip_if_exists=True
                )

    def fail_running_trials(self, reasons: Mapping[int, str]) -> list[int]:
        """Fail the trials numbered in ``reasons`` that are still RUNNING, each with an
        ``orphaned`` attribute giving its reason; returns the numbers failed (not one that
        finished meanwhile)."""
        failed: list[int] = []
        with _translated(self.name, "failing orphaned trials"):
            storage = self._study._storage
            for t in self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.number not in reasons:
                    continue
                try:
                    storage.set_trial_user_attr(t._trial_id, "orphaned", reasons[t.number])
                    storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
                except UpdateFinishedTrialError:
                    continue  # it finished meanwhile: it was not orphaned
                failed.append(t.number)
        return failed

    def close(self) -> None:
        """Close this process's connections to the study's storage (see
        :func:`close_storage`); the handle is not used after."""
        close_storage(self._storage)

    def fail_stale_trials(self) -> None:
        with _translated(self.name, "failing stale trials"), _experimental_ok():
            optuna.storages.fail_stale_trials(self._study)

    def trials(self) -> list[TrialRecord]:
        with _translated(self.name, "reading trials"):
            frozen = self._study.get_trials(deepcopy=False)
        return [
            TrialRecord(
                number=t.number,
                state=t.state.name,
                value=t.value if t.state == TrialState.COMPLETE else None,
                params=dict(t.params),
                user_attrs=dict(t.user_attrs),
            )
            for t in frozen
        ]

    def optimize(
        self,
        objective: Callable[[TrialHandle], float],
        *,
        should_stop: Callable[[], str | None],
    ) -> None:
        """Run trials until ``should_stop`` returns a reason (checked before and after each)."""
        reason = should_stop()
        if reason is not None:
            self.stopped_by = reason
            return

        def run(trial: optuna.Trial) -> float:
            try:
                return objective(TrialHandle(trial))
            except PruneTrial as exc:
                raise optuna.TrialPruned(str(exc)) from exc

        def after(study: optuna.Study, trial: FrozenTrial) -> None:
            why = should_stop()
            if why is not None:
                self.stopped_by = why
                study.stop()

        with _translated(self.name, "optimising"), _experimental_ok():
            self._study.optimize(run, callbacks=[after], catch=(FailTrial,), gc_after_trial=False)


def _pruner(kind: PrunerKind) -> optuna.pruners.BasePruner:
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_study(
    *,
    storage: str,
    study_name: str,
    seed: int,
    plan: WarmStartPlan | None,
    pruner: PrunerKind,
    heartbeat_interval: int | None,
) -> StudyHandle:
    """Create the study, or join it if it exists (another worker, or a restart).

    The creating worker samples with ``seed``; a joining worker with a seed of its own
    (random: workers on other hosts may share a pid), so workers do not propose the same
    points.
    """
    with _translated(study_name, "opening storage"):
        backend = make_storage(storage, heartbeat_interval=heartbeat_interval)
    with contextlib.ExitStack() as on_failure:  # closed unless the handle takes it
        on_failure.callback(close_storage, backend)
        with _translated(study_name, "opening storage"):
            exists = study_name in optuna.get_all_study_names(backend)
        worker_seed = seed if not exists else secrets.randbits(31)
        sampler = _sampler(plan, seed=worker_seed)
        with _translated(study_name, "creating or loading the study"):
            study = optuna.create_study(
                storage=backend,
                study_name=study_name,
                sampler=sampler,
                pruner=_pruner(pruner),
                direction="minimize",
                load_if_exists=True,
            )
        on_failure.pop_all()
    return StudyHandle(study, created=not exists, seed=worker_seed, storage=backend)


def rebuild_sampler(handle: StudyHandle, plan: WarmStartPlan | None) -> None:
    """Swap in the sampler of ``plan`` (a joining or resuming worker adopting the study's
    stored plan, which may be empty or none), with the worker's own seed."""
    handle._study.sampler = _sampler(plan, seed=handle.seed)


def _sampler(plan: WarmStartPlan | None, *, seed: int) -> BaseSampler:
    """TPE narrowed by ``plan`` (:class:`PlanSampler`), or plain TPE for no plan or one
    that narrows nothing (cost ceilings only: they reject configurations, not draws)."""
    base = TPESampler(seed=seed)
    if plan is None or (plan.is_empty and not plan.explore_every):
        return base
    return PlanSampler(base, plan, seed=seed)


# -- history and importances -----------------------------------------------------------------
def load_history(storage: str, study_names: Sequence[str]) -> History:
    """Completed trials of ``study_names`` (oldest first), ranks normalised per study."""
    items: list[HistoryTrial] = []
    backend: optuna.storages.BaseStorage | None = None  # one for all the studies
    try:
        for name in study_names:
            try:
                if backend is None:
                    backend = make_storage(storage, heartbeat_interval=None)
                study = optuna.load_study(study_name=name, storage=backend)
                trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            except KeyError as exc:
                raise WarmStartError(
                    f"history study {name!r} does not exist in {storage!r}"
                ) from exc
            except Exception as exc:
                if not isinstance(exc, OptunaError) and not _is_storage_error(exc):
                    raise
                raise WarmStartError(
                    f"cannot read history study {name!r}: {type(exc).__name__}: {exc}"
                ) from exc
            for t in trials:
                if t.value is not None:
                    items.append(
                        HistoryTrial(
                            study_name=name, number=t.number, params=dict(t.params), value=t.value
                        )
                    )
    finally:
        if backend is not None:
            close_storage(backend)
    return History.from_trials(items)


def _distribution(decl: IntParam | FloatParam | CategoricalParam) -> BaseDistribution:
    if isinstance(decl, IntParam):
        return IntDistribution(decl.low, decl.high, log=decl.log, step=decl.step)
    if isinstance(decl, FloatParam):
        return FloatDistribution(decl.low, decl.high, log=decl.log, step=decl.step)
    return CategoricalDistribution(list(decl.choices))


#: How Optuna's fANOVA refuses trials none of its trees can split (all values equal, or all
#: parameters).
_ZERO_VARIANCE = "zero total variance"


def param_importances(history: History, space: SearchSpace, *, seed: int) -> dict[str, float]:
    """fANOVA importance shares (seeded) of the parameters every historical trial has,
    with normalised ranks as the target (comparable across studies).

    Empty when there is nothing to share out: fewer than two trials project into
    ``space``, or fANOVA finds no variance (their ranks are all equal, or no parameter
    separates them).
    """
    study = optuna.create_study(direction="minimize")
    declarations = space.declarations()
    for t in history.trials:
        projected = space.project(t.params)
        if projected is None:
            continue
        dists = {name: _distribution(declarations[name]) for name in projected}
        try:
            trial = optuna.create_trial(params=projected, distributions=dists, value=t.rank)
            study.add_trial(trial)
        except ValueError as exc:  # a projected point Optuna does not take: a bug here
            raise WarmStartError(
                f"history trial {t.number} of study {t.study_name!r} does not fit the space "
                f"{space.name!r} as projected ({projected}): {exc}"
            ) from exc
    if len(study.trials) < 2:
        return {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    try:
        result = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and _ZERO_VARIANCE in str(exc):
            return {}
        raise WarmStartError(f"importances could not be computed from history: {exc}") from exc
    return {name: float(share) for name, share in result.items()}


@dataclass(frozen=True, slots=True)
class StudyProgress:
    """How far a study got: the trials that ran (:func:`ran`, as
    :attr:`TuningResult.n_trials <retune.TuningResult>` counts them) and those of them
    rejected for their serving cost (untrained: ``max_trials`` counts the others), trials
    by state, and the best value so far (lower is better)."""

    study_name: str
    n_trials: int
    n_cost_rejected: int
    n_complete: int
    n_running: int
    n_pruned: int
    n_failed: int
    best_value: float | None


def study_progress(storage: str, study_name: str) -> StudyProgress | None:
    """Progress of ``study_name``, or ``None`` when it does not exist (yet)."""
    with _translated(study_name, "reading its progress"):
        backend = make_storage(storage, heartbeat_interval=None)
        try:  # a job's reporter reads every second: no connection is left to pile up
            study = optuna.load_study(study_name=study_name, storage=backend)
            trials = study.get_trials(deepcopy=False)
        except KeyError:
            return None
        finally:
            close_storage(backend)
    states = [t.state for t in trials]
    complete = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    outcomes = [t.user_attrs.get(OUTCOME) for t in trials if ran(t.user_attrs)]
    return StudyProgress(
        study_name=study_name,
        n_trials=len(outcomes),
        n_cost_rejected=outcomes.count("cost_rejected"),
        n_complete=len(complete),
        n_running=states.count(TrialState.RUNNING),
        n_pruned=states.count(TrialState.PRUNED),
        n_failed=states.count(TrialState.FAIL),
        best_value=min(complete) if complete else None,
    )
