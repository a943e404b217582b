"""The JSON behind each dashboard page (served as-is under ``/v1/dashboard/...``): the
overview, A/B results, tuning history, events and audit here; the pages over evaluation
windows (drift, decay, latency and memory) in :mod:`tunewatch.dashboard._series`.

Each function reads the store once per page and downsamples every series on the server
(:data:`~tunewatch.dashboard._downsample.MAX_POINTS` points at most), so a year of hourly
windows or a long A/B test stays a few hundred points on the wire.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from retune import RetuneError, load_history
from retune.warmstart import History
from tunewatch._objective_display import known, recorded, score, scores
from tunewatch._policies import stored_decision
from tunewatch._version_metadata import finite_float
from tunewatch.api._log import checked_type
from tunewatch.comparison import ComparisonRunner
from tunewatch.comparison._recorded import RecordedGuardrails
from tunewatch.store import AuditEntry, Event, JobRow, Store, VersionRow
from tunewatch.store._comparisons import ComparisonLookRow, ComparisonTestRow, SplitCheckRow

from ._downsample import MAX_POINTS, downsample
from ._queries import newest_tests, newest_versions, sampled_looks, versions_named

logger = logging.getLogger(__name__)

ACTIVE_JOBS = ("queued", "running")
ALARM_EVENTS = 200
AB_TESTS = 20  # the A/B page's default number of newest tests
DECIDED_POINTS = 50  # the looks a decided test is drawn from, by default (an open one: all)
MAX_TESTS_SHOWN = 100  # the most it shows besides the current champion's open ones
TUNING_VERSIONS = 50  # the tuning page's default number of newest versions
MAX_VERSIONS_SHOWN = 500  # the most it shows (each with its fold scores and plan)


@dataclass(frozen=True, slots=True)
class Sources:
    """What the pages read: the store, the comparison runner, the Optuna storage."""

    store: Store
    runner: ComparisonRunner
    tuning_storage: str
    #: where old studies are archived (``Config.tuning_archive_url``), read for a study
    #: missing from ``tuning_storage``
    tuning_archive: str | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _version_brief(v: VersionRow, tags: dict[int, dict[str, str]]) -> dict[str, Any]:
    """``v`` as a page lists it, with its ``tags`` (``{key: value}``) taken from ``tags``,
    which a page reads for every version it lists in one statement
    (:meth:`~tunewatch.store.Store.tags_of_versions`): "which version is this" is often
    answered by a tag (``ticket=RISK-123``)."""
    return {
        "version": v.version,
        "stage": v.stage,
        "hyperparameter_set": v.hyperparameter_set_id,
        "study": v.study,
        "created_at": _iso(v.created_at),
        "tags": tags.get(v.version, {}),
    }


def _event_json(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "model": e.model,
        "type": e.type,
        "payload": e.payload,
        "created_at": _iso(e.created_at),
    }


def _audit_json(a: AuditEntry) -> dict[str, Any]:
    return {
        "id": a.id,
        "at": _iso(a.at),
        "actor": a.actor,
        "action": a.action,
        "target": a.target,
        "details": a.details,
    }


def _job_brief(j: JobRow) -> dict[str, Any]:
    return {
        "id": j.id,
        "model": j.model,
        "kind": j.kind,
        "status": j.status,
        "trigger": j.trigger,
        "progress": j.progress,
        "result": j.result,
        "error": j.error,
        "created_at": _iso(j.created_at),
        "started_at": _iso(j.started_at),
        "finished_at": _iso(j.finished_at),
    }


# -- overview ---------------------------------------------------------------------------------


def overview(src: Sources) -> dict[str, Any]:
    """Every model: champion, challengers (with their tags: one read per model), how
    many versions, the newest evaluation of each kind, recent alarms and events, active
    jobs. Retired and rolled-back versions are counted, not read."""
    store = src.store
    active = sorted(  # asked by status: a long-running job is older than the newest jobs
        (j for status in ACTIVE_JOBS for j in store.list_jobs(status=status, limit=1000)),
        key=lambda j: j.id,
        reverse=True,
    )
    models = []
    for m in store.list_models():
        champion = store.champion(m.name)
        challengers = store.list_versions(m.name, "shadow")
        lineup = [*([champion] if champion else []), *challengers]
        tags = store.tags_of_versions(m.name, [v.version for v in lineup])
        _, n_versions = newest_versions(store, m.name, limit=0)
        latest: dict[str, dict[str, Any]] = {}
        for e in store.list_evaluations(m.name, limit=50):
            if e.kind not in latest and e.kind != "drift_report":
                latest[e.kind] = {
                    "id": e.id,
                    "status": e.status,
                    "alarm": bool(e.payload.get("alarm", False)),
                    "decision": stored_decision(e.payload),
                    "window_end": _iso(e.window_end),
                }
        events = store.list_events(model=m.name, limit=5)
        models.append(
            {
                "name": m.name,
                "task": m.task,
                "regulated": m.regulated,
                "champion": _version_brief(champion, tags) if champion else None,
                "challengers": [_version_brief(v, tags) for v in challengers],
                "versions": n_versions,
                "latest_evaluations": latest,
                "alarms": sorted(k for k, v in latest.items() if v["alarm"]),
                "recent_events": [_event_json(e) for e in events],
                "active_jobs": [_job_brief(j) for j in active if j.model == m.name],
            }
        )
    return {"models": models}


# -- A/B --------------------------------------------------------------------------------------


def _look_json(look: ComparisonLookRow) -> dict[str, Any]:
    return {
        "id": look.id,
        "n": look.n,
        "estimate": finite_float(look.estimate),
        "ci_low": finite_float(look.ci_low),
        "ci_high": finite_float(look.ci_high),
        "p_value": finite_float(look.p_value),
        "adjusted_p_value": finite_float(look.adjusted_p_value),
        "decision": look.decision,
        "method": look.method,
        "correction": look.correction,
        "family_size": look.family_size,
        "fixed_t_p": finite_float(look.fixed_t_p),
        "created_at": _iso(look.created_at),
    }


def _decided_index(looks: list[ComparisonLookRow]) -> int | None:
    """The first look whose decision is not ``continue``."""
    return next((i for i, lk in enumerate(looks) if lk.decision != "continue"), None)


def _test_json(
    test: ComparisonTestRow, looks: list[ComparisonLookRow], total: int
) -> dict[str, Any]:
    decided = _decided_index(looks)
    return {
        "id": test.id,
        "kind": test.kind,
        "champion_version": test.champion_version,
        "challenger_version": test.challenger_version,
        "status": test.status,
        "decision": test.decision,
        "correction": test.correction,
        "n": test.n,
        "looks": test.looks,
        "outcome": test.outcome,
        "created_at": _iso(test.created_at),
        "decided_at": _iso(test.decided_at),
        "decision_look": decided,
        "series": [_look_json(lk) for lk in looks],
        "series_total": total,
        "guardrails": None,
        "current": False,
    }


def _split_json(s: SplitCheckRow) -> dict[str, Any]:
    return {
        "champion_version": s.champion_version,
        "challenger_version": s.challenger_version,
        "percent": s.percent,
        "n_champion": s.n_champion,
        "n_challenger": s.n_challenger,
        "chi2": finite_float(s.chi2),
        "p_value": finite_float(s.p_value),
        "mismatch": s.mismatch,
        "created_at": _iso(s.created_at),
    }


def ab_results(
    src: Sources,
    model: str,
    *,
    max_points: int = MAX_POINTS,
    limit: int = AB_TESTS,
    decided_points: int = DECIDED_POINTS,
) -> dict[str, Any]:
    """The model's comparison tests, newest first: the ``limit`` newest, and every open
    test of the current champion (and the newest rollback watch) however old, each with
    at most ``max_points`` of its looks over n (evenly spaced, the deciding look kept), a
    decided test at most ``decided_points`` of them: its story is told (20 decided tests
    of 400 looks each made a 3.1 MB page).
    The current champion's open tests carry their guardrails as they stand (each check
    reads up to ``latency_samples`` latencies of two versions: only tests shown and
    open are checked, see :meth:`ComparisonRunner.summary`), its decided tests the
    verdict recorded when they were acted on, if any. ``srm`` is the newest check of the
    configured live split whatever tests there are; ``tests_total`` counts every test,
    shown or not."""
    src.store.get_model(model)
    summary = src.runner.summary(model)  # guardrails of open tests only: all are shown
    shown, total = newest_tests(src.store, model, limit=limit)
    ids = {t.id for t in shown}
    shown += [i.test for i in summary if i.test.status == "open" and i.test.id not in ids]
    shown.sort(key=lambda t: t.id, reverse=True)
    out = {}
    recorded = RecordedGuardrails(src.store, model)
    for test in shown:
        points = max_points if test.status == "open" else min(max_points, decided_points)
        looks, n_looks = sampled_looks(src.store, test, max_points=points)
        out[test.id] = _test_json(test, looks, n_looks)
        guard = recorded.of(test)  # a decided test's, of any champion
        if guard is not None:
            out[test.id]["guardrails"] = {
                "passed": guard.passed,
                "violations": list(guard.violations),
            }
    for item in summary:
        entry = out.get(item.test.id)
        if entry is None:
            continue
        entry["current"] = True
        if item.guardrails is not None:
            entry["guardrails"] = {
                "passed": item.guardrails.passed,
                "violations": list(item.guardrails.violations),
            }
    # the summary read it, when the champion has tests
    check = summary[0].split if summary else src.runner.split_check(model)
    return {
        "model": model,
        "tests": list(out.values()),
        "tests_total": total,
        "limit": limit,
        "srm": None if check is None else _split_json(check),
        "max_points": max_points,
        "decided_points": decided_points,
    }


# -- tuning -----------------------------------------------------------------------------------


class _Load(Protocol):
    """How :class:`TrialCache` reads studies: :func:`retune.load_history`'s signature."""

    def __call__(
        self, storage: str, study_names: Sequence[str], *, archive: str | None = None
    ) -> History: ...


