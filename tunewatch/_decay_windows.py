"""Decay's windows: on fixed edges, each one's figure computed once it can no longer change.

The windows lie on multiples of ``window_s`` from the Unix epoch (UTC midnights for the
default day), and a run's horizon is the ``horizon_windows`` of them that end by the
newest edge. A window ``[lo, hi)`` counts the labels that arrived by ``hi`` plus the
maturity (:func:`monitor.realised_windows`), so once ``now`` is past
``hi + maturity_s + SETTLE_MARGIN_S`` no request or label arriving since can change its
figure: the window is *settled*, and its :class:`monitor.WindowValue` (with the first and
last request it judged) is kept, a few numbers where the rows of 30 days of requests
used to be (2.59M requests held 74 MiB, and 40 such models would have held 2.9 GiB).

A run computes the settled windows it does not hold one window's rows at a time, and
reads the matured windows that are not settled yet in one read. Each verdict stores its
settled windows' figures (:func:`window_entry`, :func:`settled_entry`): a new process or
leader takes those of the newest verdict computed for the same version, window,
maturity and objective (:func:`stored_settled`) and reads only the windows settled
since; the whole horizon, a window at a time, only without one (1M requests: 9.3 s of
CPU, against 2 ms). The margin leaves a record committed a while
after its time (the recorder's write deadline) or stamped by a host whose clock runs
minutes behind inside a span read again.

The store deletes no requests or labels of the horizon and labels never change once
stored, so a kept figure is what a read of its window gives, but for a label that arrived
after the window settled (which counts for no window) or a request written more than the
margin after its time.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from monitor import WindowValue, realised_windows
from monitor.objectives import Objective
from tunewatch._config import ModelConfig
from tunewatch._span import iso, ts
from tunewatch.store import ModelRow, Store

logger = logging.getLogger(__name__)

#: Seconds past ``window_s + maturity_s`` before a window's figure is kept: beyond the
#: recorder's write deadline and the clock skew between hosts.
SETTLE_MARGIN_S = 3600.0

#: The format of the settled windows a decay verdict stores (its payload's ``settled``
#: and ``windows``); another is read as none (:func:`stored_settled`).
SETTLED_FORMAT = 1


@dataclass(frozen=True, slots=True, eq=False)
class DecayRows:
    """One version's rows in time order: what it answered and the labels it got."""

    received_at: np.ndarray  # float64 epoch seconds
    outputs: np.ndarray  # float32 [rows, k]
    labels: np.ndarray  # float64, NaN without a label
    label_received_at: np.ndarray  # float64 epoch seconds, NaN without a label


@dataclass(frozen=True, slots=True)
class DecayWindow:
    """One window's number (see :func:`horizon`), figure, and the first and last request
    it judged (epoch seconds, ``None`` when it held none)."""

    number: int
    value: WindowValue
    first_request: float | None
    last_request: float | None


def read_rows(
    store: Store, model: ModelRow, version: int, start: datetime, end: datetime
) -> DecayRows:
    """``version``'s rows of the requests received in ``[start, end)``."""
    window = store.window(
        model.name,
        n_features=len(model.feature_names),
        start=start,
        end=end,
        with_features=False,  # outputs, labels and times: not 30 days of input blobs
        with_ids=False,  # nor a string per request
    )
    answered = window.versions == version  # the champion's trend, not its predecessors'
    return DecayRows(
        window.received_at[answered],
        window.outputs[answered],
        window.labels[answered],
        window.label_received_at[answered],
    )


def horizon(now: datetime, window_s: float, horizon_windows: int) -> range:
    """The windows of the horizon at ``now`` by number (window ``i`` starts at
    ``i * window_s`` epoch seconds): the ``horizon_windows`` ending by the newest edge at
    or before ``now``."""
    newest = math.floor(now.timestamp() / window_s)
    return range(newest - horizon_windows, newest)


def window_figures(
    rows: DecayRows,
    first: int,
    count: int,
    *,
    window_s: float,
    maturity_s: float,
    objective: Objective,
    regression: bool,
) -> list[DecayWindow]:
    """The figures of the ``count`` windows from number ``first`` on over ``rows`` (those
    received in them): a window with no request reads ``n_requests == 0``, no value."""
    y_pred = rows.outputs[:, 0] if regression and rows.outputs.shape[1] == 1 else rows.outputs
    # clipped: a time a rounding away from an edge stays in the window read for it
    slot = np.clip(np.floor((rows.received_at - first * window_s) / window_s), 0, count - 1)
    out = []
    for k in range(count):
        lo = (first + k) * window_s
        mine = slot == k
        if not mine.any():
            empty = WindowValue(
                window_start=lo,
                window_end=lo + window_s,
                value=None,
                n=0,
                n_requests=0,
                label_coverage=0.0,
                median_label_delay_s=None,
            )
            out.append(DecayWindow(first + k, empty, None, None))
            continue
        received = rows.received_at[mine]
        [value] = realised_windows(
            rows.labels[mine],
            y_pred[mine],
            received,
            rows.label_received_at[mine],
            objective=objective,
            window=window_s,
            maturity=maturity_s,
            start=lo,
        )
        out.append(DecayWindow(first + k, value, float(received.min()), float(received.max())))
    return out


@dataclass(frozen=True, slots=True)
class DecayHorizon:
    """A run's matured windows of the horizon, from its first edge to the newest window
    holding a request, and what the settled ones' figures were computed for (``key``:
    version, features, window, maturity, objective) and until when (``settled_before``:
    the windows numbered lower are settled), as a verdict stores them."""

    windows: list[DecayWindow]
    key: dict[str, Any]
    settled_before: int  # a window number (see :func:`horizon`)


