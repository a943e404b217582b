"""Evaluation results per model and version: drift, decay, estimates, labels, telemetry.

The listings answer up to 10,000 whole evaluations, tens of MB: their JSON is written by
orjson in the worker thread, from each row's fields and its payload as read. Each payload
was deep-copied (``asdict``), then validated and encoded again by FastAPI, the encoding on
the event loop: 10,000 rows of a year-old store took 13-25 s, now 2-5 s, most of it the
store's read. At most a few run at once in a process (:mod:`tunewatch.api._listing_limit`).
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from tunewatch._auth import Principal
from tunewatch._drift_columns_shown import DRIFT_FEATURES, MAX_DRIFT_FEATURES
from tunewatch._drift_report import DRIFT_REPORT_HEADERS, drift_report_file
from tunewatch._drift_report_builds import BUSY_CODE, MAX_BUILDS_IN_PROGRESS, ReportBusyError
from tunewatch._evaluation import Evaluator
from tunewatch.api._context import RowId, VersionFilter, ascii_digits, context
from tunewatch.api._errors import describe, error_response
from tunewatch.api._listing_limit import BUSY_RESPONSES, ListingRoute
from tunewatch.api._models import Limit, Operator, Reader, RowCursor, paged, require
from tunewatch.api._route import ApiRoute
from tunewatch.store import EvaluationRow

router = APIRouter(prefix="/v1", route_class=ApiRoute)
# the kinds an evaluation run stores, and the drift reports built of its drift verdicts
Kind = Literal["drift", "decay", "estimate", "labels", "telemetry", "drift_report"]
# the features a drift report shows, bounded as the dashboard's drift heatmap's rows
ReportFeatures = Annotated[int, BeforeValidator(ascii_digits), Query(ge=1, le=MAX_DRIFT_FEATURES)]


_FIELDS = tuple(f.name for f in fields(EvaluationRow))


def evaluation_json(e: EvaluationRow) -> dict[str, Any]:
    """``e`` as the API answers it: every field in the row's order, the times in ISO 8601,
    the payload the row's own (not copied: nothing changes it)."""
    out = {name: getattr(e, name) for name in _FIELDS}
    out["created_at"] = e.created_at.isoformat()
    out["window_end"] = e.window_end.isoformat()
    out["window_start"] = e.window_start.isoformat() if e.window_start else None
    return out


