"""The JSON behind the dashboard's time-series pages: the drift heatmap, decay and
latency & memory per version over the evaluation windows of a model (see
:mod:`tunewatch.dashboard._data` for the rest).

Each reads every window in range as light rows (:mod:`tunewatch.dashboard._queries`)
and keeps at most :data:`~tunewatch.dashboard._downsample.MAX_POINTS` points per series:
the heatmap folds every window into its column's bucket, and the latency and accuracy
series keep each bucket's extremes, since one window of a spike or a collapse matters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from monitor.drift import METHODS
from tunewatch._version_metadata import finite_float
from tunewatch.store import ModelRow

from ._data import Sources, _iso
from ._downsample import MAX_POINTS, Side, buckets, extreme_indices
from ._queries import (
    WindowRef,
    stream_payloads,
    stream_windows,
    versions_named,
    window_ids,
    window_refs,
)

MAX_WINDOWS = 24 * 366  # a year of hourly evaluation windows
DRIFT_FEATURES = 50  # the drift heatmap's default number of rows (features)
MAX_DRIFT_FEATURES = 1000  # the most it shows


# -- drift ------------------------------------------------------------------------------------


BELOW_DRIFT = math.nextafter(0.5, 0.0)
"""The highest score of a column that did not drift: a drifted one scores 0.5 or more."""


def _drift_score(column: dict[str, Any], fixed: float | None = None) -> float | None:
    """A column's drift on [0, 1]: 1 - p for tests that give a p-value, else the distance
    over twice its threshold (so the threshold sits at 0.5), capped at 1.

    A distance over categories is judged against its sampling-noise floor too, once it
    reaches the fixed threshold (:mod:`monitor.drift._noise`): the stored threshold is then
    the raised one. Scored against that, a distance just under the fixed threshold scored
    0.498 and larger ones the floor kept from drifting 0.43. So a distance that did not
    drift is scored against ``fixed`` (the method's configured threshold; the stored one
    when it is lower or ``fixed`` is unknown), and below :data:`BELOW_DRIFT` at most:
    increasing with the distance, and under every drifted distance of the method, which
    scores against the threshold it reached (0.5 or more)."""
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
    drifted = column.get("drifted")
    if not isinstance(drifted, bool):
        drifted = stat >= threshold
    if drifted:
        return min(max(stat / (2 * threshold), 0.5), 1.0)
    if fixed is not None and 0 < fixed < threshold:
        threshold = fixed
    return min(max(stat / (2 * threshold), 0.0), BELOW_DRIFT)


class _FixedThresholds:
    """Each column's fixed threshold by column and method: its configured one
    (``evaluation.drift.columns``) when the window used the configured method, else the
    method's default; ``None`` for an unknown method. The configuration is today's: a
    window judged before a threshold was changed is scored against the new one."""

    def __init__(self, src: Sources, model: ModelRow) -> None:
        cfg = src.runner.config.model_or_default(model.name, model.task)
        self._columns = cfg.evaluation.drift.columns
        self._found: dict[tuple[str, str], float | None] = {}

    def __call__(self, name: str, method: Any) -> float | None:
        if not isinstance(method, str):
            return None
        key = (name, method)
        if key not in self._found:
            spec = self._columns.get(name)
            if spec is not None and spec.method == method and spec.threshold is not None:
                self._found[key] = spec.threshold
            else:
                found = METHODS.get(method)
                self._found[key] = None if found is None else found.default_threshold
        return self._found[key]


class _Column:
    """One heatmap column, folded from its windows newest first: the count of alarms, each
    feature's highest score and whether any window drifted it, the names of columns with
    no score, and the window it shows (the newest that raised the drift alarm, else the
    newest)."""

    __slots__ = ("alarms", "drifted", "fixed", "highest", "share", "shown", "unscored")

    def __init__(self, fixed: _FixedThresholds) -> None:
        self.fixed = fixed
        self.alarms = 0
        self.shown: WindowRef | None = None
        self.share: float | None = None
        self.highest: dict[str, float] = {}
        self.drifted: set[str] = set()
        self.unscored: set[str] = set()

    def add(self, ref: WindowRef, payload: dict[str, Any]) -> None:
        self.alarms += ref.alarm
        if self.shown is None or (ref.alarm and not self.shown.alarm):
            self.shown, self.share = ref, finite_float(payload.get("drifted_share"))
        highest, drifted = self.highest, self.drifted
        for c in payload.get("columns", []):
            name = str(c.get("column"))
            # a distance's fixed threshold (a p-value test has none, and is the common case)
            fixed = self.fixed(name, c.get("method")) if c.get("p_value") is None else None
            score = _drift_score(c, fixed)
            if score is None:
                self.unscored.add(name)
            elif score > highest.get(name, -1.0):
                highest[name] = score
            if c.get("drifted"):
                drifted.add(name)

    def names(self) -> list[str]:
        """Every column name its windows hold (scored ones first, newest first)."""
        return [*self.highest, *sorted((self.drifted | self.unscored) - self.highest.keys())]


def drift(
    src: Sources,
    model: str,
    *,
    windows: int = MAX_WINDOWS,
    max_points: int = MAX_POINTS,
    features: int = DRIFT_FEATURES,
) -> dict[str, Any]:
    """Per-feature drift over the newest ``windows`` evaluation windows, oldest first, in at
    most ``max_points`` columns. Each column stands for a run of consecutive windows: its
    ``scores`` are each feature's highest drift score in the run and ``drifted`` whether any
    window of the run drifted the feature; its ``evaluation``, ``status``, ``alarm``,
    ``window_end`` and ``drifted_share`` are of one window, the newest that raised the drift
    alarm, else the newest. ``features`` are the model's features, then every other column
    any window in range holds (e.g. ``__prediction__``), in the order the newest hold them;
    of more than ``features`` of them, the ``features`` most drifting are kept, in that
    order (:func:`_most_drifting`), and ``features_total`` counts them all.

    Every window in range is read, so the cost grows with ``windows`` (a year of hourly
    windows by default, at most 100,000 through the API) and with the number of features,
    not with ``max_points``; payloads are streamed and folded into the columns as they
    arrive, so memory holds one chunk of payloads and the columns' aggregates."""
    row = src.store.get_model(model)
    ids = window_ids(src.store, model, "drift", limit=windows)
    runs = buckets(len(ids), max_points)
    column_of = {ids[i]: k for k, run in enumerate(runs) for i in run}
    fixed = _FixedThresholds(src, row)
    folded = [_Column(fixed) for _ in runs]
    latest: WindowRef | None = None
    latest_payload: dict[str, Any] = {}
    for ref, payload in stream_windows(src.store, model, "drift", limit=windows):
        k = column_of.get(ref.id)
        if k is None:  # written after the ids were read
            continue
        if ref.id == ids[-1]:
            latest, latest_payload = ref, payload
        folded[k].add(ref, payload)
    names = dict.fromkeys(row.feature_names)  # then every other column, newest first
    for col in reversed(folded):
        names.update(dict.fromkeys(col.names()))
    every = list(names)
    shown = _most_drifting(every, folded, features)
    columns = [
        {
            "window_end": _iso(col.shown.window_end),
            "windows": len(run),
            "alarms": col.alarms,
            "evaluation": col.shown.id,
            "status": col.shown.status,
            "alarm": col.shown.alarm,
            "drifted_share": col.share,
            "scores": [col.highest.get(f) for f in shown],
            "drifted": [f in col.drifted for f in shown],
        }
        for run, col in zip(runs, folded, strict=True)
        # unread only if windows written since the ids pushed its oldest past the limit
        if col.shown is not None
    ]
    return {
        "model": model,
        "features": shown,
        "features_total": len(every),
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


def _most_drifting(names: list[str], folded: list[_Column], limit: int) -> list[str]:
    """At most ``limit`` of ``names``, in their order: those any window drifted first, then
    by highest score (a heatmap row per feature: 400 features made a 35 MB page)."""
    if len(names) <= limit:
        return names
    drifted = set().union(*(col.drifted for col in folded))
    highest: dict[str, float] = {}
    for col in folded:
        for name, score in col.highest.items():
            highest[name] = max(score, highest.get(name, -1.0))
    ranked = sorted(names, key=lambda n: (n not in drifted, -highest.get(n, -1.0)))
    kept = set(ranked[:limit])
    return [n for n in names if n in kept]


# -- decay ------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A payload value as a finite float, else ``None`` (the common case first: every
    window of a year passes through here)."""
    if type(value) is float and math.isfinite(value):
        return value
    return finite_float(value)


def _extreme_points(
    src: Sources,
    model: str,
    kind: str,
    *,
    windows: int,
    max_points: int,
    values: Callable[[dict[str, Any]], Sequence[float | None]],
    sides: Sequence[Side],
    point: Callable[[WindowRef, dict[str, Any]], dict[str, Any]],
) -> list[dict[str, Any]]:
    """The newest ``windows`` windows of ``kind`` as points (oldest first), at most
    ``max_points`` of them: the first, the last, and those holding each bucket's extremes
    of the series ``values`` reads out of a payload, each on its side of ``sides``
    (:func:`extreme_indices`). Every window in range is read, so a one-window spike stays
    on the chart; only the kept windows' rows are read whole."""
    ids: list[int] = []
    kept: list[dict[str, Any]] = []
    for window_id, payload in stream_payloads(src.store, model, kind, limit=windows):
        ids.append(window_id)
        kept.append(payload)
    ids.reverse()
    kept.reverse()
    read = [values(p) for p in kept]
    picked = extreme_indices(
        [([r[k] for r in read], side) for k, side in enumerate(sides)], len(ids), max_points
    )
    refs = window_refs(src.store, [ids[i] for i in picked])
    return [point(refs[ids[i]], kept[i]) for i in picked if ids[i] in refs]


