"""Open Inference Protocol v2: health, metadata and inference (JSON and binary tensors).

Inference is answered by :class:`~tunewatch.api._front.InferenceFront`, a bare ASGI
front that reads the body once, decodes it straight into numpy and answers with orjson,
keeping FastAPI's middleware and parameter machinery off the hot path; it is described
in the OpenAPI document by hand. Health and metadata are plain Starlette routes.

The readiness routes (these and ``/readyz``) check the store in worker threads of their
own (:func:`check_ready`), not in anyio's default pool: label writes, body parsing and
sync handlers can take all 40 of its threads, and a probe waiting behind them (16 s
during a label backfill) took the replica out of service.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from anyio import to_thread
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shadow import InsufficientMemoryError, InvalidInputError, ShadowError, Signature
from tunewatch import __version__
from tunewatch._errors import StoreError
from tunewatch._record_rows import output_record, request_record
from tunewatch._runtime import ServedModel
from tunewatch.api._alert_shutdown import SHUTTING_DOWN_CODE
from tunewatch.api._body import INLINE_JSON_BYTES, off_loop
from tunewatch.api._context import AppContext, authenticate, context
from tunewatch.api._errors import ApiError
from tunewatch.api._oip_request import datatype_of, decode_infer_request
from tunewatch.api._records import same_matrix
from tunewatch.store import RequestRecord, RunTally
from tunewatch.store import Role as OutputRole

#: The code of a request naming a version whose promotion would wait for an approver.
APPROVAL_REQUIRED = "approval_required"


def _is_version(raw: str) -> bool:
    """A version number as a path segment: ASCII digits, few enough for ``int`` (which
    refuses strings past 4,300 digits) and for the store's integers."""
    return raw.isascii() and raw.isdigit() and len(raw) <= 10


def named_version(
    ctx: AppContext, served: ServedModel, raw_version: str | None, *, say_rules: bool = True
) -> int | None:
    """The version a ``/versions/{v}/infer`` path names (``None`` on the model's route),
    once it is found in service (404 ``version_not_found`` otherwise) and may answer
    clients (409 ``approval_required`` otherwise).

    The champion always answers. Another version answers only while promoting it would
    need no approver: serving it goes past the gate a promotion passes, as a live split
    of it would (:mod:`tunewatch._approval_gate` decides both, at line-up build; this
    reads :attr:`ServedModel.named <tunewatch._runtime_lineups.ServedModel.named>`). A
    regulated model's version in shadow, one whose promotion an approver rejected,
    answered any scorer naming it, and the challenger of a held split so answered.
    ``say_rules`` false (a probe, which takes no token): the refusal does not name the
    rules (safe ranges, hyperparameter values)."""
    if raw_version is None:
        return None
    if not _is_version(raw_version):
        raise ApiError(
            404, "version_not_found", f"model {served.row.name!r} has no version {raw_version!r}"
        )
    version = int(raw_version)
    ctx.runtime.signature(served, version)  # raises unless it is in service
    if _answers(served, version):
        return version
    rules = served.named.get(version)
    if rules is None:  # served by a line-up newer than the model this request read
        raise ApiError(
            409,
            APPROVAL_REQUIRED,
            f"version {version} of {served.row.name!r} cannot answer clients until it is "
            "promoted: whether its promotion waits for an approver is being read again "
            "(its line-up changed); try again",
        )
    if rules and not say_rules:
        raise ApiError(
            409,
            APPROVAL_REQUIRED,
            f"version {version} of {served.row.name!r} answers no requests naming it until "
            "it is promoted: its promotion waits for an approver",
        )
    if rules:
        raise ApiError(
            409,
            APPROVAL_REQUIRED,
            f"version {version} of {served.row.name!r} cannot answer clients until it is "
            f"promoted: its promotion waits for an approver (rules: {'; '.join(rules)})",
        )
    return version


def _answers(served: ServedModel, version: int) -> bool:
    """Whether ``version`` (in service) answers clients naming it: the champion does, and
    another version whose promotion would need no approver (:func:`named_version`)."""
    champion = served.deployment.lineup.champion
    return (champion is not None and champion.version == version) or served.named.get(version) == ()


