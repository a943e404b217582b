"""Mirror records (traffic scored elsewhere) and feedback (late ground truth).

At most a few feedback requests run at once in a process
(:mod:`tunewatch.api._feedback_limit`): their label writes run in the worker threads
everything else waits for. Mirror records are written by the recorder's own thread, at
most ``recording.max_batch`` at a time; at most a few large mirror calls run at once
(:mod:`tunewatch.api._mirror_limit`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shadow import Lineup, LoadedVersion
from tunewatch._errors import NotFoundError
from tunewatch._outage_log import ThrottledWarnings
from tunewatch._record_rows import output_record, request_record
from tunewatch._recorder import Recorder
from tunewatch._registry import PROBABILITY_TOLERANCE, ROW_SUM_TOLERANCE
from tunewatch._runtime import ServedModel
from tunewatch.api import _feedback_limit, _mirror_limit
from tunewatch.api._body import INLINE_JSON_BYTES, off_loop, parse_json_object
from tunewatch.api._context import AppContext, authenticate, context
from tunewatch.api._errors import ApiError
from tunewatch.api._label_conflicts import audit_conflicts, refused_labels
from tunewatch.api._oip_request import MAX_ID_LENGTH, has_bool
from tunewatch.api._route import check_json_type, check_no_query
from tunewatch.store import MAX_ID, LabelItem, OutputRecord, RequestRecord, Store

logger = logging.getLogger(__name__)

MIRROR_PATH = "/v1/models/{model}/records"
FEEDBACK_PATH = "/v1/models/{model}/feedback"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _items(body: dict[str, Any], key: str, limit: int) -> list[dict[str, Any]]:
    items = body.get(key)
    extra = set(body) - {key}
    if extra:
        raise ApiError(
            400, "invalid_request", f"unknown fields {sorted(extra)}; send {{{key!r}: [...]}}"
        )
    if not isinstance(items, list) or not items:
        raise ApiError(400, "invalid_request", f"`{key}` must be a non-empty list")
    if len(items) > limit:
        raise ApiError(
            413, "too_many_items", f"`{key}` holds {len(items)} entries; the limit is {limit}"
        )
    if not all(isinstance(i, dict) for i in items):
        raise ApiError(400, "invalid_request", f"every entry of `{key}` must be an object")
    return items


def _id(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_ID_LENGTH
        or not value.isprintable()
    ):
        raise ApiError(
            400,
            "invalid_id",
            f"{where}.{key} must be a printable string of 1–{MAX_ID_LENGTH} characters",
        )
    return value


def _finite_number(value: Any) -> bool:
    """A JSON number that is a finite float (an integer past float64 is not)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # math.isfinite converts an int to float first
        return False


def _matrix(value: Any, where: str, *, max_rows: int, maybe_bool: bool) -> np.ndarray:
    """A record's ``inputs`` or ``outputs`` as rows. The rows are counted in the JSON list
    before numpy converts it (413 ``batch_too_large`` past ``max_rows``); booleans among
    the numbers, which numpy reads as 1, are looked for when the body spells one
    (``maybe_bool``), as inference does."""
    outputs = where.endswith("outputs")  # a flat list: a column of outputs, a row of inputs
    if type(value) is list and (outputs or (value and type(value[0]) is list)):
        if len(value) > max_rows:
            raise ApiError(
                413,
                "batch_too_large",
                f"{where} must have at most {max_rows} rows, got {len(value)}",
            )
    try:
        array = np.asarray(value)
    except ValueError as exc:
        raise ApiError(400, "shape_mismatch", f"{where} is ragged") from exc
    kind = array.dtype.kind
    if kind not in "iuf":
        raise ApiError(
            400,
            "dtype_mismatch",
            f"{where} must hold only numbers, got {kind!r} values (strings, booleans or nulls)",
        )
    if maybe_bool and type(value) is list and has_bool(value):
        raise ApiError(400, "dtype_mismatch", f"{where} must hold only numbers, got a boolean")
    if array.ndim == 1:
        array = array.reshape(-1, 1) if outputs else array.reshape(1, -1)
    if array.ndim != 2:
        raise ApiError(400, "shape_mismatch", f"{where} must be a list of rows")
    return array


def _check_probabilities(y: np.ndarray, where: str, task: str) -> None:
    """A classifier's primary output holds probabilities: logits mirrored in their place
    were stored as such and silently corrupted realised metrics, CBPE and paired
    comparisons. Each value is in [0, 1], give or take float32 rounding
    (:data:`~tunewatch._registry.PROBABILITY_TOLERANCE`, as a registration allows: a
    random forest's mean of its trees' leaves gives 1.0000001), and a row of several
    columns sums to 1 (within :data:`~tunewatch._registry.ROW_SUM_TOLERANCE`): a
    challenger answering [1, 1] had log loss 0 on every request and was promoted."""
    outside = (y < -PROBABILITY_TOLERANCE) | (y > 1 + PROBABILITY_TOLERANCE)
    if outside.any():
        row, column = (int(i) for i in np.argwhere(outside)[0])
        raise ApiError(
            400,
            "invalid_output",
            f"{where}.outputs of a {task} model must be probabilities in [0, 1], got "
            f"{y[row, column]} at row {row}, column {column}",
        )
    if y.shape[1] < 2:
        return  # P(class 1): no sum to check
    sums = y.astype(np.float64).sum(axis=1)
    wrong = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
    if wrong.size:
        row = int(wrong[0])
        raise ApiError(
            400,
            "invalid_output",
            f"{where}.outputs of a {task} model must be probability rows summing to 1 "
            f"(within {ROW_SUM_TOLERANCE:g}): row {row} sums to {float(sums[row]):.6g}",
        )


