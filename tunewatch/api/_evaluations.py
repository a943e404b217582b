"""Evaluation results per model and version: drift, decay, estimates, labels, telemetry."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse

from tunewatch._auth import Principal
from tunewatch._drift_report import DRIFT_REPORT_HEADERS
from tunewatch._evaluation import Evaluator
from tunewatch.api._context import RowId, VersionFilter, context
from tunewatch.api._models import Limit, Operator, Reader, require
from tunewatch.api._route import ApiRoute
from tunewatch.store import EvaluationRow

router = APIRouter(prefix="/v1", route_class=ApiRoute)
Kind = Literal["drift", "decay", "estimate", "labels", "telemetry"]


def evaluation_json(e: EvaluationRow) -> dict[str, Any]:
    out = asdict(e)
    out["created_at"] = e.created_at.isoformat()
    out["window_end"] = e.window_end.isoformat()
    out["window_start"] = e.window_start.isoformat() if e.window_start else None
    return out


def _history(
    request: Request, model: str, kind: str | None, version: int | None, limit: int
) -> list[EvaluationRow]:
    store = context(request).runtime.store
    store.get_model(model)
    return store.list_evaluations(model, kind=kind, version=version, limit=limit)


@router.get("/models/{model}/evaluations")
def list_evaluations(
    model: str,
    request: Request,
    _: Reader,
    kind: Kind | None = None,
    version: VersionFilter = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    rows = _history(request, model, kind, version, limit)
    return {"evaluations": [evaluation_json(r) for r in rows]}


def _kind_route(kind: str) -> Any:
    def route(
        model: str,
        request: Request,
        _: Reader,
        version: VersionFilter = None,
        limit: Limit = 50,
    ) -> dict[str, Any]:
        rows = _history(request, model, kind, version, limit)
        return {
            "model": model,
            "kind": kind,
            "latest": evaluation_json(rows[0]) if rows else None,
            "history": [evaluation_json(r) for r in rows],
        }

    route.__name__ = f"get_{kind}"
    route.__doc__ = f"The latest {kind} evaluation of the model (and its history, newest first)."
    return route


for _kind in ("drift", "decay", "estimate", "labels", "telemetry"):
    router.add_api_route(f"/models/{{model}}/{_kind}", _kind_route(_kind), methods=["GET"])


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
    responses={422: {"description": "`report_unavailable`: evidently could not build it"}},
)
async def drift_report(
    model: str,
    evaluation_id: RowId,
    request: Request,
    _: Annotated[Principal, Depends(require("read"))],
) -> HTMLResponse:
    """evidently's HTML report of a drift evaluation's window (built once, then stored)."""
    evaluator = context(request).evaluator
    html = await run_in_threadpool(evaluator.drift_report, model, evaluation_id)
    return HTMLResponse(html, headers=DRIFT_REPORT_HEADERS)
