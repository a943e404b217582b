"""How many ``/v1`` listings of whole rows run at once in a process.

A listing (``GET /v1/models/{m}/evaluations`` and ``/drift`` … ``/telemetry``) reads up
to 10,000 evaluations whole, payloads and all: on a store with a year of 5-minute runs one
``decay?limit=10000`` took 12-20 s and answered 32 MiB, and six at once from one viewer
raised the daemon's memory from 370 to 1,121 MiB and slowed inference from 41 ms to 1.1 s
and ``/readyz`` to 1.2 s. ``GET /v1/models/{m}/versions`` and ``/v1/jobs`` read up to
10,000 versions or jobs whole, details and all (~30 MB; six at once took a daemon from 0.5
to 2.1 GB for 40 s). So at most :data:`MAX_LISTINGS_IN_PROGRESS` such listings run at once
in a process (:class:`ListingRoute`); another is answered at once, without taking a
worker thread, with 429 ``listing_busy`` and ``Retry-After``.

The slots are the listings' own, not shared with the dashboard's reads
(``tunewatch.dashboard._limit``): a script paging evaluation history would otherwise turn
every viewer's dashboard away with 429, and an open dashboard the script. Both bounded,
a process runs at most four such reads at once, beside at most two drift report builds.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tunewatch.api._route import ApiRoute
from tunewatch.api._slots import Slots, busy_description, busy_response

# Evaluation listings in progress at once, per process: two keep a client paging history
# (and another reading one page) going while leaving the worker threads (anyio's default
# 40) to scoring, token look-ups and the probes.
MAX_LISTINGS_IN_PROGRESS = 2
# Seconds a caller answered 429 is asked to wait: a listing of 10,000 evaluations of a
# year-old store takes a few seconds, a page of the default 50 or 100 well under one.
RETRY_AFTER_S = 2
BUSY_CODE = "listing_busy"
BUSY_MESSAGE = (
    f"listings (evaluations, versions, jobs) are busy: at most {MAX_LISTINGS_IN_PROGRESS} "
    f"run at once in this daemon; retry in {RETRY_AFTER_S} s"
)
# the 429 each listing documents in /openapi.json
BUSY_RESPONSES = busy_description(
    BUSY_CODE,
    f"{MAX_LISTINGS_IN_PROGRESS} listings (evaluations, versions, jobs) are in progress in "
    "this daemon",
)

_slots = Slots(MAX_LISTINGS_IN_PROGRESS)


class ListingRoute(ApiRoute):
    """A ``/v1`` listing of whole rows: an :class:`ApiRoute` that runs only while it holds
    one of the process's :data:`MAX_LISTINGS_IN_PROGRESS` listing slots (its query and
    token checked inside it); without one it is answered 429 :data:`BUSY_CODE` at once."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return _slots.limit(super().get_route_handler(), _busy)


def _busy() -> Response:
    return busy_response(BUSY_CODE, BUSY_MESSAGE, RETRY_AFTER_S)
