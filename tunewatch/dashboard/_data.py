"""The JSON behind each dashboard page (served as-is under ``/v1/dashboard/...``).

Each function reads the store once per page and downsamples every series on the server
(:data:`~tunewatch.dashboard._downsample.MAX_POINTS` points at most), so a year of hourly
windows stays a few hundred points on the wire.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from retune import RetuneError, load_history
from tunewatch._registry import finite_float
from tunewatch.comparison import ComparisonRunner
from tunewatch.store import AuditEntry, Event, JobRow, Store, VersionRow
from tunewatch.store._comparisons import ComparisonLookRow, ComparisonStore, ComparisonTestRow

from ._downsample import MAX_POINTS, buckets, downsample, downsample_indices
from ._queries import WindowRef, payloads, stream_windows, window_ids, window_index

logger = logging.getLogger(__name__)

ACTIVE_JOBS = ("queued", "running")
MAX_WINDOWS = 24 * 366  # a year of hourly evaluation windows
ALARM_EVENTS = 200


@dataclass(frozen=True, slots=True)
class Sources:
    """What the pages read: the store, the comparison runner, the Optuna storage."""

    store: Store
    runner: ComparisonRunner
    tuning_storage: str


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _version_brief(v: VersionRow) -> dict[str, Any]:
    return {
        "version": v.version,
        "stage": v.stage,
        "hyperparameter_set": v.hyperparameter_set_id,
        "study": v.study,
        "created_at": _iso(v.created_at),
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
    """Every model: champion, challengers, the newest evaluation of each kind, recent
    alarms and events, active jobs."""
    store = src.store
    active = [j for j in store.list_jobs(limit=200) if j.status in ACTIVE_JOBS]
    models = []
    for m in store.list_models():
        versions = store.list_versions(m.name)
        champion = next((v for v in versions if v.stage == "champion"), None)
        latest: dict[str, dict[str, Any]] = {}
        for e in store.list_evaluations(m.name, limit=50):
            if e.kind not in latest and e.kind != "drift_report":
                latest[e.kind] = {
                    "id": e.id,
                    "status": e.status,
                    "alarm": bool(e.payload.get("alarm", False)),
                    "window_end": _iso(e.window_end),
                }
        events = store.list_events(model=m.name, limit=5)
        models.append(
            {
                "name": m.name,
                "task": m.task,
                "regulated": m.regulated,
                "champion": _version_brief(champion) if champion else None,
                "challengers": [_version_brief(v) for v in versions if v.stage == "shadow"],
                "versions": len(versions),
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
    test: ComparisonTestRow, looks: list[ComparisonLookRow], max_points: int
) -> dict[str, Any]:
    decided = _decided_index(looks)
    keep = [] if decided is None else [decided]
    picked = downsample_indices(len(looks), max_points, keep)
    series = [_look_json(looks[i]) for i in picked]
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
        "decision_look": None if decided is None else picked.index(decided),
        "series": series,
        "series_total": len(looks),
        "guardrails": None,
        "current": False,
    }


def ab_results(src: Sources, model: str, *, max_points: int = MAX_POINTS) -> dict[str, Any]:
    """Every comparison test of the model (newest first) with its looks over n; the tests
    of the current champion also carry guardrails and the live-split (SRM) check."""
    src.store.get_model(model)
    comparisons = ComparisonStore(src.store)
    tests = comparisons.list_tests(model)
    looks_by_test: dict[int, list[ComparisonLookRow]] = {t.id: [] for t in tests}
    for challenger in sorted({t.challenger_version for t in tests}):
        for look in comparisons.history(model, challenger, limit=1_000_000):
            looks_by_test.setdefault(look.test_id, []).append(look)
    out = {t.id: _test_json(t, looks_by_test[t.id], max_points) for t in tests}
    split: dict[str, Any] | None = None
    for item in src.runner.summary(model):
        entry = out.get(item.test.id)
        if entry is None:
            continue
        entry["current"] = True
        if item.guardrails is not None:
            entry["guardrails"] = {
                "passed": item.guardrails.passed,
                "violations": list(item.guardrails.violations),
            }
        if item.split is not None:
            s = item.split
            split = {
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
    return {
        "model": model,
        "tests": [out[t.id] for t in reversed(tests)],
        "srm": split,
        "max_points": max_points,
    }


# -- drift ------------------------------------------------------------------------------------


def _drift_score(column: dict[str, Any]) -> float | None:
    """A column's drift on [0, 1]: 1 - p for tests that give a p-value, else the statistic
    over twice its threshold (so the threshold sits at 0.5), capped at 1."""
    p = column.get("p_value")
    if type(p) is float and 0.0 <= p <= 1.0:  # the common case, first: the drift page folds
        return 1.0 - p  # every window's columns through here
    p = finite_float(p)
    if p is not None:
        return min(max(1.0 - p, 0.0), 1.0)
    stat, threshold = finite_float(column.get("statistic")), finite_float(column.get("threshold"))
    if stat is None:
        return None
    if threshold is None or threshold <= 0:
        return min(max(stat, 0.0), 1.0)
    return min(max(stat / (2 * threshold), 0.0), 1.0)


class _Column:
    """One heatmap column, folded from its windows newest first: the count of alarms, each
    feature's highest score and whether any window drifted it, and the window it shows
    (the newest that raised the drift alarm, else the newest)."""

    __slots__ = ("alarms", "drifted", "highest", "share", "shown")

    def __init__(self) -> None:
        self.alarms = 0
        self.shown: WindowRef | None = None
        self.share: float | None = None
        self.highest: dict[str, float] = {}
        self.drifted: set[str] = set()

    def add(self, ref: WindowRef, payload: dict[str, Any]) -> None:
        self.alarms += ref.alarm
        if self.shown is None or (ref.alarm and not self.shown.alarm):
            self.shown, self.share = ref, finite_float(payload.get("drifted_share"))
        highest, drifted = self.highest, self.drifted
        for c in payload.get("columns", []):
            name = str(c.get("column"))
            score = _drift_score(c)
            if score is not None and score > highest.get(name, -1.0):
                highest[name] = score
            if c.get("drifted"):
                drifted.add(name)


def drift(
    src: Sources, model: str, *, windows: int = MAX_WINDOWS, max_points: int = MAX_POINTS
) -> dict[str, Any]:
    """Per-feature drift over the newest ``windows`` evaluation windows, oldest first, in at
    most ``max_points`` columns. Each column stands for a run of consecutive windows: its
    ``scores`` are each feature's highest drift score in the run and ``drifted`` whether any
    window of the run drifted the feature; its ``evaluation``, ``status``, ``alarm``,
    ``window_end`` and ``drifted_share`` are of one window, the newest that raised the drift
    alarm, else the newest.

    Every window in range is read, so the cost grows with ``windows`` (a year of hourly
    windows by default, at most 100,000 through the API) and with the number of features,
    not with ``max_points``; payloads are streamed and folded into the columns as they
    arrive, so memory holds one chunk of payloads and the columns' aggregates."""
    row = src.store.get_model(model)
    ids = window_ids(src.store, model, "drift", limit=windows)
    runs = buckets(len(ids), max_points)
    column_of = {ids[i]: k for k, run in enumerate(runs) for i in run}
    folded = [_Column() for _ in runs]
    latest: WindowRef | None = None
    latest_payload: dict[str, Any] = {}
    for ref, payload in stream_windows(src.store, model, "drift", limit=windows):
        k = column_of.get(ref.id)
        if k is None:  # written after the ids were read
            continue
        if ref.id == ids[-1]:
            latest, latest_payload = ref, payload
        folded[k].add(ref, payload)
    features = list(row.feature_names)
    seen = set(features)
    for c in latest_payload.get("columns", []):
        if c.get("column") not in seen:
            seen.add(c["column"])
            features.append(str(c["column"]))
    columns = [
        {
            "window_end": _iso(col.shown.window_end),
            "windows": len(run),
            "alarms": col.alarms,
            "evaluation": col.shown.id,
            "status": col.shown.status,
            "alarm": col.shown.alarm,
            "drifted_share": col.share,
            "scores": [col.highest.get(f) for f in features],
            "drifted": [f in col.drifted for f in features],
        }
        for run, col in zip(runs, folded, strict=True)
        # unread only if windows written since the ids pushed its oldest past the limit
        if col.shown is not None
    ]
    return {
        "model": model,
        "features": features,
        "windows_total": len(ids),
        "columns": columns,
        "latest": None
        if latest is None
        else {
            "id": latest.id,
            "status": latest.status,
            "window_end": _iso(latest.window_end),
            "alarm": latest.alarm,
            "rule": latest_payload.get("rule"),
            "drifted_columns": latest_payload.get("drifted_columns", []),
            "columns": latest_payload.get("columns", []),
            "report": f"/v1/models/{quote(model, safe='')}/evaluations/{latest.id}/report",
        },
    }


