"""How many feedback requests run at once in a process.

A feedback request (``POST /v1/models/{m}/feedback``) parses its body and writes its
labels in worker threads of anyio's default pool (40 threads), the pool that sync
handlers, body parsing and the store's reads use too. With 40 labellers each posting a
10,000-item body at once, the label writes took every thread of it: the readiness probes
took 16 s to answer (a Kubernetes probe gives up after 1 s) and every other request
waiting for a worker thread waited with them. So at most :data:`MAX_FEEDBACK_IN_PROGRESS`
feedback requests run at once in a process (:func:`limited`); another is answered at once,
without reading its body or taking a worker thread, with 429 ``feedback_busy`` and
``Retry-After``.

The slots are feedback's own, not shared with the evaluation listings'
(:mod:`tunewatch.api._listing_limit`) or the dashboard's: a label backfill would otherwise
turn a viewer away, and a viewer's listings the backfill. Mirror records
(``POST /v1/models/{m}/records``) have slots of their own
(:mod:`tunewatch.api._mirror_limit`).
"""

from __future__ import annotations

from starlette.responses import Response

from tunewatch.api._slots import Handler, Slots, busy_description, busy_response

# Feedback requests in progress at once, per process: four keep a backfill's labellers
# writing (one label write is serialised by the store's write lock anyway) while leaving
# most of the worker threads to scoring's retries, token look-ups and the management API.
MAX_FEEDBACK_IN_PROGRESS = 4
# Seconds a caller answered 429 is asked to wait: a 10,000-item body is parsed and
# written in about a second.
RETRY_AFTER_S = 2
BUSY_CODE = "feedback_busy"
BUSY_MESSAGE = (
    f"feedback is busy: at most {MAX_FEEDBACK_IN_PROGRESS} feedback requests run at once in "
    f"this daemon; retry in {RETRY_AFTER_S} s"
)
# the 429 the feedback route documents in /openapi.json
BUSY_RESPONSES = busy_description(
    BUSY_CODE, f"{MAX_FEEDBACK_IN_PROGRESS} feedback requests are in progress in this daemon"
)

_slots = Slots(MAX_FEEDBACK_IN_PROGRESS)


def limited(handler: Handler) -> Handler:
    """The feedback route's ``handler``, run only while it holds one of the process's
    :data:`MAX_FEEDBACK_IN_PROGRESS` feedback slots (its token checked and its body read
    inside it); without one it is answered 429 :data:`BUSY_CODE` at once."""
    return _slots.limit(handler, _busy)


def _busy() -> Response:
    return busy_response(BUSY_CODE, BUSY_MESSAGE, RETRY_AFTER_S)