async def mirror(request: Request) -> Response:
    """Record request + response pairs scored by the serving stack, then shadow them.

    A record whose id is already recorded is not stored again: a ``duplicate`` when it
    repeats the stored mirror record, a ``conflict`` (logged) when it does not — a
    serving stack whose id counter restarted had its new traffic dropped as replays. A
    record naming no version is answered by the champion of the day, so its replay is
    held to the stored inputs and outputs only: a batch re-sent after a promotion is
    still a replay."""
    ctx = context(request)
    authenticate(request, "score")
    check_no_query(request, f"POST {MIRROR_PATH}")
    model = request.path_params["model"]
    served = ctx.runtime.model(model)
    check_json_type(request.headers.get("content-type"))
    lineup = served.deployment.lineup
    # Parsed and checked in a worker thread: on the event loop, a batch of 10,000
    # records held every other request (liveness included) for 1-2 s.
    batch = await off_loop(_mirrored, ctx, served, lineup, model, await request.body())
    inserted = await _recorded(ctx.runtime.recorder, batch)
    others: dict[int, tuple[LoadedVersion, ...]] = {}  # the challengers but the answering one
    replayed = []
    for (record, x), new in zip(batch, inserted, strict=True):
        if not new:
            replayed.append(record)
        elif ctx.shadowing:  # the record already holds the named version's answer
            version = record.output.version
            if version not in others:
                others[version] = tuple(c for c in lineup.challengers if c.version != version)
            ctx.runtime.shadow(model, record.request.request_id, x, others[version])
    conflicts: set[str] = set()
    if replayed:  # only ids already recorded are read back, in chunks
        conflicts = await run_in_threadpool(_conflicts, ctx.runtime.store, replayed)
    duplicates = [r.request.request_id for r in replayed if r.request.request_id not in conflicts]
    conflicting = [r.request.request_id for r in replayed if r.request.request_id in conflicts]
    counter = ctx.runtime.metrics.mirror_records
    for outcome, n in (
        ("accepted", len(batch) - len(replayed)),
        ("duplicate", len(duplicates)),
        ("conflict", len(conflicting)),
    ):
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


async def _recorded(recorder: Recorder, batch: list[_Mirrored]) -> list[bool]:
    """Record ``batch``, at most ``recording.max_batch`` records at a time: whether each
    was new. All handed over at once, a batch of 10,000 records was one commit, and every
    request scored meanwhile waited for it (inference's p50 3.5 s beside eight callers
    mirroring such batches); a chunk's commit is as long as a busy group's. A chunk that
    fails fails the call (503) with the chunks before it recorded: the client's retry
    finds them ``duplicates``."""
    inserted: list[bool] = []
    for start in range(0, len(batch), recorder.max_batch):
        chunk = batch[start : start + recorder.max_batch]
        inserted += await asyncio.gather(
            *(recorder.record(m.record.request, [m.record.output]) for m in chunk)
        )
    return inserted


def _mirrored(
    ctx: AppContext, served: ServedModel, lineup: Lineup, model: str, raw: bytes
) -> list[_Mirrored]:
    """The records of a mirror batch's body, parsed and checked (in a worker thread);
    refused (4xx) at the first record that fails a check."""
    items = _items(parse_json_object(raw), "records", ctx.runtime.config.server.max_items)
    maybe_bool = b"true" in raw or b"false" in raw
    max_rows = ctx.runtime.config.server.max_batch_rows
    task = served.row.task
    champion = lineup.champion
    default_width = ctx.runtime.primary_width(served)
    batch = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"records[{i}]"
        extra = set(item) - {"id", "inputs", "outputs", "version"}
        if extra:
            raise ApiError(400, "invalid_request", f"{where} has unknown fields {sorted(extra)}")
        request_id = _id(item, "id", where)
        if request_id in seen:
            raise ApiError(
                400, "duplicate_request_id", f"{where}.id {request_id!r} repeats in the batch"
            )
        seen.add(request_id)
        inputs = _matrix(
            item.get("inputs"), f"{where}.inputs", max_rows=max_rows, maybe_bool=maybe_bool
        )
        x = ctx.runtime.validate(served, inputs)
        y = _matrix(
            item.get("outputs"), f"{where}.outputs", max_rows=max_rows, maybe_bool=maybe_bool
        )
        version = item.get("version")
        named_version = version is not None
        if version is None:
            if champion is None:  # not `model_not_ready` (503, retry): the caller must name one
                raise ApiError(
                    409,
                    "version_required",
                    f"{where}.version is required: model {model!r} has no champion",
                )
            version = champion.version
        elif (
            not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_ID
        ):
            raise ApiError(
                400, "invalid_request", f"{where}.version must be an integer in 1..{MAX_ID}"
            )
        # As wide as the named version answers (the model's width for one not in service).
        named = lineup.find(version)
        width = default_width if named is None else named.model.primary_width()
        # Stored as float32: a value past its range would be stored as infinity.
        fits = np.isfinite(y).all() and bool((np.abs(y) <= _FLOAT32_MAX).all())
        if y.shape[0] != x.shape[0] or not fits or width not in (None, y.shape[1]):
            columns = "" if width is None else f" of {width} columns"
            raise ApiError(
                400,
                "shape_mismatch",
                f"{where}.outputs must have one row{columns} per input row ({x.shape[0]}), "
                f"of numbers float32 can hold; got shape {list(y.shape)}",
            )
        if task in ("binary", "multiclass"):
            _check_probabilities(y, where, task)
        record = _Record(
            request_record(model, request_id, x, source="mirror"),
            output_record(model, request_id, version, "external", y, None),
            named_version,
        )
        batch.append(_Mirrored(record, x))
    unloaded = {m.record.output.version for m in batch} - set(lineup.versions)
    if unloaded:  # versions in service are registered; ask the store about the others
        _check_versions(ctx, model, unloaded)
    return batch