class TrialCache:
    """Trial values of finished studies (they never change), loaded once per study.

    The studies a view asks for that are not cached yet are read in one call of ``load``
    (:func:`retune.load_history`: one storage opened for all of them; opened once per
    study, a first view after a restart took 12 s for 100 studies), a study missing from
    the storage from its archive, when one is given (:mod:`tunewatch._study_archive`): a
    study's trials are the same in either, and cached as the storage's. When that call fails,
    they are read one at a time, so one unreadable study does not leave the others unread.

    A study that cannot be read (gone from the tuning storage, or the storage down) is
    not read again for ``retry_after_s`` seconds of ``clock``: the tuning page read every
    one of them on every view (98 missing studies: 4-5 s and 98 warnings a view).

    A study another view is reading is not read again: the view waits for that read
    (two viewers after a restart both read every study, and held two of the dashboard's
    read slots meanwhile).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_after_s: float = 300.0,
        load: _Load = load_history,
    ) -> None:
        self._load = load
        self._values: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._failed: dict[tuple[str, str], float] = {}
        self._reading: dict[tuple[str, str], threading.Event] = {}
        self._clock = clock
        self._retry_after_s = retry_after_s
        self._lock = threading.Lock()

    def trials(
        self, storage: str, study: str, *, archive: str | None = None
    ) -> list[dict[str, Any]] | None:
        """The trials of ``study`` (see :meth:`trials_of`)."""
        return self.trials_of(storage, [study], archive=archive)[study]

    def trials_of(
        self, storage: str, studies: Sequence[str], *, archive: str | None = None
    ) -> dict[str, list[dict[str, Any]] | None]:
        """Each study's completed trials (``number``, ``value`` and the ``best`` value so
        far, by number), or ``None`` for one that cannot be read (or could not be, less
        than ``retry_after_s`` ago), read from ``archive`` when ``storage`` lacks it."""
        names = list(dict.fromkeys(studies))
        found: dict[str, list[dict[str, Any]] | None] = {}
        mine: list[str] = []
        theirs: list[tuple[str, threading.Event]] = []
        with self._lock:
            for name in names:
                key = (storage, name)
                if key in self._values:
                    found[name] = self._values[key]
                    continue
                failed_at = self._failed.get(key)
                if failed_at is not None and self._clock() - failed_at < self._retry_after_s:
                    found[name] = None
                elif key in self._reading:
                    theirs.append((name, self._reading[key]))
                else:
                    self._reading[key] = threading.Event()
                    mine.append(name)
        try:
            found.update(self._read(storage, mine, archive))
        finally:
            with self._lock:
                for name in mine:
                    self._reading.pop((storage, name)).set()
        if theirs:
            logger.debug("waiting for another view reading %d of the studies", len(theirs))
        for name, read in theirs:
            read.wait()
            with self._lock:  # not cached: that read failed (or raised)
                found[name] = self._values.get((storage, name))
        return {name: found[name] for name in names}

    def _read(
        self, storage: str, names: list[str], archive: str | None
    ) -> dict[str, list[dict[str, Any]] | None]:
        if not names:
            return {}
        if len(names) > 1:
            try:
                history = self._load(storage, names, archive=archive)
            except RetuneError as exc:
                logger.info(
                    "cannot read %d studies at once (%s); reading them one at a time",
                    len(names),
                    exc,
                )
            else:
                return {name: self._keep(storage, name, history) for name in names}
        return {name: self._read_one(storage, name, archive) for name in names}

    def _read_one(
        self, storage: str, study: str, archive: str | None
    ) -> list[dict[str, Any]] | None:
        try:
            history = self._load(storage, [study], archive=archive)
        except RetuneError as exc:
            logger.warning(
                "cannot read the trials of study %s (not tried again for %.0f s): %s",
                study,
                self._retry_after_s,
                exc,
            )
            with self._lock:
                self._failed[(storage, study)] = self._clock()
            return None
        return self._keep(storage, study, history)

    def _keep(self, storage: str, study: str, history: History) -> list[dict[str, Any]]:
        """Cache ``study``'s trials as read in ``history``."""
        best = math.inf
        out = []
        own = (t for t in history.trials if t.study_name == study)
        for t in sorted(own, key=lambda t: t.number):
            best = min(best, t.value)
            out.append({"number": t.number, "value": t.value, "best": best})
        with self._lock:
            self._values[(storage, study)] = out
            self._failed.pop((storage, study), None)
        return out


