"""Windows of ``evaluation.window_s`` as evaluations read them: whole up to
``evaluation.max_window_requests`` requests, a uniform sample of their requests past it.

An evaluation reads three windows in the scoring process (the current one, the one whose
labels are due, the one old enough to judge label delays). Read whole, a 30-day window of
2M requests took 55 s of CPU and 1.1 GB (scoring's p99 14.7 -> 91 ms meanwhile), a week's
13.5 s. A sample of 1 in ``every`` (a power of two, chosen by a hash of the request id:
:mod:`tunewatch.store._sample`) is the same requests at every read, so a verdict's report
re-reads the rows it judged, and windows sampled at different rates share their requests
(an estimate's labelled requests are those of both windows).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tunewatch.store import ModelRow, Store, Window


def sample_every(count: int, max_requests: int) -> int:
    """The fewest 1-in-``every`` (a power of two) keeping ``count`` requests at
    ``max_requests`` or fewer, as expected."""
    if max_requests < 1:
        raise ValueError(f"`max_requests` must be at least 1, got {max_requests}")
    every = 1
    while count > max_requests * every:
        every *= 2
    return every


def time_window(
    store: Store,
    model: ModelRow,
    *,
    start: datetime,
    end: datetime,
    max_requests: int,
    with_features: bool = True,
) -> Window:
    """``model``'s requests received in ``[start, end)``, counted first and sampled past
    ``max_requests`` (the window's ``sample`` says 1 in how many)."""
    every = sample_every(store.count_requests(model.name, start=start, end=end), max_requests)
    return store.window(
        model.name,
        n_features=len(model.feature_names),
        start=start,
        end=end,
        with_features=with_features,
        sample=every,
    )


def sampled(window: Window, key: str = "sample") -> dict[str, Any]:
    """What a verdict's payload says of ``window``'s sample: ``{key: 1 in how many}``,
    nothing when it was read whole."""
    return {key: window.sample} if window.sample > 1 else {}
