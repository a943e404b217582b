"""The rows a decay verdict judges, kept between runs where they can no longer change.

A request's label counts for decay when it arrived by its window's end plus the maturity
(:func:`monitor.realised_windows`), and the window holding a request received at ``t``
ends by ``t + window_s``: a request received more than ``window_s + maturity_s`` before
now is settled, no label arriving since can count for it. Its row (time, output, label,
label time) is kept in memory, so a run reads from the store only the requests received
since the cut-off of the last (the unsettled span), not the whole horizon (30 days of
requests, 6 s a run at 100k of them). ``SETTLE_MARGIN_S`` more is left unsettled: a
record committed a while after its time (the recorder's write deadline) or stamped by a
host whose clock runs minutes behind still lands in a span read again.

The store deletes no requests or labels and labels never change once stored, so a kept
row is what a read of the whole horizon gives, but for a label that arrived after it
settled (which counts for no window). Rows older than the horizon's start are dropped
each run. A new process (or leader) starts empty: one read of the whole horizon.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from tunewatch._config import ModelConfig
from tunewatch.store import ModelRow, Store

#: Seconds past ``window_s + maturity_s`` before a request's row is kept: beyond the
#: recorder's write deadline and the clock skew between hosts.
SETTLE_MARGIN_S = 3600.0


@dataclass(frozen=True, slots=True, eq=False)
class DecayRows:
    """One version's rows in time order: what it answered and the labels it got."""

    received_at: np.ndarray  # float64 epoch seconds
    outputs: np.ndarray  # float32 [rows, k]
    labels: np.ndarray  # float64, NaN without a label
    label_received_at: np.ndarray  # float64 epoch seconds, NaN without a label

    def __len__(self) -> int:
        return int(self.received_at.shape[0])

    def where(self, keep: np.ndarray) -> DecayRows:
        return DecayRows(
            self.received_at[keep],
            self.outputs[keep],
            self.labels[keep],
            self.label_received_at[keep],
        )

    def then(self, later: DecayRows) -> DecayRows:
        return DecayRows(
            np.concatenate([self.received_at, later.received_at]),
            np.concatenate([self.outputs, later.outputs]),
            np.concatenate([self.labels, later.labels]),
            np.concatenate([self.label_received_at, later.label_received_at]),
        )


def read_rows(
    store: Store, model: ModelRow, version: int, start: datetime, end: datetime
) -> tuple[DecayRows, int | None]:
    """``version``'s rows of the requests received in ``[start, end)``, and the output
    width the read took (``None`` when no request read had an output)."""
    window = store.window(
        model.name,
        n_features=len(model.feature_names),
        start=start,
        end=end,
        with_features=False,  # outputs, labels and times: not 30 days of input blobs
        with_ids=False,  # nor a string per request
    )
    answered = window.versions == version  # the champion's trend, not its predecessors'
    width = int(window.outputs.shape[1]) if (window.versions != -1).any() else None
    rows = DecayRows(
        window.received_at[answered],
        window.outputs[answered],
        window.labels[answered],
        window.label_received_at[answered],
    )
    return rows, width


@dataclass(slots=True, eq=False)
class _Settled:
    key: tuple[int, int, float, float, float]  # version, features, window, maturity, horizon
    start: datetime  # the rows kept were received in [start, cutoff)
    cutoff: datetime
    width: int | None  # the output width of the reads so far
    rows: DecayRows


class DecayRowCache:
    """Per model, the settled rows of its champion's decay horizon (see the module)."""

    def __init__(self) -> None:
        self._settled: dict[str, _Settled] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def rows(
        self, store: Store, model: ModelRow, cfg: ModelConfig, version: int, now: datetime
    ) -> DecayRows:
        """``version``'s rows of the requests received in ``[now - horizon, now)``, as a
        read of the whole horizon gives them (labels that arrived after their request
        settled aside), reading only the requests received since the last cut-off."""
        d = cfg.evaluation.decay
        horizon = d.window_s * d.horizon_windows
        key = (version, len(model.feature_names), d.window_s, d.maturity_s, horizon)
        start = now - timedelta(seconds=horizon)
        with self._guard:
            lock = self._locks.setdefault(model.name, threading.Lock())
        with lock:  # one update of a model's rows at a time
            with self._guard:
                kept = self._settled.pop(model.name, None)
            if kept is not None and (
                kept.key != key or not kept.start <= start <= kept.cutoff <= now
            ):
                kept = None  # another champion or config, a gap or a clock gone back: read all
            cutoff = start if kept is None else kept.cutoff
            fresh, width = read_rows(store, model, version, cutoff, now)
            if kept is not None and kept.width is not None and width not in (None, kept.width):
                # the output width is the one most requests of the horizon have: when a
                # read took another, the rows kept may have been read at the wrong one
                kept, cutoff = None, start
                fresh, width = read_rows(store, model, version, cutoff, now)
            if kept is None:
                old = _empty(fresh.outputs.shape[1])
            else:
                old = kept.rows.where(kept.rows.received_at >= start.timestamp())
                width = kept.width if width is None else width
                if not len(old):  # read at no width, or at the default one
                    old = _empty(fresh.outputs.shape[1])
                elif not len(fresh):
                    fresh = _empty(old.outputs.shape[1])
            settle = _whole_second(
                now - timedelta(seconds=d.window_s + d.maturity_s + SETTLE_MARGIN_S)
            )
            if settle > cutoff:
                now_settled = fresh.received_at < settle.timestamp()
                old = old.then(fresh.where(now_settled))
                fresh = fresh.where(~now_settled)
                cutoff = settle
            with self._guard:
                self._settled[model.name] = _Settled(key, start, cutoff, width, old)
            return old.then(fresh)


def _empty(width: int) -> DecayRows:
    return DecayRows(
        np.empty(0, np.float64),
        np.empty((0, width), np.float32),
        np.empty(0, np.float64),
        np.empty(0, np.float64),
    )


def _whole_second(at: datetime) -> datetime:
    """``at`` rounded down to a whole second: a cut-off its epoch float states exactly."""
    return datetime.fromtimestamp(math.floor(at.timestamp()), UTC)