class _Record(NamedTuple):
    request: RequestRecord
    output: OutputRecord
    named_version: bool  # False: the output's version is the champion's at the time


class _Mirrored(NamedTuple):
    record: _Record
    x: np.ndarray  # the rows as validated, for the challengers


def _conflicts(store: Store, records: Sequence[_Record]) -> set[str]:
    """The ids among ``records``, each already recorded, whose stored record is not the
    same mirror record (see :func:`_is_replay`). The stored records are read in chunks
    of ids, a model at a time: a re-sent batch of thousands of records is a few reads."""
    by_model: dict[str, list[_Record]] = {}
    for r in records:
        by_model.setdefault(r.request.model, []).append(r)
    conflicts: set[str] = set()
    for model, batch in by_model.items():
        stored = store.get_external_records(model, [r.request.request_id for r in batch])
        conflicts.update(
            r.request.request_id
            for r in batch
            if not _is_replay(r, stored.get(r.request.request_id))
        )
    return conflicts


def _is_replay(record: _Record, stored: tuple[RequestRecord, list[OutputRecord]] | None) -> bool:
    """Whether ``stored`` (the stored request of ``record``'s id with its ``external``
    outputs) is this mirror record: a mirror record (not a request scored here) of the
    same inputs with the same outputs, compared as stored (float32; ``-0.0`` equals
    ``0.0``), answered by the same version when ``record`` named one. A record naming
    none took the champion of the day, which a promotion since may have changed."""
    if stored is None:
        return False
    request, output, named_version = record
    stored_request, answers = stored
    if (
        stored_request.source != "mirror"
        or not same_matrix(stored_request, request, "inputs")
        or len(answers) != 1
    ):
        return False
    (answer,) = answers
    if named_version and answer.version != output.version:
        return False
    return same_matrix(answer, output, "values")


def same_matrix(stored: Any, new: Any, field: str) -> bool:
    """Whether two float32 matrices recorded in ``field`` hold the same numbers."""
    if (stored.n_rows, stored.n_cols) != (new.n_rows, new.n_cols):
        return False
    return bool(
        np.array_equal(
            np.frombuffer(getattr(stored, field), np.float32),
            np.frombuffer(getattr(new, field), np.float32),
            equal_nan=True,
        )
    )


def _check_versions(ctx: AppContext, model: str, versions: set[int]) -> None:
    """Refuse records naming a version the model never registered."""
    for version in sorted(versions):
        try:
            ctx.runtime.store.get_version(model, version)
        except LookupError as exc:
            raise ApiError(
                404, "version_not_found", f"model {model!r} has no version {version}"
            ) from exc


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
    Served only while it holds a feedback slot (:func:`~tunewatch.api._feedback_limit.limited`:
    429 ``feedback_busy`` without one)."""
    ctx = context(request)
    principal = authenticate(request, "label")
    check_no_query(request, f"POST {FEEDBACK_PATH}")
    model = request.path_params["model"]
    served = ctx.runtime.model(model)
    check_json_type(request.headers.get("content-type"))
    raw = await request.body()
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
        await run_in_threadpool(audit_conflicts, ctx.runtime.store, model, principal.name, refused)
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
    items = _items(parse_json_object(raw), "items", ctx.runtime.config.server.max_items)
    classes = _classes(ctx, served) if task == "multiclass" else _ANY_CLASS
    labels = []
    for i, item in enumerate(items):
        where = f"items[{i}]"
        extra = set(item) - {"request_id", "label", "outcome"}
        if extra:
            raise ApiError(400, "invalid_request", f"{where} has unknown fields {sorted(extra)}")
        request_id = _id(item, "request_id", where)
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
    Route(FEEDBACK_PATH, _feedback_limit.limited(feedback), methods=["POST"]),
]
