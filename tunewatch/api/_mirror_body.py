"""A mirror batch's body, parsed and checked (in a worker thread): each record's rows,
its answer, the version that answered it and when it was scored.

A batch is refused whole (4xx) at the first record that fails a check, the error naming
it (``records[i]``), and its records are counted refused (:class:`RefusedRecords`). An
input that cannot be recorded as it is (not a matrix of the model's width, a value
float32 cannot hold) fails a check; one outside the model's configured feature ranges
(``models[].features``) does not: the stack served it, so it is recorded for drift to
read, and only the challengers skip it (:attr:`Mirrored.in_range`) — one such row refused
the batch, so traffic drifting past a bound was lost whole, its in-range records too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np

from shadow import InvalidInputError, Lineup, validate_batch
from tunewatch._record_rows import output_record, request_record
from tunewatch._registry import PROBABILITY_TOLERANCE, ROW_SUM_TOLERANCE
from tunewatch._runtime import ScoringRuntime, ServedModel
from tunewatch.api._body import parse_json_object
from tunewatch.api._context import AppContext
from tunewatch.api._errors import SHADOW_STATUS, ApiError
from tunewatch.api._items import id_of, items_of
from tunewatch.api._mirror_time import Attribution, scored_at_of
from tunewatch.api._oip_request import has_bool
from tunewatch.store import MAX_ID, OutputRecord, RequestRecord

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FIELDS = frozenset({"id", "inputs", "outputs", "version", "scored_at"})


class MirrorRecord(NamedTuple):
    request: RequestRecord
    output: OutputRecord
    named_version: bool  # False: the output's version is the champion's at the time


class Mirrored(NamedTuple):
    record: MirrorRecord
    x: np.ndarray  # the rows as validated, for the challengers
    in_range: bool  # within the model's feature ranges: the challengers score it


class RefusedRecords(ApiError):
    """A mirror batch refused (``error``'s status, code and message), with how many
    records it held (``records``: 0 when its body held no list of records)."""

    def __init__(self, error: ApiError, records: int) -> None:
        super().__init__(error.status, error.code, error.message)
        self.records = records


def mirrored(
    ctx: AppContext, served: ServedModel, lineup: Lineup, model: str, raw: bytes
) -> list[Mirrored]:
    """The records of a mirror batch's body, parsed and checked (in a worker thread);
    :class:`RefusedRecords` at the first record that fails a check."""
    body = parse_json_object(raw)
    listed = body.get("records")
    try:
        return _checked(ctx, served, lineup, model, raw, body)
    except ApiError as exc:
        raise RefusedRecords(exc, len(listed) if isinstance(listed, list) else 0) from exc


def _checked(
    ctx: AppContext,
    served: ServedModel,
    lineup: Lineup,
    model: str,
    raw: bytes,
    body: dict[str, Any],
) -> list[Mirrored]:
    """:func:`mirrored`'s checks, record by record; then the versions named that are not
    in service, and the records whose version is in doubt."""
    runtime = ctx.runtime
    items = items_of(body, "records", runtime.config.server.max_items)
    maybe_bool = b"true" in raw or b"false" in raw
    max_rows = runtime.config.server.max_batch_rows
    task = served.row.task
    default_width = runtime.primary_width(served)
    now = datetime.now(UTC)
    attribution = Attribution(runtime, model, lineup, now)
    retention_days = runtime.config.recording.retention_days
    batch = []
    in_doubt: list[tuple[str, str]] = []  # (where, id) of records whose version is in doubt
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"records[{i}]"
        extra = set(item) - _FIELDS
        if extra:
            raise ApiError(400, "invalid_request", f"{where} has unknown fields {sorted(extra)}")
        request_id = id_of(item, "id", where)
        if request_id in seen:
            raise ApiError(
                400, "duplicate_request_id", f"{where}.id {request_id!r} repeats in the batch"
            )
        seen.add(request_id)
        inputs = _matrix(
            item.get("inputs"), f"{where}.inputs", max_rows=max_rows, maybe_bool=maybe_bool
        )
        x, in_range = _rows(runtime, served, inputs, f"{where}.inputs")
        y = _matrix(
            item.get("outputs"), f"{where}.outputs", max_rows=max_rows, maybe_bool=maybe_bool
        )
        scored_at = scored_at_of(
            item.get("scored_at"), where, now=now, retention_days=retention_days
        )
        version = item.get("version")
        named_version = version is not None
        if version is None:
            version, doubtful = attribution.version(scored_at, where)
            if doubtful:
                in_doubt.append((where, request_id))
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
        record = MirrorRecord(
            request_record(model, request_id, x, source="mirror", received_at=scored_at),
            output_record(model, request_id, version, "external", y, None, scored_at),
            named_version,
        )
        batch.append(Mirrored(record, x, in_range))
    unloaded = {m.record.output.version for m in batch} - set(lineup.versions)
    if unloaded:  # versions in service are registered; ask the store about the others
        _check_versions(ctx, model, unloaded)
    if in_doubt:  # refused unless recorded already: a replay stores nothing
        recorded = runtime.store.get_external_records(model, [rid for _, rid in in_doubt])
        for where, request_id in in_doubt:
            if request_id not in recorded:
                raise attribution.refusal(where)
    return batch


def _rows(
    runtime: ScoringRuntime, served: ServedModel, inputs: np.ndarray, where: str
) -> tuple[np.ndarray, bool]:
    """A record's input rows as the model reads them (its dtype), checked as inference
    checks them, and whether they lie within the model's feature ranges: a row outside
    them is taken (``False``), any other failed check refused with its code, naming
    ``where``. Rows out of range are checked again without the ranges, to tell them from
    a value float32 cannot hold (``out_of_range`` too)."""
    try:
        return runtime.validate(served, inputs), True
    except InvalidInputError as exc:
        error = exc
    if error.code == "out_of_range" and served.ranges is not None:
        try:
            rows = validate_batch(
                inputs,
                runtime.signature(served),
                max_rows=runtime.config.server.max_batch_rows,
            )
        except InvalidInputError as exc:
            error = exc
        else:
            return rows, False
    status = SHADOW_STATUS.get(error.code, 400)
    raise ApiError(status, error.code, f"{where}: {error.message}") from error


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


def _check_versions(ctx: AppContext, model: str, versions: set[int]) -> None:
    """Refuse records naming a version the model never registered."""
    for version in sorted(versions):
        try:
            ctx.runtime.store.get_version(model, version)
        except LookupError as exc:
            raise ApiError(
                404, "version_not_found", f"model {model!r} has no version {version}"
            ) from exc
