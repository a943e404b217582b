"""The rows a drift verdict judged: what it records of them, and its report's re-read.

A verdict reads the requests committed when it runs. A request stamped inside its window
may be committed later: by a replica whose clock runs behind, or in a group commit that
ended after the run. Its report, re-read from the store later on, must not test these.
The verdict records (:func:`judged_rows_record`) the first and last request of its window
in the store's order (time, then request id, as the window's read breaks ties) and a
SHA-256 of the ids of its rows in that order. The report re-reads the requests between
those two (:func:`judged_window`), so that a request stamped after the newest one judged,
or tied with the first and left out, is not in it, and compares its rows' digest with the
verdict's. One stamped among the verdict's cannot be told apart from those by anything the
store keeps: the report then tests it too, and says so (:attr:`JudgedWindow.notice`).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from tunewatch._span import ts
from tunewatch._window_sample import sampled
from tunewatch.store import EvaluationRow, ModelRow, Store, Window

#: The verdict payload's key for :func:`judged_rows_record`.
JUDGED_ROWS = "judged_rows"

#: Half the store's resolution (a microsecond): two stored times closer than this are one.
_SAME_INSTANT_S = 5e-7


def judged_rows_record(window: Window) -> dict[str, Any]:
    """What a drift verdict keeps of the rows of ``window`` it judged, under
    :data:`JUDGED_ROWS`: ``first`` and ``last`` (each its time, ISO 8601, and its request
    id) and ``sha256`` (:func:`rows_digest`). Empty when ``window`` has no rows."""
    if not window.n_rows:
        return {}
    return {
        JUDGED_ROWS: {
            "first": [ts(window.received_at[0]).isoformat(), window.request_ids[0]],
            "last": [ts(window.received_at[-1]).isoformat(), window.request_ids[-1]],
            "sha256": rows_digest(window),
            **sampled(window),
        }
    }


def rows_digest(window: Window) -> str:
    """SHA-256 of the request ids of ``window``'s rows, in order (one a row)."""
    text = json.dumps(list(window.request_ids), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True, eq=False)
class JudgedWindow:
    """A drift verdict's window as its report re-read it.

    ``same_rows``: whether these are the rows the verdict judged (their digest is its);
    ``None`` for a verdict stored before it recorded them, whose rows can only be counted.
    """

    window: Window
    evaluation: int
    n_verdict: int | None  # the verdict's ``n_current``
    same_rows: bool | None

    @property
    def notice(self) -> str | None:
        """What the report must say about its rows, ``None`` when they are the verdict's
        (or, for a verdict that recorded no digest, as many)."""
        n, m = self.window.n_rows, self.n_verdict
        counted = f"This report tested {n} rows; its verdict (evaluation {self.evaluation})"
        if self.same_rows is None:
            if m is None or n == m:
                return None
            return (
                f"{counted} tested {m}. The verdict was stored before verdicts recorded which "
                "requests they judged: the rows, and so the figures, may differ from the "
                "verdict's (requests recorded after it ran, or deleted since)."
            )
        if self.same_rows:
            return None
        what = f"{counted} tested {m}" if n != m else f"{counted} tested as many, not the same"
        return (
            f"{what}. Requests stamped inside the verdict's window were recorded after it "
            "ran (by a host whose clock runs behind, or in a late commit), or some it tested "
            "were deleted since: the report's rows and figures are not the verdict's."
        )


def judged_window(store: Store, model: ModelRow, target: EvaluationRow) -> JudgedWindow:
    """The requests a stored drift verdict judged, as the store holds them now: from the
    first to the last it recorded (:func:`judged_rows_record`), compared with its digest.
    A verdict stored before it recorded them is re-read over its window, from its first
    request to its run."""
    assert target.window_start is not None
    n_verdict = target.payload.get("n_current")
    judged = target.payload.get(JUDGED_ROWS)
    if judged is None:  # stored before verdicts recorded their rows: as it was read then
        window = store.window(
            model.name,
            n_features=len(model.feature_names),
            start=target.window_start,
            end=target.window_end + timedelta(microseconds=1),
        )
        return JudgedWindow(window, target.id, n_verdict, None)
    (first_at, first_id), (last_at, last_id) = judged["first"], judged["last"]
    start, end = datetime.fromisoformat(first_at), datetime.fromisoformat(last_at)
    window = store.window(
        model.name,
        n_features=len(model.feature_names),
        start=start,
        end=end + timedelta(microseconds=1),
        sample=judged.get("sample", 1),  # the verdict's sample (1: read whole)
    )
    # the read takes whole instants: those tied with the first request before it, or with
    # the last after it, were not the verdict's (ties broken by request id, byte by byte
    # as the store's read breaks them: UTF-8 orders as code points, as Python does)
    ids = np.asarray(window.request_ids, dtype=object)
    at = window.received_at
    outside = (np.abs(at - start.timestamp()) < _SAME_INSTANT_S) & (ids < first_id)
    outside |= (np.abs(at - end.timestamp()) < _SAME_INSTANT_S) & (ids > last_id)
    if outside.any():
        window = _rows(window, ~outside)
    return JudgedWindow(window, target.id, n_verdict, rows_digest(window) == judged["sha256"])


def _rows(window: Window, keep: np.ndarray) -> Window:
    """``window``'s rows where ``keep`` is true."""
    return Window(
        model=window.model,
        request_ids=tuple(np.asarray(window.request_ids, dtype=object)[keep]),
        received_at=window.received_at[keep],
        features=window.features[keep],
        outputs=window.outputs[keep],
        versions=window.versions[keep],
        labels=window.labels[keep],
        label_received_at=window.label_received_at[keep],
        sample=window.sample,
    )


_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def with_notice(
    page: str, notice: str, *, element_id: str = "tunewatch-rows-notice", alert: bool = True
) -> str:
    """The HTML ``page`` with ``notice`` shown first in its body, escaped (the page's
    first element when it has no ``<body>``): seen before any of the report's figures.
    An ``alert`` is a warning (``role="alert"``, amber); else a note (``role="note"``,
    blue)."""
    role, colours = (
        ("alert", "background:#fff3cd;color:#664d03;border-bottom:2px solid #ffc107;")
        if alert
        else ("note", "background:#cfe2ff;color:#052c65;border-bottom:2px solid #9ec5fe;")
    )
    block = (
        f'<div id="{html.escape(element_id)}" role="{role}" style="margin:0;padding:12px 16px;'
        f'{colours}font:15px/1.4 sans-serif">{html.escape(notice)}</div>'
    )
    body = _BODY.search(page)
    at = body.end() if body is not None else 0
    return page[:at] + block + page[at:]
