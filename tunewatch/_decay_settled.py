"""What a decay verdict stores of its settled windows, and reading it back.

Each verdict lists its windows (``windows``: end, value, labelled requests, coverage; what
the dashboard and the API show) and, under ``settled``, the format, the key the figures
were computed for (champion version, features, window, maturity, objective), the edge
before which windows are settled, and the rest of each settled window's figures. A new
process or leader takes them from the newest verdict of the champion
(:func:`stored_settled`), checked to hold together, instead of reading those windows
(:class:`tunewatch._decay_windows.DecayWindowCache`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitor import WindowValue
from tunewatch._span import iso
from tunewatch.store import Store

logger = logging.getLogger(__name__)

#: The format of the settled windows a decay verdict stores (its payload's ``settled``
#: and ``windows``); another is read as none (:func:`stored_settled`).
SETTLED_FORMAT = 1


@dataclass(frozen=True, slots=True)
class DecayWindow:
    """One window's number (see :func:`horizon`), figure, and the first and last request
    it judged (epoch seconds, ``None`` when it held none)."""

    number: int
    value: WindowValue
    first_request: float | None
    last_request: float | None


@dataclass(frozen=True, slots=True)
class DecayHorizon:
    """A run's matured windows of the horizon, from its first edge to the newest window
    holding a request, and what the settled ones' figures were computed for (``key``:
    version, features, window, maturity, objective) and until when (``settled_before``:
    the windows numbered lower are settled), as a verdict stores them."""

    windows: list[DecayWindow]
    key: dict[str, Any]
    settled_before: int  # a window number (see :func:`horizon`)


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
