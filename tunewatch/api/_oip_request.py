"""Reading an Open Inference Protocol v2 inference request (JSON, or JSON and binary
tensors) straight into one numpy array checked against the model's signature: the
request id, its rows, the outputs asked for and the live split's unit key."""

from __future__ import annotations

import math
import secrets
import threading
import time
from typing import Any

import numpy as np

from shadow import Signature, TensorSpec
from tunewatch.api._body import parse_json_object
from tunewatch.api._errors import ApiError
from tunewatch.store import MAX_UNIT_KEY_LENGTH

OIP_DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
MAX_ID_LENGTH = 128
MAX_DIMENSION = 2**31 - 1  # a free dimension of a request's `shape` (the batch's rows)
_BY_DTYPE = {v: k for k, v in OIP_DATATYPES.items()}


def datatype_of(dtype: np.dtype[Any]) -> str:
    return _BY_DTYPE.get(dtype, "BYTES")


def has_bool(data: list[Any]) -> bool:
    """Whether nested JSON lists hold a boolean (numpy reads ``true`` among numbers as 1)."""
    stack = [data]
    while stack:
        for value in stack.pop():
            kind = type(value)
            if kind is bool:
                return True
            if kind is list:
                stack.append(value)
    return False


def _more_values_than(data: list[Any], size: int) -> bool:
    """Whether ``data``, flat or nested by rows, has more than ``size`` entries, counted
    without converting it: the top level's, or for nested rows the rows' entries. Each
    stands for a value, or is an empty or ragged list that conversion refuses anyway."""
    if len(data) > size:
        return True
    if not data or type(data[0]) is not list:
        return False  # flat (a list among numbers is ragged)
    count = 0
    for row in data:
        count += len(row) if type(row) is list else 1
        if count > size:
            return True
    return False


_last_us = 0
_random = ""  # hex digits from the OS's CSPRNG, 16 used per id
_random_at = 0
_id_lock = threading.Lock()


def _generated_id() -> str:
    """An id for a request sent without one: microseconds since the epoch, then 64
    random bits. The random part keeps a client from guessing an id and claiming it
    first, as it could the ids of a per-process prefix and a counter echoed in every
    answer (a request sent without an id then answered 409). The time part keeps them in
    order: wholly random ids landed all over the store's primary-key B-trees, and an
    insert at 320k rows cost 4x (57 µs against 14 µs a request). The time rises from one
    call to the next, and the random bits are read from the OS 512 ids at a time (a
    system call per id cost a microsecond of the event loop's)."""
    global _last_us, _random, _random_at
    with _id_lock:
        _last_us = max(time.time_ns() // 1000, _last_us + 1)
        if _random_at >= len(_random):
            _random, _random_at = secrets.token_hex(4096), 0
        _random_at += 16
        return f"{_last_us:014x}{_random[_random_at - 16 : _random_at]}"


def _request_id(raw: Any) -> str:
    if raw is None:
        return _generated_id()
    if not isinstance(raw, str) or not raw or len(raw) > MAX_ID_LENGTH or not raw.isprintable():
        raise ApiError(
            400, "invalid_id", f"`id` must be a printable string of 1–{MAX_ID_LENGTH} characters"
        )
    return raw


def _dims(spec: TensorSpec) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in spec.shape) + "]"


def _shape(raw: Any, spec: TensorSpec) -> tuple[int, ...]:
    """The request's ``shape`` for input ``spec``: its rank, its fixed dimensions and at
    most :data:`MAX_DIMENSION` in a free one, so that a shape holding no value (``[0,
    2**62]``) cannot overflow numpy's reshape of the empty data."""
    if type(raw) is list and len(raw) == spec.rank:  # the usual request, checked quickly
        for got, fixed in zip(raw, spec.shape):  # noqa: B905 (lengths checked)
            if (
                type(got) is not int
                or got < 0
                or (got != fixed and (fixed is not None or got > MAX_DIMENSION))
            ):
                break
        else:
            return tuple(raw)
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw)
    ):
        raise ApiError(
            400, "shape_mismatch", f"`shape` must be a list of non-negative integers, got {raw!r}"
        )
    if len(raw) != spec.rank:
        raise ApiError(
            400, "shape_mismatch", f"input {spec.name!r} has rank {spec.rank}, got shape {raw}"
        )
    for axis, (got, fixed) in enumerate(zip(raw, spec.shape, strict=True)):
        if got != fixed and (fixed is not None or got > MAX_DIMENSION):
            rule = f"be {fixed}" if fixed is not None else f"be at most {MAX_DIMENSION}"
            raise ApiError(
                400,
                "shape_mismatch",
                f"input {spec.name!r} has shape {_dims(spec)}: dimension {axis} of `shape` "
                f"must {rule}, got {got}",
            )
    return tuple(raw)


def _shown(value: Any) -> str:
    """A JSON value for a message, without converting a large one whole."""
    if isinstance(value, list):
        return f"an array of length {len(value)}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return repr(value)  # a number or a boolean


