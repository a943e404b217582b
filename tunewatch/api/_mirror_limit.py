"""How many large mirror calls run at once in a process.

A mirror call (``POST /v1/models/{m}/records``) is parsed and checked in a worker thread
and recorded by the recorder's writer; its records are Python objects until their commit.
Forty-eight callers each posting 10,000 records at once raised the daemon's memory from
370 to 919 MiB and took every worker thread of anyio's default pool (``/readyz`` 18 s).
So a call whose body is over :data:`~tunewatch.api._body.INLINE_JSON_BYTES` (64 KiB: a
few hundred records), or whose length is not announced, runs only while it holds one of
:data:`MAX_BULK_MIRRORS_IN_PROGRESS` slots; another is answered at once, no worker thread
taken, with 429 ``mirror_busy`` and ``Retry-After``. Smaller calls (a serving stack
mirroring each request as it answers it) are not limited here: they are parsed on the
event loop and bounded, as scored requests are, by ``recording.max_pending_bytes``.

A call takes its slot once its body is in (read after its token is checked), not before:
the body arrives on the event loop, holding no worker thread, bounded by
``server.max_body_bytes`` and ``server.request_read_timeout_s``. Taken as the body began
to arrive, the slots were held for as long as their clients took to send it: four
callers that announced a large body and stopped part way turned every other large call
away until the read timeout closed them.

The slots are the mirror's own, not shared with feedback's
(:mod:`tunewatch.api._feedback_limit`): a label backfill does not turn the serving
stack's records away, nor a mirror backfill the labels.
"""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from tunewatch.api._body import INLINE_JSON_BYTES
from tunewatch.api._context import authenticate
from tunewatch.api._mirror_handover import PartlyRecorded
from tunewatch.api._slots import Handler, Slots, busy_description, busy_response

# Large mirror calls in progress at once, per process: four keep a backfill's callers
# writing (their commits are serialised by the recorder anyway) while leaving the worker
# threads and the memory to scoring.
MAX_BULK_MIRRORS_IN_PROGRESS = 4
# Seconds a caller answered 429 is asked to wait: 10,000 records are parsed and committed
# in about a second.
RETRY_AFTER_S = 2
BUSY_CODE = "mirror_busy"
BUSY_MESSAGE = (
    f"mirror records are busy: at most {MAX_BULK_MIRRORS_IN_PROGRESS} calls of over "
    f"{INLINE_JSON_BYTES // 1024} KiB run at once in this daemon; retry in {RETRY_AFTER_S} s"
)
# the 429 the mirror route documents in /openapi.json
BUSY_RESPONSES = busy_description(
    BUSY_CODE,
    f"{MAX_BULK_MIRRORS_IN_PROGRESS} mirror calls of over {INLINE_JSON_BYTES // 1024} KiB "
    "are in progress in this daemon",
)

_slots = Slots(MAX_BULK_MIRRORS_IN_PROGRESS)


def limited(handler: Handler) -> Handler:
    """The mirror route's ``handler``; a call with a large body (or none announced) runs
    only while it holds one of the process's bulk mirror slots, taken once its body is
    in, and is answered 429 :data:`BUSY_CODE` at once without one. A call whose records
    were recorded only in part is answered its 503 with ``Retry-After``
    (:class:`~tunewatch.api._mirror_handover.PartlyRecorded`)."""

    async def route(request: Request) -> Response:
        try:
            if _small(request):
                return await handler(request)
            # a body is read only for a caller the route accepts (a compressed one is
            # inflated as it is read); the handler checks the token again, from its
            # cache, and reads the body the request keeps
            authenticate(request, "score")
            await request.body()
            return await _slots.run(partial(handler, request), _busy)
        except PartlyRecorded as exc:  # its 503 carries Retry-After, which errors' do not
            return exc.response()

    return route


def _small(request: Request) -> bool:
    """Whether the request announces a body of at most ``INLINE_JSON_BYTES``."""
    length = request.headers.get("content-length")
    return length is not None and length.isdigit() and int(length) <= INLINE_JSON_BYTES


def _busy() -> Response:
    return busy_response(BUSY_CODE, BUSY_MESSAGE, RETRY_AFTER_S)
