"""How many feedback requests run at once in a process.

A feedback request (``POST /v1/models/{m}/feedback``) parses its body and writes its
labels in worker threads of anyio's default pool (40 threads), the pool that sync
handlers, body parsing and the store's reads use too. With 40 labellers each posting a
10,000-item body at once, the label writes took every thread of it: the readiness probes
took 16 s to answer (a Kubernetes probe gives up after 1 s) and every other request
waiting for a worker thread waited with them. So at most :data:`MAX_FEEDBACK_IN_PROGRESS`
feedback requests parse and write their labels at once in a process (:func:`run`);
another is answered at once, without taking a worker thread, with 429 ``feedback_busy``
and ``Retry-After``.

A request takes its slot once its body is in, not before: its body arrives on the event
loop, holding no worker thread, bounded by ``server.max_body_bytes`` and
``server.request_read_timeout_s``. Taken as the body began to arrive, the slots were
held for as long as their clients took to send it: four labeller connections that sent
``{"items":[`` and stopped turned every other labeller away (429) until the read timeout
closed them, 30 s later.

The slots are feedback's own, not shared with the evaluation listings'
(:mod:`tunewatch.api._listing_limit`) or the dashboard's: a label backfill would otherwise
turn a viewer away, and a viewer's listings the backfill. Mirror records
(``POST /v1/models/{m}/records``) have slots of their own
(:mod:`tunewatch.api._mirror_limit`).
"""

from __future__ import annotations

from starlette.responses import Response

from tunewatch.api._slots import Slots, Work, busy_description, busy_response

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


async def run(work: Work) -> Response:
    """The feedback route's ``work()`` (its body parsed, its labels written: the caller
    checked and the body read before), awaited only while it holds one of the process's
    :data:`MAX_FEEDBACK_IN_PROGRESS` feedback slots; without one, 429 :data:`BUSY_CODE`
    at once."""
    return await _slots.run(work, _busy)


def _busy() -> Response:
    return busy_response(BUSY_CODE, BUSY_MESSAGE, RETRY_AFTER_S)