def _parameters(raw: Any, where: str) -> dict[str, Any]:
    """A ``parameters`` object (absent or ``null``: none)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid_request", f"`{where}` must be an object, got {_shown(raw)}")
    return raw


def _check_output_parameters(output: dict[str, Any], where: str) -> None:
    """Refuse a requested output's parameter that would change what the output holds.

    ``classification`` (tritonclient's ``class_count``) asks for the top classes as
    labels: it was dropped, and its client got the raw probabilities in their place.
    ``binary_data``, which tritonclient sends with every requested output, only asks
    for the encoding: the answer stays JSON, which every client reads."""
    params = _parameters(output.get("parameters"), where)
    if "classification" in params:
        raise ApiError(
            400,
            "unsupported_parameter",
            f"`{where}.classification` is not supported (got {_shown(params['classification'])}"
            f" for output {output['name']!r}): request the output without it and rank its "
            "values",
        )


def _output_names(wanted: Any, signature: Signature) -> list[str] | None:
    """The request's ``outputs`` as names (absent: ``None``, all), each the signature's
    and named once: a repeat was answered again, so 8 MiB of ``{"name": ...}`` entries
    asked for a ~27 GB answer, built in memory before it was sent."""
    if wanted is None:
        return None
    if not isinstance(wanted, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in wanted
    ):
        raise ApiError(400, "invalid_request", '`outputs` must be a list of {"name": ...}')
    known = {o.name for o in signature.outputs}
    names = [o["name"] for o in wanted]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ApiError(
            400, "unknown_output", f"unknown outputs {unknown}; the model has {sorted(known)}"
        )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ApiError(400, "invalid_request", f"output {name!r} requested more than once")
        seen.add(name)
    for i, output in enumerate(wanted):
        _check_output_parameters(output, f"outputs[{i}].parameters")
    return names


def decode_infer_request(
    body: bytes, header_length: int | None, signature: Signature, *, max_rows: int
) -> tuple[str, np.ndarray, list[str] | None, str | None]:
    """Turn an OIP request (JSON or binary extension) into ``(id, rows, output names,
    unit key)``; the unit key (request ``parameters.unit_key``) makes live splits sticky.

    A ``shape`` of more than ``max_rows`` rows is refused (413 ``batch_too_large``) before
    its data is converted: an 8 MiB body declaring 493k rows held the event loop 1.2 s."""
    if header_length is None:
        json_part, binary = body, b""
    else:
        if not 0 < header_length <= len(body):
            raise ApiError(
                400,
                "invalid_binary",
                f"Inference-Header-Content-Length {header_length} does not fit a "
                f"body of {len(body)} bytes",
            )
        json_part, binary = body[:header_length], body[header_length:]
    req = parse_json_object(json_part)
    request_id = _request_id(req.get("id"))
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(400, "missing_input", "`inputs` must be a non-empty list")
    if len(inputs) != 1:
        raise ApiError(
            400,
            "unknown_input",
            f"the model takes one input {signature.input.name!r}, got {len(inputs)}",
        )
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise ApiError(400, "invalid_request", "each input must be an object")
    name = tensor.get("name")
    if name != signature.input.name:
        raise ApiError(
            400,
            "unknown_input",
            f"unknown input {name!r}; the model's input is {signature.input.name!r}",
        )
    shape = _shape(tensor.get("shape"), signature.input)
    if shape[0] > max_rows:
        raise ApiError(
            413,
            "batch_too_large",
            f"input {name!r} must have at most {max_rows} rows, got {shape[0]}",
        )
    expected = datatype_of(signature.input.dtype)
    datatype = tensor.get("datatype")
    if datatype != expected:
        raise ApiError(
            400, "dtype_mismatch", f"input {name!r} has datatype {expected}, got {datatype!r}"
        )
    params = _parameters(tensor.get("parameters"), "inputs[0].parameters")
    size = math.prod(shape)
    if "binary_data_size" in params:
        nbytes = params["binary_data_size"]
        dtype = OIP_DATATYPES[expected]
        if not isinstance(nbytes, int) or nbytes != size * dtype.itemsize or nbytes > len(binary):
            raise ApiError(
                400,
                "invalid_binary",
                f"binary_data_size {nbytes!r} does not match shape {list(shape)} of "
                f"{expected} ({size * dtype.itemsize} bytes) or the bytes sent",
            )
        if nbytes != len(binary):
            raise ApiError(400, "invalid_binary", "trailing bytes after the binary tensor")
        array = np.frombuffer(binary, dtype=dtype, count=size).reshape(shape)
    else:
        if binary:
            raise ApiError(400, "invalid_binary", "binary bytes sent but no binary_data_size")
        data = tensor.get("data")
        if not isinstance(data, list):
            raise ApiError(400, "invalid_request", "`data` must be a list of numbers")
        if size and _more_values_than(data, size):  # before numpy reads them all
            raise ApiError(
                400,
                "shape_mismatch",
                f"`shape` {list(shape)} needs {size} values, `data` has more entries",
            )
        try:
            array = np.asarray(data)
        except ValueError as exc:
            raise ApiError(400, "shape_mismatch", f"`data` is ragged: {exc}") from exc
        # numpy reads `true` among numbers as 1: look for one when the text has one
        maybe_bool = json_part.count(b"true") or json_part.count(b"false")  # `in`: 2x slower
        if array.dtype.kind not in "iuf" or (maybe_bool and has_bool(data)):
            raise ApiError(
                400,
                "dtype_mismatch",
                f"`data` must hold only numbers for {expected}, got {array.dtype.kind!r}"
                " values (strings, booleans or nulls)",
            )
        if array.size != size:
            raise ApiError(
                400,
                "shape_mismatch",
                f"`shape` {list(shape)} needs {size} values, `data` has {array.size}",
            )
        array = array.reshape(shape)
    names = _output_names(req.get("outputs"), signature)
    params = _parameters(req.get("parameters"), "parameters")
    unit = params.get("unit_key")
    if unit is not None and not (
        isinstance(unit, str) and 0 < len(unit) <= MAX_UNIT_KEY_LENGTH and unit.isprintable()
    ):
        raise ApiError(
            400,
            "invalid_request",
            f"`parameters.unit_key` must be a printable string of 1–{MAX_UNIT_KEY_LENGTH} "
            "characters",
        )
    return request_id, array, names, unit