def encode_outputs(
    outputs: dict[str, np.ndarray],
    names: list[str] | None,
    *,
    version: int | None = None,
    checked: str | None = None,
) -> list[dict[str, Any]]:
    """The named outputs (default all) as OIP tensors; ``version`` answered them. Output
    ``checked`` was already found finite (the primary, by :func:`shadow.check_output`).

    Names were checked against the signature the request was read with; a live split's
    arm may still lack one (its outputs can be named otherwise than the champion's)."""
    encoded = []
    for name in names or list(outputs):
        value = outputs.get(name)
        if value is None:
            raise ApiError(
                400,
                "unknown_output",
                f"unknown output {name!r}; version {version} that answered has {sorted(outputs)}",
            )
        if value.dtype.kind == "f" and name != checked and not np.isfinite(value).all():
            raise ApiError(
                422, "non_finite_output", f"the model produced non-finite values in output {name!r}"
            )
        encoded.append(
            {
                "name": name,
                "datatype": datatype_of(value.dtype),
                "shape": list(value.shape),
                "data": value.ravel(),
            }
        )
    return encoded


async def infer(
    ctx: AppContext,
    model: str,
    raw_version: str | None,
    header_length: str | None,
    body: bytes,
) -> bytes:
    """Score one OIP request: validate, champion answers, record durably, shadow.

    The champion scores on the event loop; any other version (a live split's arm, a
    version named by its route) scores in a worker thread, so a slow challenger does not
    hold the champion's answers behind it.

    Called by :class:`~tunewatch.api._front.InferenceFront` with the raw pieces of the
    HTTP request once it has found the caller may score; returns the JSON body. Errors
    are raised as our own exceptions.
    """
    served = ctx.runtime.model(model)
    version = named_version(ctx, served, raw_version)
    length = None
    if header_length is not None:
        if not (header_length.isascii() and header_length.isdigit() and len(header_length) < 19):
            raise ApiError(
                400, "invalid_binary", "Inference-Header-Content-Length must be an integer"
            )
        length = int(header_length)
    signature = ctx.runtime.signature(served, version)  # a named version reads its own
    max_rows = ctx.runtime.config.server.max_batch_rows
    if (len(body) if length is None else length) <= INLINE_JSON_BYTES:  # the usual request
        decoded = decode_infer_request(body, length, signature, max_rows=max_rows)
    else:  # read in a worker thread: 8 MiB of JSON held the event loop 0.3-1.6 s
        decoded = await off_loop(decode_infer_request, body, length, signature, max_rows=max_rows)
    request_id, array, names, unit_key = decoded
    x = ctx.runtime.validate(served, array, signature)
    choice = ctx.runtime.choose(served, x, version=version, unit_key=unit_key)
    answering = choice.version.version
    role: OutputRole = "champion" if choice.version.role == "champion" else "challenger"
    try:
        if role == "champion":  # the hot path, inline: faster than a thread
            scored = ctx.runtime.run(served, choice)
        else:  # a split's arm or a named challenger, in a worker thread: one running up to
            # scoring.run_timeout_s on the loop held every request, the champion's 2 ms for 1.8 s
            scored = await off_loop(ctx.runtime.run, served, choice)
        encoded = encode_outputs(
            scored.outputs,
            names,
            version=answering,
            checked=scored.version.model.signature.primary_output,
        )
    except ShadowError as exc:
        # the model's fault, not the input's nor the host's (no memory for this batch now:
        # a rollback would not give it any; counted in tunewatch_http_errors_total)
        if not isinstance(exc, InvalidInputError | InsufficientMemoryError):
            _count_run(ctx, model, answering, role, failed=exc.code)
        raise
    except ApiError as exc:
        # a non-finite output besides the primary, or a split's arm lacking an output the
        # champion's signature has (the request was read against it): the model's fault
        if exc.code == "non_finite_output" or (
            exc.code == "unknown_output" and version is None and role == "challenger"
        ):
            _count_run(ctx, model, answering, role, failed=exc.code)
        raise
    ctx.runtime.series.runs(model, answering, role).inc()
    retried = False
    if ctx.recording:
        record = request_record(model, request_id, x, unit_key=scored.unit_key)
        try:
            inserted = await ctx.runtime.recorder.record(
                record,
                [
                    output_record(
                        model, request_id, answering, role, scored.primary, scored.latency_s
                    )
                ],
            )
        except StoreError:  # not recorded (503), but run: its run counts, as a failed one
            _count_run(ctx, model, answering, role)
            raise
        if not inserted:  # a retry is answered, the stored record standing; not shadowed
            retried = await run_in_threadpool(_is_retry, ctx, record, answering)
            if not retried:
                raise ApiError(
                    409,
                    "duplicate_request_id",
                    f"request id {request_id!r} was already recorded for model {model!r}",
                )
    if ctx.shadowing and not retried:
        ctx.runtime.shadow(model, request_id, x, scored.challengers)
    return orjson.dumps(
        {
            "model_name": model,
            "model_version": str(scored.version.version),
            "id": request_id,
            "outputs": encoded,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def _is_retry(ctx: AppContext, record: RequestRecord, version: int) -> bool:
    """Whether the request stored under ``record``'s id is this request sent again, to be
    answered as scored now (the model is deterministic): a request scored here (not a
    mirror record) of the same inputs, compared as stored (float32, as a mirror replay
    is), answered by ``version`` when its answer is stored. A retry is what a 503
    ``store_unavailable`` asks for, and the commit it answered may have reached the
    database (the connection lost before its answer came back); a copy sent while the
    first copy's commit ran is told its id is stored once that commit ended. Read only
    for an id already stored: a new one costs nothing more.

    The stored answer is the ``champion`` output; with none, a ``challenger`` one (a live
    split's arm, a version the request named), which the stored shadow runs cannot be
    told from by role: a retry answered by a version that shadowed the stored request is
    taken too, answered what that run stored (the same rows, the same version)."""
    store = ctx.runtime.store
    stored = store.get_request(record.model, record.request_id)
    if stored is None or stored.source != "infer" or not same_matrix(stored, record, "inputs"):
        return False
    answers = store.get_outputs(record.model, record.request_id)
    champion = {o.version for o in answers if o.role == "champion"}
    if champion:
        return champion == {version}
    challengers = {o.version for o in answers if o.role == "challenger"}
    return not challengers or version in challengers


def _count_run(
    ctx: AppContext, model: str, version: int, role: OutputRole, *, failed: str | None = None
) -> None:
    """Count a run the recorder will not count from its output: one that failed
    (``failed``: its code; the model's fault, not the input's), exported at once, or one
    whose record was refused or failed (503). The rollback watch reads the champion's
    share of failed runs, ``max_error_rate`` a challenger's (its shadow runs, a live
    split's arm, requests naming it): counting only recorded runs, a store that fell
    behind made 5 failures in 1,000 runs read as 5 in 20."""
    if failed is not None:  # an answered run is exported where it is answered
        ctx.runtime.series.runs(model, version, role).inc()
        ctx.runtime.series.run_failure(model, version, role, failed).inc()
    if ctx.recording:
        ran = RunTally(
            model=model,
            version=version,
            role=role,
            runs=1,
            failures=0 if failed is None else 1,
            last_failure=failed,
        )
        ctx.runtime.recorder.record_outputs((), [ran])


def _tensor_meta(spec: Any) -> dict[str, Any]:
    return {
        "name": spec.name,
        "datatype": datatype_of(spec.dtype),
        "shape": [-1 if d is None else d for d in spec.shape],
    }


async def model_metadata(request: Request) -> Response:
    """A model's metadata: the versions in service that answer clients naming them (not
    one :func:`named_version` refuses) and its champion's signature."""
    ctx = context(request)
    authenticate(request, "score", "read")
    served = ctx.runtime.model(request.path_params["model"])
    versions = sorted(v for v in served.deployment.lineup.versions if _answers(served, v))
    return _metadata(served.row.name, ctx.runtime.signature(served), versions)


async def version_metadata(request: Request) -> Response:
    """A version's metadata: its own signature, the one its requests are read against.

    A handler of its own (not :func:`model_metadata`'s): the HTTP metrics name a plain
    route's template by its endpoint."""
    ctx = context(request)
    authenticate(request, "score", "read")
    served = ctx.runtime.model(request.path_params["model"])
    raw = request.path_params["version"]
    loaded = served.deployment.lineup.find(int(raw)) if _is_version(raw) else None
    if loaded is None:
        raise ApiError(
            404,
            "version_not_found",
            f"model {served.row.name!r} has no version {raw!r} in service",
        )
    return _metadata(served.row.name, loaded.model.signature, [loaded.version])


def _metadata(name: str, signature: Signature, versions: list[int]) -> Response:
    return JSONResponse(
        {
            "name": name,
            "versions": [str(v) for v in versions],
            "platform": "onnxruntime_onnx",
            "inputs": [_tensor_meta(signature.input)],
            "outputs": [_tensor_meta(o) for o in signature.outputs],
        }
    )


async def model_ready(request: Request) -> Response:
    """A model is ready when it has a champion and its requests can be recorded."""
    refuse_while_stopping(request)
    ctx = context(request)
    served = ctx.runtime.model(request.path_params["model"])
    if served.deployment.lineup.champion is None:
        raise ApiError(503, "model_not_ready", f"model {served.row.name!r} has no champion")
    await _recordable(ctx)
    return Response(status_code=200)


def refuse_while_stopping(request: Request) -> None:
    """Raise 503 ``shutting_down`` once the daemon is stopping (``app.state.stopping``,
    set by ``tunewatch serve`` at SIGTERM/SIGINT): a load balancer takes it out of
    rotation while it still serves for ``server.shutdown_delay_s``."""
    if request.app.state.stopping.is_set():
        raise ApiError(
            503,
            SHUTTING_DOWN_CODE,
            "the daemon is shutting down: send requests to another replica",
        )


async def _recordable(ctx: AppContext) -> None:
    """Raise the store's 503 while requests are recorded and cannot be (its database
    cannot be reached, or commits fail: :meth:`Runtime.check_recordable`): a model said
    ready through an outage answered every inference 503."""
    if ctx.recording:
        await check_ready(ctx)


async def check_ready(ctx: AppContext) -> None:
    """:meth:`Runtime.check_recordable` off the event loop (a hung database must not
    stall it), in one of the readiness routes' own worker threads (``ctx.probe_threads``)
    rather than anyio's default pool, which other requests can fill."""
    await to_thread.run_sync(ctx.runtime.check_recordable, limiter=ctx.probe_threads)


async def version_ready(request: Request) -> Response:
    """A version is ready when it is in service, answers clients naming it (409
    ``approval_required`` otherwise, as its inference: :func:`named_version`) and its
    requests can be recorded (a handler of its own, as :func:`version_metadata`)."""
    refuse_while_stopping(request)
    ctx = context(request)
    served = ctx.runtime.model(request.path_params["model"])
    named_version(ctx, served, request.path_params["version"], say_rules=False)
    await _recordable(ctx)
    return Response(status_code=200)


async def server_metadata(request: Request) -> Response:
    return JSONResponse(
        {"name": "tunewatch", "version": __version__, "extensions": ["binary_tensor_data"]}
    )


async def live(request: Request) -> Response:
    return Response(status_code=200)


async def ready(request: Request) -> Response:
    refuse_while_stopping(request)
    await check_ready(context(request))
    return Response(status_code=200)


routes = [
    Route("/v2", server_metadata, methods=["GET"]),
    Route("/v2/health/live", live, methods=["GET"]),
    Route("/v2/health/ready", ready, methods=["GET"]),
    Route("/v2/models/{model}", model_metadata, methods=["GET"]),
    Route("/v2/models/{model}/ready", model_ready, methods=["GET"]),
    Route("/v2/models/{model}/versions/{version}", version_metadata, methods=["GET"]),
    Route("/v2/models/{model}/versions/{version}/ready", version_ready, methods=["GET"]),
]
