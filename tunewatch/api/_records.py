"""Mirror records (traffic scored elsewhere) and feedback (late ground truth).

A mirror batch is parsed and checked in a worker thread
(:mod:`tunewatch.api._mirror_body`; when each record was scored and which version
answered one naming none: :mod:`tunewatch.api._mirror_time`), committed and handed over
chunk by chunk (:mod:`tunewatch.api._mirror_handover`), and its ids already recorded
told apart as duplicates or conflicts (:mod:`tunewatch.api._mirror_replays`).

At most a few feedback requests run at once in a process
(:mod:`tunewatch.api._feedback_limit`): their label writes run in the worker threads
everything else waits for. Mirror records are written by the recorder's own thread, at
most ``recording.max_batch`` at a time; at most a few large mirror calls run at once
(:mod:`tunewatch.api._mirror_limit`).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tunewatch._errors import NotFoundError
from tunewatch._outage_log import ThrottledWarnings
from tunewatch._runtime import ServedModel
from tunewatch.api import _feedback_limit, _mirror_limit
from tunewatch.api._body import INLINE_JSON_BYTES, off_loop, parse_json_object
from tunewatch.api._context import AppContext, authenticate, context
from tunewatch.api._errors import ApiError
from tunewatch.api._items import id_of, items_of
from tunewatch.api._label_conflicts import audit_conflicts, refused_labels
from tunewatch.api._mirror_body import RefusedRecords
from tunewatch.api._mirror_body import mirrored as _mirrored
from tunewatch.api._mirror_handover import Handover, recorded
from tunewatch.api._mirror_replays import conflicts
from tunewatch.api._mirror_replays import same_matrix as same_matrix  # the OIP route's
from tunewatch.api._route import check_json_type, check_no_query
from tunewatch.store import LabelItem

logger = logging.getLogger(__name__)

MIRROR_PATH = "/v1/models/{model}/records"
FEEDBACK_PATH = "/v1/models/{model}/feedback"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _finite_number(value: Any) -> bool:
    """A JSON number that is a finite float (an integer past float64 is not)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # math.isfinite converts an int to float first
        return False


async def mirror(request: Request) -> Response:
    """Record request + response pairs scored by the serving stack, then shadow them.

    A record whose id is already recorded is not stored again: a ``duplicate`` when it
    repeats the stored mirror record, a ``conflict`` (logged) when it does not — a
    serving stack whose id counter restarted had its new traffic dropped as replays. A
    record naming no version is answered by the champion of its time, so its replay is
    held to the stored inputs and outputs only: a batch re-sent after a promotion is
    still a replay. ``tunewatch_mirror_records_total{model,outcome}`` counts each record
    ``accepted`` (as its chunk commits), ``duplicate``, ``conflict`` or ``refused`` (a
    batch refused with a 4xx: all its records)."""
    ctx = context(request)
    authenticate(request, "score")
    check_no_query(request, f"POST {MIRROR_PATH}")
    model = request.path_params["model"]
    served = ctx.runtime.model(model)
    check_json_type(request.headers.get("content-type"))
    lineup = served.deployment.lineup
    counter = ctx.runtime.metrics.mirror_records
    if served.ranges is not None:  # exported at 0 from the first call on
        ctx.runtime.metrics.shadow_dropped.labels(model, "out_of_range")
    # Parsed and checked in a worker thread: on the event loop, a batch of 10,000
    # records held every other request (liveness included) for 1-2 s.
    try:
        batch = await off_loop(_mirrored, ctx, served, lineup, model, await request.body())
    except RefusedRecords as exc:
        if exc.records:
            counter.labels(model, "refused").inc(exc.records)
        raise
    handover = Handover(ctx, model, lineup)
    replayed = await recorded(ctx.runtime.recorder, batch, handover.committed)
    found: set[str] = set()
    if replayed:  # only ids already recorded are read back, in chunks
        found = await run_in_threadpool(conflicts, ctx.runtime.store, replayed)
    duplicates = [r.request.request_id for r in replayed if r.request.request_id not in found]
    conflicting = [r.request.request_id for r in replayed if r.request.request_id in found]
    for outcome, n in (("duplicate", len(duplicates)), ("conflict", len(conflicting))):
        if n:
            counter.labels(model, outcome).inc(n)
    if conflicting:
        ctx.mirror_conflicts.setdefault(model, ThrottledWarnings()).warning(
            logger,
            "model %s: %d mirror records reuse a recorded request id with other inputs, "
            "version or outputs and were not recorded (first: %r; counted in "
            'tunewatch_mirror_records_total{outcome="conflict"})',
            model,
            len(conflicting),
            conflicting[0],
        )
    return JSONResponse(
        {
            "accepted": len(batch) - len(replayed),
            "duplicates": duplicates,
            "conflicts": conflicting,
        }
    )


_ANY_CLASS = 2**31  # one past the store's integers: a class index, of classes not known


