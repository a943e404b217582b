"""The JSON behind the dashboard's time-series pages: the drift heatmap (built in
:mod:`tunewatch.dashboard._drift_heat`), decay and latency & memory per version over the
evaluation windows of a model (see :mod:`tunewatch.dashboard._data` for the rest).

Each reads every window in range as light rows (:mod:`tunewatch.dashboard._queries`)
and keeps at most :data:`~tunewatch.dashboard._downsample.MAX_POINTS` points per series:
the heatmap folds every window into its column's bucket, and the latency and accuracy
series keep each bucket's extremes, since one window of a spike or a collapse matters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from tunewatch._version_metadata import finite_float

from ._data import Sources, _iso
from ._downsample import MAX_POINTS, MAX_WINDOWS, Side, extreme_indices
from ._drift_heat import DRIFT_FEATURES, MAX_DRIFT_FEATURES, drift
from ._queries import WindowRef, stream_payloads, versions_named, window_refs

__all__ = [
    "DRIFT_FEATURES",
    "HISTORY_LINES",
    "MAX_DRIFT_FEATURES",
    "MAX_WINDOWS",
    "decay",
    "drift",
    "telemetry",
]


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


HISTORY_LINES = 10
"""The most versions the p99-over-time chart draws: every version of the newest telemetry
window (the champion, its shadows and split arms), then the most recently served others
(a year of a new set a day drew 369 lines, its legend filling the page)."""


def telemetry(
    src: Sources, model: str, *, windows: int = MAX_WINDOWS, max_points: int = MAX_POINTS
) -> dict[str, Any]:
    """Latency quantiles and load memory per version (hyperparameter set): each version's
    newest entry in the last 50 telemetry windows, and p99 per version over time. Every
    window in range is read (streamed, newest first). The history draws
    ``history_versions``: those of the newest window, then the most recently served others
    up to :data:`HISTORY_LINES` in all (``versions_left_out`` counts the versions served
    in range that it leaves out); per drawn version it keeps the window with the highest
    p99 of each bucket (:func:`extreme_indices`), so a one-window spike stays, and no other
    version's p99 is kept. Only the versions shown (those of the recent windows) are read
    from the registry."""
    src.store.get_model(model)
    newest: dict[str, dict[str, Any]] = {}
    ids: list[int] = []
    p99s: list[dict[str, float | None]] = []
    drawn: dict[str, None] = {}  # in order: the newest window's, then by recency
    served: set[str] = set()
    for window_id, payload in stream_payloads(src.store, model, "telemetry", limit=windows):
        seen = payload.get("versions")
        seen = seen if isinstance(seen, dict) else {}
        if len(ids) < 50:  # each version's newest entry in the recent windows
            for key, item in seen.items():
                if isinstance(item, dict):
                    newest.setdefault(key, {**item, "window_id": window_id})
        served.update(seen)
        if not ids:  # the newest window: the versions served now, all drawn
            drawn.update(dict.fromkeys(sorted(seen, key=_version_order)))
        elif len(drawn) < HISTORY_LINES:
            for key in sorted(seen, key=_version_order):
                if len(drawn) >= HISTORY_LINES:
                    break
                drawn.setdefault(key)
        ids.append(window_id)
        p99s.append(
            {
                k: _number(v.get("p99")) if isinstance(v, dict) else None
                for k, v in seen.items()
                if k in drawn
            }
        )
    ids.reverse()
    p99s.reverse()
    picked = extreme_indices(
        [([p.get(k) for p in p99s], "high") for k in drawn], len(ids), max_points
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
                # the role the figures were timed in; none in a verdict stored before
                # roles were read (its figures mixed them)
                "role": item.get("role") if item.get("role") in _ROLES else None,
                "memory_bytes": item.get("memory_bytes"),
                "window_end": _iso(ref.window_end) if ref else None,
            }
        )
    return {
        "model": model,
        "current": current,
        "history": history,
        "history_versions": list(drawn),
        "versions_left_out": len(served - drawn.keys()),
    }


_ROLES = ("champion", "challenger")


def _vkey(item: tuple[str, Any]) -> tuple[int, str]:
    return _version_order(item[0])


def _version_order(key: str) -> tuple[int, str]:
    """Version numbers in order, then any other key."""
    return (int(key), "") if key.isdigit() else (1 << 30, key)