TRIALS = TrialCache()


def tuning(
    src: Sources,
    model: str,
    *,
    max_points: int = MAX_POINTS,
    limit: int = TUNING_VERSIONS,
    trial_cache: TrialCache = TRIALS,
    configured_objective: str | None = None,
) -> dict[str, Any]:
    """Re-tuning jobs (newest first) and the newest ``limit`` versions they registered
    (newest first, their tags read in one statement): warm-start plan, fold scores, best
    value; best value by trial for finished studies. ``versions_total`` counts every
    version, shown or not.

    ``best_value``, ``fold_scores`` and the trials' values are losses, as the study
    stores them (lower is better: a ROC AUC negated); ``objective`` names what they are
    the loss of, and ``best_score`` and ``objective_fold_scores`` are the objective's
    values (:mod:`tunewatch._objective_display`; ``None`` when it is unknown). A job's
    objective is its registered version's (read for a job whose version is not shown),
    and a queued or running one's ``configured_objective``, the one it is tuned for."""
    src.store.get_model(model)
    jobs = src.store.list_jobs(model=model, limit=100)
    versions, total = newest_versions(src.store, model, limit=limit)
    shown = {v.version: v for v in versions}
    unshown = {n for j in jobs if (n := _registered(j)) is not None and n not in shown}
    registered = {**versions_named(src.store, model, unshown), **shown}
    named = [(j, (j.result or {}).get("study") or j.progress.get("study")) for j in jobs]
    finished = [str(study) for j, study in named if study and j.status == "succeeded"]
    # one read for all
    read = trial_cache.trials_of(src.tuning_storage, finished, archive=src.tuning_archive)
    studies = []
    for j, study in named:
        trials = None
        if study and j.status == "succeeded":
            found = read[str(study)]
            trials = None if found is None else downsample(found, max_points)
        objective = _job_objective(j, registered, configured_objective)
        best = (j.result if j.result else j.progress).get("best_value")
        studies.append(
            {
                **_job_brief(j),
                "study": study,
                "trials": trials,
                "objective": objective,
                "best_score": score(best, objective),
            }
        )
    tuned = []
    tags = src.store.tags_of_versions(model, [v.version for v in versions])
    for v in versions:
        d = v.details
        objective = known(d.get("objective"))
        tuned.append(
            {
                **_version_brief(v, tags),
                "hyperparameters": v.hyperparameters,
                "parent_version": v.parent_version,
                "job": d.get("job"),
                "objective": objective,
                "best_value": finite_float(d.get("best_value")),
                "best_score": score(d.get("best_value"), objective),
                "n_trials": d.get("n_trials"),
                "stopped_by": d.get("stopped_by"),
                "fold_scores": d.get("fold_scores"),
                "objective_fold_scores": scores(d.get("fold_scores"), objective),
                "fold_spread": finite_float(d.get("fold_spread")),
                "warm_start_plan": d.get("warm_start_plan"),
            }
        )
    return {
        "model": model,
        "jobs": studies,
        "versions": tuned,
        "versions_total": total,
        "limit": limit,
    }