@dataclass(slots=True, eq=False)
class _Held:
    key: dict[str, Any]
    as_of: float  # the newest run's time: a clock gone back drops what is held
    settled: dict[int, DecayWindow]  # by window number (see :func:`horizon`)


class DecayWindowCache:
    """Per model, the settled windows of its champion's decay horizon (see the module).

    With ``from_store`` (the default) a model it holds nothing of starts from the
    settled windows of the newest decay verdict stored (:func:`stored_settled`), when it
    was computed for the same key: a new process or leader reads only the windows
    settled since, not the whole horizon. Without, it reads them (a cold run)."""

    def __init__(self, *, from_store: bool = True) -> None:
        self._from_store = from_store
        self._held: dict[str, _Held] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def horizon(
        self,
        store: Store,
        model: ModelRow,
        cfg: ModelConfig,
        objective: Objective,
        version: int,
        now: datetime,
    ) -> DecayHorizon:
        """``version``'s matured windows of the horizon at ``now``."""
        d = cfg.evaluation.decay
        w, m = d.window_s, d.maturity_s
        key = {
            "version": version,
            "n_features": len(model.feature_names),
            "window_s": w,
            "maturity_s": m,
            "objective": cfg.objective.model_dump(mode="json"),
        }
        as_of = now.timestamp()
        windows = horizon(now, w, d.horizon_windows)
        matured = [i for i in windows if (i + 1) * w + m <= as_of]
        settled = math.floor((as_of - m - SETTLE_MARGIN_S) / w)  # windows before it are

        def figures(first: int, count: int) -> list[DecayWindow]:
            rows = read_rows(store, model, version, ts(first * w), ts((first + count) * w))
            return window_figures(
                rows,
                first,
                count,
                window_s=w,
                maturity_s=m,
                objective=objective,
                regression=model.task == "regression",
            )

        with self._guard:
            lock = self._locks.setdefault(model.name, threading.Lock())
        with lock:  # one update of a model's windows at a time
            with self._guard:
                held = self._held.pop(model.name, None)
            if held is None or held.key != key or held.as_of > as_of:
                # nothing held, another champion or config, or a clock gone back
                kept = stored_settled(store, model.name, key) if self._from_store else {}
                held = _Held(key, as_of, kept)
            held.as_of = as_of
            held.settled = {i: v for i, v in held.settled.items() if i >= windows.start}
            for i in matured:
                if i < settled and i not in held.settled:
                    [held.settled[i]] = figures(i, 1)  # one window's rows at a time
            open_ = [i for i in matured if i >= settled]
            recent = figures(open_[0], len(open_)) if open_ else []
            with self._guard:
                self._held[model.name] = held
        out = [held.settled[i] for i in matured if i in held.settled] + recent
        while out and out[-1].value.n_requests == 0:
            out.pop()  # the trend ends at the newest window holding a request
        return DecayHorizon(out, key, settled)


def window_entry(window: DecayWindow) -> dict[str, Any]:
    """A window as a decay verdict's payload lists it (``windows``): its end, value,
    labelled requests and label coverage."""
    v = window.value
    return {"end": iso(v.window_end), "value": v.value, "n": v.n, "coverage": v.label_coverage}


def settled_entry(judged: DecayHorizon) -> dict[str, Any]:
    """The payload's ``settled``: the format and key the windows' figures were computed
    for, ``before`` which windows are settled, and the rest of each settled window's
    figures, ``[number, n_requests, n_left_out, median_label_delay_s, first_request,
    last_request]`` (epoch seconds), which with its entry in ``windows`` is what
    :func:`stored_settled` reads back."""
    figures = [
        [
            j.number,
            v.n_requests,
            v.n_left_out,
            v.median_label_delay_s,
            j.first_request,
            j.last_request,
        ]
        for j in judged.windows
        if j.number < judged.settled_before
        for v in (j.value,)
    ]
    return {
        "format": SETTLED_FORMAT,
        **judged.key,
        "before": iso(judged.settled_before * judged.key["window_s"]),
        "windows": figures,
    }


def stored_settled(store: Store, model: str, key: dict[str, Any]) -> dict[int, DecayWindow]:
    """The settled windows of ``model``'s newest stored decay verdict, by window number,
    when they were computed for ``key`` in this format (none otherwise: a verdict from an
    earlier release, another champion, config or objective, or one that measured
    nothing)."""
    newest = store.recent_evaluations(model, kind="decay", limit=1)
    payload = newest[0].payload if newest else {}
    settled = payload.get("settled")
    if not isinstance(settled, dict) or settled.get("format") != SETTLED_FORMAT:
        return {}
    if {k: settled.get(k) for k in key} != key:
        return {}
    w = float(key["window_s"])
    try:
        shown = {_number(e["end"], w) - 1: e for e in payload["windows"]}
        kept = {}
        for i, n_requests, n_left_out, delay, first, last in settled["windows"]:
            entry = shown[i]
            value = WindowValue(
                window_start=i * w,
                window_end=(i + 1) * w,
                value=entry["value"],
                n=entry["n"],
                n_requests=n_requests,
                label_coverage=entry["coverage"],
                median_label_delay_s=delay,
                n_left_out=n_left_out,
            )
            kept[i] = DecayWindow(i, value, first, last)
    except (KeyError, TypeError, ValueError) as exc:
        logger.warning(
            "decay of %s: the stored settled windows are unreadable (%s); reading them", model, exc
        )
        return {}
    return kept


def _number(edge: str, window_s: float) -> int:
    """The window number of an edge written as a timestamp."""
    return round(datetime.fromisoformat(edge).timestamp() / window_s)