def _listing(body: dict[str, Any]) -> Response:
    """A listing's 200: ``body`` as JSON, as FastAPI would have answered it."""
    try:
        content = orjson.dumps(body)
    except orjson.JSONEncodeError:
        # a payload integer beyond 64 bits, which orjson refuses (a payload is any JSON
        # the store wrote; none is expected to hold one)
        content = json.dumps(
            body, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
    return Response(content, media_type="application/json")


def _history(
    request: Request,
    model: str,
    kind: str | None,
    version: int | None,
    limit: int,
    before_id: int | None,
) -> tuple[list[EvaluationRow], int | None]:
    """A page of the model's evaluations, newest first, and the ``before_id`` of the next
    older page (``None`` on the last). ``version`` per kind: for ``telemetry`` the rows
    that measured it (a run measures every version that served, challengers included, and
    is stored under the champion of the run), for the other kinds the rows of that
    champion; the rows come whole (:meth:`Store.list_evaluations`)."""
    store = context(request).runtime.store
    store.get_model(model)
    rows = store.list_evaluations(
        model, kind=kind, version=version, before_id=before_id, limit=limit + 1
    )
    page, after = paged(rows, limit, lambda e: e.id)
    return list(page), after


def list_evaluations(
    model: str,
    request: Request,
    _: Reader,
    kind: Kind | None = None,
    version: VersionFilter = None,
    limit: Limit = 100,
    before_id: RowCursor = None,
) -> Response:
    """The model's evaluations, newest first (by window); ``version``: see the kind
    routes; ``next``: the ``before_id`` of the next older page, null on the last (a
    ``before_id`` that is no evaluation of the model is 404 ``evaluation_not_found``)."""
    rows, after = _history(request, model, kind, version, limit, before_id)
    return _listing({"evaluations": [evaluation_json(r) for r in rows], "next": after})


def _add_listing(path: str, endpoint: Any) -> None:
    """Add a listing route: limited (:class:`ListingRoute`), its 200 documented as the
    JSON object it answers (the endpoint returns it already encoded)."""
    router.add_api_route(
        path,
        endpoint,
        methods=["GET"],
        response_model=dict[str, Any],
        responses=BUSY_RESPONSES,
        route_class_override=ListingRoute,
    )


_add_listing("/models/{model}/evaluations", list_evaluations)


def _kind_route(kind: str) -> Any:
    def route(
        model: str,
        request: Request,
        _: Reader,
        version: VersionFilter = None,
        limit: Limit = 50,
        before_id: RowCursor = None,
    ) -> Response:
        rows, after = _history(request, model, kind, version, limit, before_id)
        latest = rows[:1]
        if before_id is not None:  # an older page: the latest is still the newest
            latest = _history(request, model, kind, version, 1, None)[0]
        return _listing(
            {
                "model": model,
                "kind": kind,
                "latest": evaluation_json(latest[0]) if latest else None,
                "history": [evaluation_json(r) for r in rows],
                "next": after,
            }
        )

    route.__name__ = f"get_{kind}"
    route.__doc__ = (
        f"The latest {kind} evaluation of the model and a page of its history, newest "
        "first; `next`: the `before_id` of the next older page, null on the last. "
        + _VERSION_MEANS[kind]
    )
    return route


# what `?version=` selects, per kind
_VERSION_MEANS = {
    "telemetry": "`version`: the runs that measured that version (a run measures every "
    "version that served in its window, challengers included, and is stored under the "
    "champion of the run); each row holds every version it measured.",
    **{
        k: "`version`: the runs that evaluated that version as champion."
        for k in ("drift", "decay", "estimate", "labels")
    },
}


for _kind in ("drift", "decay", "estimate", "labels", "telemetry"):
    _add_listing(f"/models/{{model}}/{_kind}", _kind_route(_kind))


@router.post("/models/{model}/evaluate")
async def evaluate_now(model: str, request: Request, principal: Operator) -> dict[str, Any]:
    """Run the model's evaluation now (it also runs on its schedule); the action events
    its policies' events set off name the caller."""
    evaluator = context(request).evaluator
    rows = await run_in_threadpool(_evaluate, evaluator, model, principal.name)
    return {"evaluations": [evaluation_json(r) for r in rows]}


def _evaluate(evaluator: Evaluator, model: str, actor: str) -> list[EvaluationRow]:
    """Evaluate ``model``; in a process that does not hold the scheduler lease, drop the
    figures the run exported (whether it finished or failed). Only the leader exports
    them: a scoring replica (``scheduler.enabled: false``) a load balancer sent the
    request to has no lease tick to drop them, and the alert rules' ``max by (model)``
    read its alarm long after the leader's went back to 0."""
    metrics = evaluator.metrics
    try:
        return evaluator.evaluate(model, actor=actor)
    finally:
        if not metrics.exports_evaluation:
            metrics.clear_evaluation()


@router.get(
    "/models/{model}/evaluations/{evaluation_id}/report",
    response_class=HTMLResponse,
    responses={
        410: {
            "description": "`window_purged`: every request the verdict judged was deleted "
            "since (by retention): there is nothing to report on"
        },
        422: {"description": "`report_unavailable`: evidently could not build it"},
        429: {
            "description": f"`{BUSY_CODE}`: the report is not built yet and "
            f"{MAX_BUILDS_IN_PROGRESS} reports are being built in this daemon already; "
            "retry after `Retry-After` seconds",
            "headers": {
                "Retry-After": {
                    "description": "seconds to wait before asking again",
                    "schema": {"type": "integer"},
                }
            },
        },
    },
)
async def drift_report(
    model: str,
    evaluation_id: RowId,
    request: Request,
    _: Annotated[Principal, Depends(require("read"))],
    features: ReportFeatures = DRIFT_FEATURES,
) -> Response:
    """evidently's HTML report of a drift evaluation's window (built once, then stored
    gzip-compressed: sent so, `Content-Encoding: gzip`, when `Accept-Encoding` allows
    gzip, else decompressed). It shows the prediction and the label, then at most
    `features` features (1-1000, default 50): those the verdict drifted, then the most
    drifted by the verdict's scores, and says first how many columns it left out; only
    the default's report is stored, another `features` is built on each request (when it
    shows other columns than the default's). At most a few reports are built at once in
    the daemon: one that needs building beyond them is 429 `report_busy` with
    `Retry-After`; a stored one is always served. A verdict whose requests were all
    deleted since (by retention), unless its report was built before (and not removed by
    retention since), is 410 `window_purged`."""
    evaluator = context(request).evaluator
    try:
        stored = await run_in_threadpool(
            drift_report_file,
            evaluator.store,
            evaluator.artefacts,
            evaluator.config,
            evaluator.report_baseline,
            model,
            evaluation_id,
            features=features,
        )
    except ReportBusyError as exc:
        response = error_response(*describe(exc))
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    # the body depends on the request's Accept-Encoding (a compressed report's does)
    headers = {**DRIFT_REPORT_HEADERS, "Vary": "Accept-Encoding"}
    if stored.encoding == "gzip" and accepts_gzip(request.headers.get("accept-encoding", "")):
        return HTMLResponse(stored.data, headers={**headers, "Content-Encoding": "gzip"})
    return HTMLResponse(stored.html(), headers=headers)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header allows gzip (RFC 9110 12.5.3): named with a
    weight above 0, else ``*`` so; no header, or an empty one, allows only identity."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if not coding:
            continue
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0  # a malformed weight: not taken as consent
        weights[coding.lower()] = weight
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0