def _registered(job: JobRow) -> int | None:
    """The version ``job`` registered, as its result names it."""
    version = (job.result or {}).get("version")
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def _job_objective(
    job: JobRow, registered: dict[int, VersionRow], configured: str | None
) -> str | None:
    """What ``job`` was tuned for: the objective it recorded; for a job of an older
    release, its registered version's objective, or, for a queued or running job,
    ``configured``; else unknown (a failed job of a model whose objective may have changed
    since)."""
    objective, _ = recorded(job)
    if objective is not None:
        return objective
    number = _registered(job)
    version = None if number is None else registered.get(number)
    if version is not None:
        return known(version.details.get("objective"))
    return known(configured) if job.status in ACTIVE_JOBS else None


# -- events and audit -------------------------------------------------------------------------


def events(
    src: Sources,
    model: str | None,
    *,
    type: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """Events (filter by ``type``) and the audit log (filter by ``action``, ``actor``),
    newest first; with ``model``, audit entries whose target names the model. An empty
    filter (``?type=``, the form of an "all" chip) means all, as no filter does.

    ``type`` is refused as ``GET /v1/events`` refuses it (400 ``invalid_request``,
    :func:`~tunewatch.api._log.checked_type`) unless the daemon records it or the store
    holds events of it: a misspelt one showed an empty list, read as "no such event".
    The type filter's values are the types stored for the model and the one selected
    (a recorded type with no event yet); the audit filters' values are the most recent
    ones (see :meth:`~tunewatch.store.Store.audit_facets`: every tuning job's actor is
    one, ``job:*``, which filters by all of their entries) and the one selected."""
    type, action, actor = type or None, action or None, actor or None
    if model is not None:
        src.store.get_model(model)
    type = checked_type(src.store, type, model)
    found = src.store.list_events(model=model, type=type, limit=limit)
    types = src.store.event_types(model)
    if type is not None and type not in types:
        types = sorted([*types, type])
    entries = src.store.audit_log(limit, model=model, action=action, actor=actor)
    actions, actors = src.store.audit_facets(model)
    if action is not None and action not in actions:
        actions = sorted([*actions, action])
    if actor is not None and actor not in actors:
        actors = sorted([*actors, actor])
    return {
        "model": model,
        "filters": {"type": type, "action": action, "actor": actor, "limit": limit},
        "event_types": types,
        "audit_actions": actions,
        "audit_actors": actors,
        "events": [_event_json(e) for e in found],
        "audit": [_audit_json(a) for a in entries],
    }