def _ci(payload: dict[str, Any]) -> tuple[Any, Any]:
    ci = payload.get("ci")
    return (ci[0], ci[1]) if isinstance(ci, list) and len(ci) >= 2 else (None, None)


def _estimate_values(payload: dict[str, Any]) -> tuple[float | None, ...]:
    low, high = _ci(payload)
    return (
        _number(payload.get("estimated")),
        _number(payload.get("realised")),
        _number(low),
        _number(high),
    )


def _estimate_point(ref: WindowRef, payload: dict[str, Any]) -> dict[str, Any]:
    low, high = _ci(payload)
    return {
        "window_end": _iso(ref.window_end),
        "status": ref.status,
        "estimated": finite_float(payload.get("estimated")),
        "ci_low": finite_float(low),
        "ci_high": finite_float(high),
        "realised": finite_float(payload.get("realised")),
        "n": payload.get("n"),
        "n_labelled": payload.get("n_labelled"),
        "reference": finite_float(payload.get("reference")),
    }


def _labels_point(ref: WindowRef, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "window_end": _iso(ref.window_end),
        "status": ref.status,
        "coverage": finite_float(payload.get("coverage")),
        "median_delay_s": finite_float(payload.get("median_delay_s")),
        "n": payload.get("n"),
    }


def decay(
    src: Sources, model: str, *, windows: int = MAX_WINDOWS, max_points: int = MAX_POINTS
) -> dict[str, Any]:
    """The decay trend (newest decay evaluation's windows), the label-free estimate against
    the realised metric over time, and label coverage over time; each series keeps its
    extremes when downsampled (a one-window collapse stays on the chart)."""
    src.store.get_model(model)
    newest = src.store.list_evaluations(model, kind="decay", limit=1)
    trend: dict[str, Any] | None = None
    if newest:
        payload = newest[0].payload
        trend_windows = [
            {
                "end": w.get("end"),
                "value": finite_float(w.get("value")),
                "n": w.get("n"),
                "coverage": finite_float(w.get("coverage")),
            }
            for w in payload.get("windows", [])
            if isinstance(w, dict)
        ]
        picked = extreme_indices(
            [([w["value"] for w in trend_windows], "both")], len(trend_windows), max_points
        )
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
            "windows": [trend_windows[i] for i in picked],
        }
    return {
        "model": model,
        "decay": trend,
        "estimate": _extreme_points(
            src,
            model,
            "estimate",
            windows=windows,
            max_points=max_points,
            values=_estimate_values,
            sides=("both", "both", "low", "high"),
            point=_estimate_point,
        ),
        "labels": _extreme_points(
            src,
            model,
            "labels",
            windows=windows,
            max_points=max_points,
            values=lambda payload: (_number(payload.get("coverage")),),
            sides=("both",),
            point=_labels_point,
        ),
    }


