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
its settled windows' figures (:mod:`tunewatch._decay_settled`): a new process
or leader takes those of the newest verdict of the same champion version computed for the
same window, maturity and objective (a rollback's too), checked
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

import math
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from monitor import window_value
from monitor.objectives import Objective, objective_setup
from tunewatch._config import ModelConfig
from tunewatch._decay_settled import DecayHorizon, DecayWindow, stored_settled
from tunewatch._span import ts
from tunewatch.store import ModelRow, Store

#: Seconds past ``window_s + maturity_s`` before a window's figure is kept: beyond the
#: recorder's write deadline and the clock skew between hosts.
SETTLE_MARGIN_S = 3600.0

#: Seconds of requests a cold run reads at once (whole windows, at least one): a day's
#: rows held at a time, and a statement a day (720 hourly windows took 1,440 statements).
READ_SPAN_S = 86_400.0


@dataclass(frozen=True, slots=True, eq=False)
class DecayRows:
    """One version's rows in time order: what it answered and the labels it got."""

    received_at: np.ndarray  # float64 epoch seconds
    outputs: np.ndarray  # float32 [rows, k]
    labels: np.ndarray  # float64, NaN without a label
    label_received_at: np.ndarray  # float64 epoch seconds, NaN without a label


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
            # what the objective is, not how it is spelt: `accuracy {}` and `accuracy
            # {threshold: 0.5}` are one (the same shape as the config's dump)
            "objective": objective_setup(objective),
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