# -- decay ------------------------------------------------------------------------------------


def _sampled(
    src: Sources, model: str, kind: str, windows: int, max_points: int
) -> list[tuple[WindowRef, dict[str, Any]]]:
    """At most ``max_points`` evenly picked windows of ``kind`` (oldest first) with their
    payloads; only those payloads are read."""
    index = downsample(window_index(src.store, model, kind, limit=windows), max_points)
    loaded = payloads(src.store, [r.id for r in index])
    return [(r, loaded[r.id]) for r in index if r.id in loaded]


def decay(
    src: Sources, model: str, *, windows: int = MAX_WINDOWS, max_points: int = MAX_POINTS
) -> dict[str, Any]:
    """The decay trend (newest decay evaluation's windows), the label-free estimate against
    the realised metric over time, and label coverage over time."""
    src.store.get_model(model)
    newest = src.store.list_evaluations(model, kind="decay", limit=1)
    estimates = _sampled(src, model, "estimate", windows, max_points)
    labels = _sampled(src, model, "labels", windows, max_points)
    trend: dict[str, Any] | None = None
    if newest:
        payload = newest[0].payload
        trend = {
            "id": newest[0].id,
            "status": payload.get("status", newest[0].status),
            "objective": payload.get("objective"),
            "threshold": finite_float(payload.get("threshold")),
            "slope_per_day": finite_float(payload.get("slope_per_day")),
            "current_estimate": finite_float(payload.get("current_estimate")),
            "projected_crossing": payload.get("projected_crossing"),
            "recommended_retune_interval_days": finite_float(
                payload.get("recommended_retune_interval_days")
            ),
            "windows": [
                {
                    "end": w.get("end"),
                    "value": finite_float(w.get("value")),
                    "n": w.get("n"),
                    "coverage": finite_float(w.get("coverage")),
                }
                for w in downsample(payload.get("windows", []), max_points)
            ],
        }
    estimate_points = []
    for ref, payload in estimates:
        ci = payload.get("ci") or [None, None]
        estimate_points.append(
            {
                "window_end": _iso(ref.window_end),
                "status": ref.status,
                "estimated": finite_float(payload.get("estimated")),
                "ci_low": finite_float(ci[0]),
                "ci_high": finite_float(ci[1]),
                "realised": finite_float(payload.get("realised")),
                "n": payload.get("n"),
                "n_labelled": payload.get("n_labelled"),
                "reference": finite_float(payload.get("reference")),
            }
        )
    return {
        "model": model,
        "decay": trend,
        "estimate": estimate_points,
        "labels": [
            {
                "window_end": _iso(ref.window_end),
                "status": ref.status,
                "coverage": finite_float(payload.get("coverage")),
                "median_delay_s": finite_float(payload.get("median_delay_s")),
                "n": payload.get("n"),
            }
            for ref, payload in labels
        ],
    }