# -- latency and memory -----------------------------------------------------------------------


def telemetry(
    src: Sources, model: str, *, windows: int = MAX_WINDOWS, max_points: int = MAX_POINTS
) -> dict[str, Any]:
    """Latency quantiles and load memory per version (hyperparameter set): each version's
    newest entry in the last 50 telemetry windows, and p99 per version over time. Every
    window in range is read (streamed); the history keeps, per version, the window with
    the highest p99 of each bucket (:func:`extreme_indices`), so a one-window spike stays.
    Only the versions shown (those of the recent windows) are read from the registry."""
    src.store.get_model(model)
    newest: dict[str, dict[str, Any]] = {}
    ids: list[int] = []
    p99s: list[dict[str, float | None]] = []
    for window_id, payload in stream_payloads(src.store, model, "telemetry", limit=windows):
        seen = payload.get("versions")
        seen = seen if isinstance(seen, dict) else {}
        if len(ids) < 50:  # each version's newest entry in the recent windows
            for key, item in seen.items():
                if isinstance(item, dict):
                    newest.setdefault(key, {**item, "window_id": window_id})
        ids.append(window_id)
        p99s.append(
            {k: _number(v.get("p99")) if isinstance(v, dict) else None for k, v in seen.items()}
        )
    ids.reverse()
    p99s.reverse()
    keys = sorted({k for p in p99s for k in p})
    picked = extreme_indices(
        [([p.get(k) for p in p99s], "high") for k in keys], len(ids), max_points
    )
    refs = window_refs(
        src.store, sorted({ids[i] for i in picked} | {v["window_id"] for v in newest.values()})
    )
    history = [
        {"window_end": _iso(refs[ids[i]].window_end), "p99_s": p99s[i]}
        for i in picked
        if ids[i] in refs
    ]
    versions = versions_named(
        src.store, model, {int(k) for k in newest if k.isascii() and k.isdigit() and len(k) < 10}
    )
    current = []
    for key, item in sorted(newest.items(), key=_vkey):
        v = versions.get(int(key)) if key.isdigit() else None
        ref = refs.get(item["window_id"])
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
                "window_end": _iso(ref.window_end) if ref else None,
            }
        )
    return {"model": model, "current": current, "history": history}


def _vkey(item: tuple[str, Any]) -> tuple[int, str]:
    key = item[0]
    return (int(key), "") if key.isdigit() else (1 << 30, key)
