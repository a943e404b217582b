"""Decay's windows: on fixed edges, each one's figure computed once it can no longer change.

The windows lie on multiples of ``window_s`` from the Unix epoch (UTC midnights for the
default day), and a run's horizon is the ``horizon_windows`` of them that end by the
newest edge. A window ``[lo, hi)`` counts the labels that arrived by ``hi`` plus the
maturity (:func:`monitor.realised_windows`), so once ``now`` is past
``hi + maturity_s + SETTLE_MARGIN_S`` no request or label arriving since can change its
figure: the window is *settled*, and its :class:`monitor.WindowValue` (with the first and
last request it judged) is kept, a few numbers where the rows of 30 days of requests
used to be (2.59M requests held 74 MiB, and 40 such models would have held 2.9 GiB).

A run computes the settled windows it does not hold a day's rows at a time
(``READ_SPAN_S``, at least a window), and reads the matured windows that are not settled
yet in one read; every window's figure comes from
:func:`monitor.window_value` over the rows this module placed in it. Each verdict stores
its settled windows' figures (:func:`window_entry`, :func:`settled_entry`): a new process
or leader takes those of the newest verdict of the same champion version computed for the
same window, maturity and objective (:func:`stored_settled`; a rollback's too), checked
to hold together, and reads only the windows settled since by its own clock (a verdict
stored by a host whose clock runs ahead settled more); the whole horizon only without
one (1M requests: 9.3 s of CPU, against 2 ms). The margin leaves a record committed a
while after its time (the recorder's write deadline) or stamped by a host whose clock
runs minutes behind inside a span read again.

The store deletes no requests or labels of the horizon (``recording.retention_days``
covers it and one window more) and labels never change once stored, so a kept figure is
what a read of its window gives, but for a label that arrived after the window settled
(which counts for no window) or a request written more than the margin after its time.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from monitor import WindowValue, window_value
from monitor.objectives import Objective
from tunewatch._config import ModelConfig
from tunewatch._span import iso, ts
from tunewatch.store import ModelRow, Store

logger = logging.getLogger(__name__)

#: Seconds past ``window_s + maturity_s`` before a window's figure is kept: beyond the
#: recorder's write deadline and the clock skew between hosts.
SETTLE_MARGIN_S = 3600.0

#: Seconds of requests a cold run reads at once (whole windows, at least one): a day's
#: rows held at a time, and a statement a day (720 hourly windows took 1,440 statements).
READ_SPAN_S = 86_400.0

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
    """``version``'s rows of the requests received in ``[start, end)``: the champion's
    trend, not its predecessors' (read and dropped here: filtered by version in SQL, a
    model new to PostgreSQL's statistics had its outputs scanned per request, 0.2 -> 33 s
    over 20k requests)."""
    window = store.window(
        model.name,
        n_features=len(model.feature_names),
        start=start,
        end=end,
        with_features=False,  # outputs, labels and times: not 30 days of input blobs
        with_ids=False,  # nor a string per request
    )
    answered = window.versions == version
    return DecayRows(
        window.received_at[answered],
        window.outputs[answered],
        window.labels[answered],
        window.label_received_at[answered],
    )


def horizon(now: datetime, window_s: float, horizon_windows: int) -> range:
    """The windows of the horizon at ``now`` by number (window ``i`` starts at
    ``i * window_s`` epoch seconds): the ``horizon_windows`` ending by the newest edge at
    or before ``now``. The oldest begins up to a window before ``horizon_windows`` windows
    ago: ``recording.retention_days`` must cover one window more (checked in
    :class:`tunewatch._config.Config`)."""
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
        mine = slot == k
        received = rows.received_at[mine]
        value = window_value(
            rows.labels[mine],
            y_pred[mine],
            received,
            rows.label_received_at[mine],
            objective=objective,
            start=(first + k) * window_s,
            end=(first + k + 1) * window_s,
            maturity=maturity_s,
        )
        span = (float(received.min()), float(received.max())) if received.size else (None, None)
        out.append(DecayWindow(first + k, value, *span))
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
            # Only windows settled by this run's clock: a verdict stored by a host whose
            # clock ran ahead (or this one's, before its clock stepped back) settled some
            # that are read again below, and counted them twice.
            held.settled = {i: v for i, v in held.settled.items() if windows.start <= i < settled}
            missing = [i for i in matured if i < settled and i not in held.settled]
            for first, count in _reads(missing, max(1, math.floor(READ_SPAN_S / w))):
                for window in figures(first, count):  # a day's rows at a time, or a window's
                    held.settled[window.number] = window
            open_ = [i for i in matured if i >= settled]
            recent = figures(open_[0], len(open_)) if open_ else []
            with self._guard:
                self._held[model.name] = held
        out = [held.settled[i] for i in matured if i < settled] + recent
        while out and out[-1].value.n_requests == 0:
            out.pop()  # the trend ends at the newest window holding a request
        return DecayHorizon(out, key, settled)


def _reads(numbers: list[int], most: int) -> list[tuple[int, int]]:
    """``numbers`` (ascending) as reads ``(first, count)`` of consecutive windows, at most
    ``most`` a read."""
    reads: list[tuple[int, int]] = []
    for i in numbers:
        if reads and reads[-1][0] + reads[-1][1] == i and reads[-1][1] < most:
            reads[-1] = (reads[-1][0], reads[-1][1] + 1)
        else:
            reads.append((i, 1))
    return reads


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
    """The settled windows of ``model``'s newest stored decay verdict of the champion
    version ``key`` names, by window number, when they were computed for ``key`` in this
    format (none otherwise: a verdict from an earlier release, another config or
    objective, one that measured nothing, or one whose figures do not hold together)."""
    # of the version: a rollback to the previous champion starts from its last verdict
    newest = store.list_evaluations(model, kind="decay", version=key["version"], limit=1)
    payload = newest[0].payload if newest else {}
    settled = payload.get("settled")
    if not isinstance(settled, dict) or settled.get("format") != SETTLED_FORMAT:
        return {}
    if {k: settled.get(k) for k in key} != key:
        return {}
    w = float(key["window_s"])
    try:
        before = _number(settled["before"], w)
        shown = {_number(e["end"], w) - 1: e for e in payload["windows"]}
        kept = {}
        for figures in settled["windows"]:
            i, n_requests, n_left_out, delay, first, last = figures
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
            kept[i] = _checked(DecayWindow(i, value, first, last), before, w)
    except (KeyError, TypeError, ValueError) as exc:
        logger.warning(
            "decay of %s: the settled windows of its newest stored verdict are unreadable "
            "(%s); reading those windows from the store instead",
            model,
            exc,
        )
        return {}
    return kept


def _checked(window: DecayWindow, before: int, window_s: float) -> DecayWindow:
    """``window`` as read back from a stored verdict, if its figures hold together (a
    hand-edited or damaged one raised out of every evaluation of the model, or was taken:
    a negative count, coverage that is not ``n / n_requests``); ``ValueError`` if not."""
    v, i = window.value, window.number
    counts = (i, v.n, v.n_requests, v.n_left_out)
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        raise ValueError(f"window {i!r}: counts must be integers, got {counts!r}")
    if not (i < before and 0 <= v.n_left_out <= v.n <= v.n_requests):
        raise ValueError(f"window {i}: counts out of order or not settled: {counts!r}")
    if v.label_coverage != (v.n / v.n_requests if v.n_requests else 0.0):
        raise ValueError(f"window {i}: coverage {v.label_coverage!r} is not n / n_requests")
    if v.value is not None and not (_finite(v.value) and v.n):
        raise ValueError(f"window {i}: value {v.value!r} not finite or of no labelled request")
    if (v.median_label_delay_s is None) != (v.n == 0) or not _finite(v.median_label_delay_s, 0.0):
        raise ValueError(f"window {i}: median delay {v.median_label_delay_s!r} for n = {v.n}")
    first, last = window.first_request, window.last_request
    if v.n_requests == 0:
        if (first, last) != (None, None):
            raise ValueError(f"window {i}: requests {first!r}-{last!r} in a window holding none")
    elif not (
        first is not None
        and last is not None
        and _finite(first)
        and _finite(last)
        and (i - 1) * window_s <= first <= last <= (i + 2) * window_s
    ):
        raise ValueError(f"window {i}: its first and last request {first!r}-{last!r} outside it")
    return window


def _finite(x: object, default: float | None = None) -> bool:
    """``x`` is a finite number (``None`` counts as ``default``)."""
    if x is None:
        x = default
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _number(edge: str, window_s: float) -> int:
    """The window number of an edge written as a timestamp."""
    return round(datetime.fromisoformat(edge).timestamp() / window_s)