# -- latency and memory -----------------------------------------------------------------------


def telemetry(
    src: Sources, model: str, *, windows: int = MAX_WINDOWS, max_points: int = MAX_POINTS
) -> dict[str, Any]:
    """Latency quantiles and load memory per version (hyperparameter set): each version's
    newest entry in the last 50 telemetry windows, and p99 per version over time."""
    src.store.get_model(model)
    versions = {v.version: v for v in src.store.list_versions(model)}
    index = window_index(src.store, model, "telemetry", limit=windows)
    recent = index[-50:]
    sampled = downsample(index, max_points)
    loaded = payloads(src.store, sorted({r.id for r in (*recent, *sampled)}))
    newest: dict[str, dict[str, Any]] = {}
    for ref in reversed(recent):  # each version's newest entry in the recent windows
        for key, item in loaded.get(ref.id, {}).get("versions", {}).items():
            newest.setdefault(key, {**item, "window_end": _iso(ref.window_end)})
    current = []
    for key, item in sorted(newest.items(), key=_vkey):
        v = versions.get(int(key)) if key.isdigit() else None
        current.append(
            {
                "version": int(key) if key.isdigit() else key,
                "stage": v.stage if v else None,
                "hyperparameter_set": item.get("hyperparameter_set"),
                "hyperparameters": v.hyperparameters if v else None,
                "p50_s": finite_float(item.get("p50")),
                "p90_s": finite_float(item.get("p90")),
                "p99_s": finite_float(item.get("p99")),
                "n": item.get("n"),
                "memory_bytes": item.get("memory_bytes"),
                "window_end": item["window_end"],
            }
        )
    history = []
    for ref in sampled:
        versions_seen = loaded.get(ref.id, {}).get("versions", {})
        history.append(
            {
                "window_end": _iso(ref.window_end),
                "p99_s": {k: finite_float(item.get("p99")) for k, item in versions_seen.items()},
            }
        )
    return {"model": model, "current": current, "history": history}


