"""Studies as a worker sees them: opening or joining one, its trials, and the handle an
objective suggests through."""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from retune._budget import TIME_LIMITS, PrunerKind
from retune._errors import StudyError
from retune._optuna._logs import install_fail_trial_filter
from retune._optuna._pins import HEARTBEAT_ATTR, pin_sampler_seed, pins_of
from retune._optuna._sampler import _sampler
from retune._optuna._storage import (
    FailTrial,
    PruneTrial,
    TrialLost,
    _experimental_ok,
    _translated,
    close_storage,
    make_storage,
    running_without_heartbeat,
)
from retune.space import Choice
from retune.warmstart._base import WarmStartPlan

logger = logging.getLogger(__name__)

OUTCOME = "outcome"

RUN_ATTR = "run"
"""Trial attribute: the key of the run that began the trial (:mod:`retune._runs`)."""
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
    """What an objective sees of a running trial (and a :class:`~retune.space.Suggester`).
    A write to a trial another process finished meanwhile raises :class:`TrialLost`."""

    def __init__(self, trial: optuna.Trial) -> None:
        self._trial = trial

    @property
    def number(self) -> int:
        return self._trial.number

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except UpdateFinishedTrialError as exc:
            raise TrialLost(
                f"trial {self._trial.number} was finished by another process: {exc}"
            ) from exc

    def suggest_int(self, name: str, low: int, high: int, *, step: int, log: bool) -> int:
        with self._writing():
            return self._trial.suggest_int(name, low, high, step=step, log=log)

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None, log: bool
    ) -> float:
        with self._writing():
            return self._trial.suggest_float(name, low, high, step=step, log=log)

    def suggest_categorical(self, name: str, choices: tuple[Choice, ...]) -> Choice:
        with self._writing():
            value = self._trial.suggest_categorical(name, list(choices))
        if value is None:  # choices never contain None: the space forbids it
            raise StudyError(f"`{name}` sampled None", study_name=self._trial.study.study_name)
        return value

    def set_attr(self, key: str, value: Any) -> None:
        with self._writing():
            self._trial.set_user_attr(key, value)

    def report_fold(self, fold: int, mean_loss: float) -> None:
        """Report the running mean after ``fold``; raise :class:`PruneTrial` when pruned."""
        with self._writing():
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
        self.seed = seed  # the study's sampler seed (pin_sampler_seed)
        self.name = study.study_name
        self.stopped_by: str | None = None
        # RUNNING trials with no heartbeat row: trial id -> when first seen so (monotonic)
        self._unbeaten: dict[int, float] = {}

    @property
    def heartbeat_interval(self) -> int | None:
        """The interval this process heartbeats its trials at and judges other workers'
        stale by (the study's pinned one: :func:`open_study`); ``None`` without."""
        backend = self._storage
        return backend.heartbeat_interval if isinstance(backend, RDBStorage) else None

    @property
    def user_attrs(self) -> dict[str, Any]:
        with _translated(self.name, "reading study attributes", self._storage):
            return dict(self._study.user_attrs)

    def set_user_attr(self, key: str, value: Any) -> None:
        with _translated(self.name, "writing a study attribute", self._storage):
            self._study.set_user_attr(key, value)

    def enqueue(self, params: Sequence[Mapping[str, Any]]) -> None:
        with _translated(self.name, "enqueueing warm-start trials", self._storage):
            for p in params:
                self._study.enqueue_trial(
                    dict(p), user_attrs={"warm_start": "enqueued"}, skip_if_exists=True
                )

    def fail_running_trials(self, reasons: Mapping[int, str]) -> list[int]:
        """Fail the trials numbered in ``reasons`` that are still RUNNING, each with an
        ``orphaned`` attribute giving its reason; returns the numbers failed (not one that
        finished meanwhile)."""
        failed: list[int] = []
        with _translated(self.name, "failing orphaned trials", self._storage):
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
        """Fail, and retry (the storage's stale-trial callback), the RUNNING trials whose
        heartbeats stopped a grace ago, and those naming no run that have had no heartbeat
        row for that grace since this handle first saw them so: Optuna's check skips a
        trial with none, and one whose worker was killed just after asking for it (before
        its first heartbeat, which a worker now writes before it names its run) stayed
        RUNNING for good, waited for and counted towards ``max_trials``. A trial naming its
        run with no heartbeat is a run's without heartbeats, maybe alive: left alone."""
        with _translated(self.name, "failing stale trials", self._storage), _experimental_ok():
            optuna.storages.fail_stale_trials(self._study)
            self._fail_unbeaten_trials()

    def _fail_unbeaten_trials(self) -> None:
        """Fail the RUNNING trials with no heartbeat row for the heartbeats' grace since
        first seen so, as ``fail_stale_trials`` fails a stale one (see
        :meth:`fail_stale_trials`)."""
        backend = self._storage
        if not isinstance(backend, RDBStorage) or backend.heartbeat_interval is None:
            return
        grace_s = backend.grace_period or 2 * backend.heartbeat_interval  # Optuna's default
        now = time.monotonic()
        storage = self._study._storage
        # One naming its run is not failed: a run that heartbeats wrote its trial's first
        # heartbeat before naming it (:meth:`_record_first_heartbeat`), so it belongs to a
        # run without heartbeats, alive for all this handle can tell.
        unbeaten = [
            i
            for i in running_without_heartbeat(backend, self._study._study_id)
            if RUN_ATTR not in storage.get_trial(i).user_attrs
        ]
        self._unbeaten = {i: self._unbeaten.get(i, now) for i in unbeaten}
        failed: list[int] = []
        for trial_id, since in self._unbeaten.items():
            if now - since <= grace_s:
                continue
            try:
                if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    continue
            except UpdateFinishedTrialError:
                continue  # it finished meanwhile (another process failed it, say)
            failed.append(trial_id)
        callback = backend.get_heartbeat_stale_trial_callback()
        for trial_id in failed:
            trial = copy.deepcopy(storage.get_trial(trial_id))
            logger.warning(
                "study %s: trial %d had no heartbeat %.1f s after it was first seen RUNNING "
                "(its worker killed before its first one); failed as stale",
                self.name,
                trial.number,
                now - self._unbeaten[trial_id],
            )
            if callback is not None:
                callback(self._study, trial)

    def trials(self) -> list[TrialRecord]:
        with _translated(self.name, "reading trials", self._storage):
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
        """Run trials until ``should_stop`` returns a reason (checked before and after each).

        A time limit (:data:`~retune._budget.TIME_LIMITS`) given before the first trial of
        a study no trial has run in yet is set aside: the study's set-up alone outlasted a
        short budget, and the job failed with no trial run. One runs; the check after it
        stops the study.

        A trial another process finished while this one ran it (failed as stale: this
        worker was paused past its heartbeats' grace) is dropped, with a warning, and the
        study goes on: Optuna, unable to record this run's outcome on it, raised out of
        the study, and the job failed while the other worker carried it on.

        A trial the objective fails on purpose (:class:`FailTrial`: vetoed, skipped, a CV
        error) is logged by Optuna on one line, without the traceback it logged for a
        crash (:mod:`._logs`)."""
        install_fail_trial_filter()
        reason = should_stop()
        if reason in TIME_LIMITS and not any(ran(t.user_attrs) for t in self.trials()):
            # budgets are checked after each finished trial: a study none has run in yet
            # (its set-up alone outlasted the limit) runs one, not none
            logger.info(
                "study %s: its %s limit passed before its first trial (in setting it up); "
                "one trial runs",
                self.name,
                reason,
            )
            reason = None
        if reason is not None:
            self.stopped_by = reason
            return
        running: list[optuna.Trial] = []  # this run's trial until its outcome is recorded
        own: list[BaseException] = []  # the error its objective raised, if any

        def run(trial: optuna.Trial) -> float:
            running[:] = [trial]
            own.clear()
            try:
                self._record_first_heartbeat(trial)
                return objective(TrialHandle(trial))
            except PruneTrial as exc:
                raise optuna.TrialPruned(str(exc)) from exc
            except TrialLost:
                raise
            except BaseException as exc:  # noted, then re-raised as it was
                own.append(exc)
                raise

        def after(study: optuna.Study, trial: FrozenTrial) -> None:
            running.clear()
            why = should_stop()
            if why is not None:
                self.stopped_by = why
                study.stop()

        with _translated(self.name, "optimising", self._storage), _experimental_ok():
            while True:
                try:
                    self._study.optimize(
                        run, callbacks=[after], catch=(FailTrial,), gc_after_trial=False
                    )
                    return
                except Exception as exc:  # classified: re-raised unless a trial lost as stale
                    lost = self._lost(running, own, exc)
                    if lost is None:
                        raise
                    running.clear()
                    logger.warning(
                        "study %s: trial %d was failed by another process while this one "
                        "ran it (failed as stale: this worker was paused past its "
                        "heartbeats' grace); dropped, the study goes on (%s: %s)",
                        self.name,
                        lost,
                        type(exc).__name__,
                        exc,
                    )
                why = should_stop()
                if why is not None:
                    self.stopped_by = why
                    return

    def _record_first_heartbeat(self, trial: optuna.Trial) -> None:
        """Record ``trial``'s heartbeat before its objective runs (and names its run), where
        the storage has heartbeats. Optuna's heartbeat thread writes the first one as the
        objective starts (two writes at once are fine: each ignores a row the other wrote); a
        worker killed before that thread wrote left a trial naming its run with none, which
        Optuna's stale check skips."""
        backend = self._storage
        if isinstance(backend, RDBStorage) and backend.heartbeat_interval is not None:
            backend.record_heartbeat(trial._trial_id)

    def _lost(
        self, running: list[optuna.Trial], own: list[BaseException], exc: Exception
    ) -> int | None:
        """The number of the trial this run was running when Optuna raised ``exc``, if
        another process failed it meanwhile: it is FAIL, and ``exc`` is not the objective's
        own error, which Optuna raises again after failing the trial itself. (Optuna,
        finding the trial finished, raises ``Cannot tell a FAIL trial``, or an assertion
        of its own when the objective had returned a loss.) ``None`` otherwise."""
        if not running or any(exc is error for error in own):
            return None
        trial = running[0]
        if self._storage.get_trial(trial._trial_id).state != TrialState.FAIL:
            return None
        return trial.number


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

    Every worker samples trial ``n`` with randomness derived from the study's seed (the
    one its first worker pinned: ``seed``, for a study that pins none) and ``n``
    (:class:`~retune._optuna._sampler.TrialSeededSampler`): a resumed study proposes what
    the uninterrupted one did on the same history, and joining workers propose different
    points, their trials' numbers differing.

    With heartbeats, the study's interval is the one pinned by its first worker that had
    them (this one, for a study that pins none): a worker given another heartbeats, and
    judges other workers' trials stale, at the study's, and says so.
    """
    with _translated(study_name, "opening storage", storage):
        backend = make_storage(storage, heartbeat_interval=heartbeat_interval)
    with contextlib.ExitStack() as on_failure:  # closed unless the handle takes it
        on_failure.callback(close_storage, backend)
        with _translated(study_name, "opening storage", storage):
            exists = study_name in optuna.get_all_study_names(backend)
        created = not exists
        study = _created_or_loaded(backend, study_name, seed, plan, pruner)
        study_seed = pin_sampler_seed(study, seed)
        if study_seed != seed:
            study.sampler = _sampler(plan, seed=study_seed)
        pinned = _pinned_interval(study, heartbeat_interval)
        if pinned is not None and pinned != heartbeat_interval:
            logger.info(
                "study %s: heartbeat interval %d s, pinned when the study began; this "
                "worker was given %s s, and heartbeats and judges staleness at the study's",
                study_name,
                pinned,
                heartbeat_interval,
            )
            on_failure.close()  # this storage's heartbeats are the worker's own: reopened
            with _translated(study_name, "opening storage", storage):
                backend = make_storage(storage, heartbeat_interval=pinned)
            on_failure.callback(close_storage, backend)
            study = _created_or_loaded(backend, study_name, study_seed, plan, pruner)
        on_failure.pop_all()
    return StudyHandle(study, created=created, seed=study_seed, storage=backend)


def _created_or_loaded(
    backend: optuna.storages.BaseStorage,
    study_name: str,
    seed: int,
    plan: WarmStartPlan | None,
    pruner: PrunerKind,
) -> optuna.Study:
    with _translated(study_name, "creating or loading the study", backend):
        return optuna.create_study(
            storage=backend,
            study_name=study_name,
            sampler=_sampler(plan, seed=seed),
            pruner=_pruner(pruner),
            direction="minimize",
            load_if_exists=True,
        )


def _pinned_interval(study: optuna.Study, heartbeat_interval: int | None) -> int | None:
    """The heartbeat interval ``study`` pins, pinned now to ``heartbeat_interval`` if it
    pins none; ``None`` for a run without heartbeats (a journal file's), which pins
    nothing."""
    if heartbeat_interval is None:
        return None
    with _translated(study.study_name, "reading its heartbeat interval"):
        pinned = pins_of(study.user_attrs).heartbeat_interval
        if pinned is None:
            study.set_user_attr(HEARTBEAT_ATTR, heartbeat_interval)
            return heartbeat_interval
    return pinned


def rebuild_sampler(handle: StudyHandle, plan: WarmStartPlan | None) -> None:
    """Swap in the sampler of ``plan`` (a joining or resuming worker adopting the study's
    stored plan, which may be empty or none), with the study's seed."""
    handle._study.sampler = _sampler(plan, seed=handle.seed)