def _classes(ctx: AppContext, served: ServedModel) -> int:
    """How many classes a multiclass model's label may name: the columns of the primary
    output of the version the model's requests are read against (its champion's), as the
    graph declares them or, left dynamic, as the version scores them; any class index
    only when that cannot be found. With no version loaded by this
    process (its champion's artefact not readable here yet, or none in service), the
    classes are not known: 503 ``model_not_ready``, as the mirror route answers, rather
    than storing a class the model may not have (no version's stored metadata holds its
    class count)."""
    try:
        width = ctx.runtime.primary_width(served)
    except NotFoundError as exc:
        raise ApiError(
            503,
            "model_not_ready",
            f"model {served.row.name!r} has no version loaded to check its labels' class "
            "indices against; retry later",
        ) from exc
    return _ANY_CLASS if width is None else max(width, 2)  # one column: a binary output


def _check_magnitude(values: Sequence[float], where: str) -> None:
    """A regression label or an outcome must be a number float32 can hold, the bound the
    model's inputs and outputs are stored to: a label of 1e300 made every retune of the
    model fail (its squared error is infinite) while its request was in the window."""
    for value in values:
        if abs(value) > _FLOAT32_MAX:
            raise ApiError(
                400,
                "invalid_label",
                f"{where} must be at most {_FLOAT32_MAX:.6g} in magnitude (float32's "
                f"range), got {value:g}",
            )


async def feedback(request: Request) -> Response:
    """Attach ground truth by request id; replaying the same label is harmless.

    A label refused as a ``conflict`` (its id holds another label, or the same one with
    another outcome: the first wins) is logged and audited (see :func:`audit_conflicts`).
    Its labels are parsed and written only while it holds a feedback slot, taken once its
    body is in (:func:`~tunewatch.api._feedback_limit.run`: 429 ``feedback_busy`` without
    one)."""
    ctx = context(request)
    principal = authenticate(request, "label")
    check_no_query(request, f"POST {FEEDBACK_PATH}")
    model = request.path_params["model"]
    served = ctx.runtime.model(model)
    check_json_type(request.headers.get("content-type"))
    raw = await request.body()  # a client slow to send it holds no slot meanwhile
    return await _feedback_limit.run(
        partial(_stored_labels, ctx, model, served, principal.name, raw)
    )


async def _stored_labels(
    ctx: AppContext, model: str, served: ServedModel, labeller: str, raw: bytes
) -> Response:
    """The answer to a feedback body ``raw`` for ``model`` from ``labeller``, its labels
    parsed, checked and written."""
    if len(raw) <= INLINE_JSON_BYTES:
        labels = _labels(ctx, served, raw)
    else:  # thousands of items, parsed and checked in a worker thread
        labels = await off_loop(_labels, ctx, served, raw)
    statuses = await run_in_threadpool(ctx.runtime.store.add_labels, model, labels)
    counter = ctx.runtime.metrics.labels_received
    for status, n in Counter(statuses).items():  # one increment per status, not per item
        counter.labels(model, status).inc(n)
    if "conflict" in statuses:
        refused = refused_labels(labels, statuses)
        await run_in_threadpool(audit_conflicts, ctx.runtime.store, model, labeller, refused)
    return JSONResponse(
        {
            "results": [
                {"request_id": item.request_id, "status": status}
                for item, status in zip(labels, statuses, strict=True)
            ]
        }
    )


def _labels(ctx: AppContext, served: ServedModel, raw: bytes) -> list[LabelItem]:
    """The labels of a feedback body, parsed and checked; refused (4xx) at the first item
    that fails a check."""
    task = served.row.task
    items = items_of(parse_json_object(raw), "items", ctx.runtime.config.server.max_items)
    classes = _classes(ctx, served) if task == "multiclass" else _ANY_CLASS
    labels = []
    for i, item in enumerate(items):
        where = f"items[{i}]"
        extra = set(item) - {"request_id", "label", "outcome"}
        if extra:
            raise ApiError(400, "invalid_request", f"{where} has unknown fields {sorted(extra)}")
        request_id = id_of(item, "request_id", where)
        label: Any = item.get("label")
        ok = _finite_number(label) or (
            isinstance(label, list) and label and all(_finite_number(v) for v in label)
        )
        if not ok:
            raise ApiError(
                400,
                "invalid_label",
                f"{where}.label must be a finite number or a non-empty list of them",
            )
        values = label if isinstance(label, list) else [label]
        if task == "binary" and any(v not in (0, 1) for v in values):
            raise ApiError(400, "invalid_label", f"{where}.label of a binary model is 0 or 1")
        if task == "multiclass" and any(v < 0 or v != int(v) or v >= classes for v in values):
            named = f" in 0..{classes - 1}" if classes < _ANY_CLASS else ""
            raise ApiError(
                400,
                "invalid_label",
                f"{where}.label of a multiclass model is a class index{named}",
            )
        if task == "regression":
            _check_magnitude(values, f"{where}.label")
        outcome = item.get("outcome")
        if outcome is not None and not _finite_number(outcome):
            raise ApiError(400, "invalid_label", f"{where}.outcome must be a finite number")
        if outcome is not None:
            _check_magnitude([outcome], f"{where}.outcome")
        value = float(label) if not isinstance(label, list) else [float(v) for v in label]
        labels.append(LabelItem(request_id=request_id, value=value, outcome=outcome))
    return labels


routes = [
    Route(MIRROR_PATH, _mirror_limit.limited(mirror), methods=["POST"]),
    Route(FEEDBACK_PATH, feedback, methods=["POST"]),
]