def _vkey(item: tuple[str, Any]) -> tuple[int, str]:
    key = item[0]
    return (int(key), "") if key.isdigit() else (1 << 30, key)


# -- tuning -----------------------------------------------------------------------------------


class _TrialCache:
    """Trial values of finished studies (they never change), loaded once per study."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def trials(self, storage: str, study: str) -> list[dict[str, Any]] | None:
        key = (storage, study)
        with self._lock:
            if key in self._values:
                return self._values[key]
        try:
            history = load_history(storage, [study])
        except RetuneError as exc:
            logger.warning("cannot read the trials of study %s: %s", study, exc)
            return None
        best = math.inf
        out = []
        for t in sorted(history.trials, key=lambda t: t.number):
            best = min(best, t.value)
            out.append({"number": t.number, "value": t.value, "best": best})
        with self._lock:
            self._values[key] = out
        return out


TRIALS = _TrialCache()


def tuning(src: Sources, model: str, *, max_points: int = MAX_POINTS) -> dict[str, Any]:
    """Re-tuning jobs (newest first) and the versions they registered: warm-start plan,
    fold scores, best value; best value by trial for finished studies."""
    src.store.get_model(model)
    jobs = src.store.list_jobs(model=model, limit=100)
    versions = src.store.list_versions(model)
    studies = []
    for j in jobs:
        study = (j.result or {}).get("study") or j.progress.get("study")
        trials = None
        if study and j.status == "succeeded":
            found = TRIALS.trials(src.tuning_storage, str(study))
            trials = None if found is None else downsample(found, max_points)
        studies.append({**_job_brief(j), "study": study, "trials": trials})
    tuned = []
    for v in sorted(versions, key=lambda v: v.version, reverse=True):
        d = v.details
        tuned.append(
            {
                **_version_brief(v),
                "hyperparameters": v.hyperparameters,
                "parent_version": v.parent_version,
                "job": d.get("job"),
                "best_value": finite_float(d.get("best_value")),
                "n_trials": d.get("n_trials"),
                "stopped_by": d.get("stopped_by"),
                "fold_scores": d.get("fold_scores"),
                "fold_spread": finite_float(d.get("fold_spread")),
                "warm_start_plan": d.get("warm_start_plan"),
            }
        )
    return {"model": model, "jobs": studies, "versions": tuned}


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
    newest first; with ``model``, audit entries whose target names the model."""
    if model is not None:
        src.store.get_model(model)
    found = src.store.list_events(model=model, type=type, limit=limit)
    types = sorted({e.type for e in src.store.list_events(model=model, limit=1000)})
    entries = src.store.audit_log(limit, model=model, action=action or None, actor=actor or None)
    actions, actors = src.store.audit_facets(model)
    return {
        "model": model,
        "filters": {"type": type, "action": action, "actor": actor, "limit": limit},
        "event_types": types,
        "audit_actions": actions,
        "audit_actors": actors,
        "events": [_event_json(e) for e in found],
        "audit": [_audit_json(a) for a in entries],
    }
