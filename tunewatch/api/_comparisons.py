"""Shadow comparisons: the latest look per challenger, the evidence over time, run now."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from tunewatch.api._context import RowId, context
from tunewatch.api._models import Limit, Operator, Reader
from tunewatch.api._route import ApiRoute
from tunewatch.comparison import ChallengerSummary, ComparisonResult, ComparisonRunner
from tunewatch.store._comparisons import ComparisonLookRow, ComparisonTestRow

router = APIRouter(prefix="/v1", route_class=ApiRoute)


def runner(request: Request) -> ComparisonRunner:
    """The daemon's runner when the context carries one, else one built from it."""
    ctx = context(request)
    existing = getattr(ctx, "comparisons", None)
    if isinstance(existing, ComparisonRunner):
        return existing
    return ComparisonRunner(
        ctx.runtime.store,
        ctx.runtime.config,
        dispatcher=ctx.dispatcher,
        metrics=ctx.runtime.metrics,
        on_lineup_change=ctx.runtime.try_load,
    )


def look_json(look: ComparisonLookRow) -> dict[str, Any]:
    out = asdict(look)
    out["created_at"] = look.created_at.isoformat()
    out["bootstrap_ci"] = list(look.bootstrap_ci) if look.bootstrap_ci else None
    return out


def comparison_json(test: ComparisonTestRow) -> dict[str, Any]:
    out = asdict(test)
    out.pop("state")
    for key in ("created_at", "updated_at", "decided_at"):
        value = getattr(test, key)
        out[key] = value.isoformat() if value is not None else None
    return out


def summary_json(item: ChallengerSummary) -> dict[str, Any]:
    split = None
    if item.split is not None:
        split = {**asdict(item.split), "created_at": item.split.created_at.isoformat()}
    return {
        "test": comparison_json(item.test),
        "latest": look_json(item.look) if item.look is not None else None,
        "correction": item.test.correction,
        "guardrails": None
        if item.guardrails is None
        else {"passed": item.guardrails.passed, "violations": list(item.guardrails.violations)},
        "split": split,
    }


def result_json(result: ComparisonResult) -> dict[str, Any]:
    out = asdict(result)
    out["look"] = look_json(result.look) if result.look is not None else None
    out["detail"] = list(result.detail)
    return out


@router.get("/models/{model}/comparisons")
async def list_comparisons(model: str, request: Request, _: Reader) -> dict[str, Any]:
    """Each challenger's test against the current champion (and the newest rollback
    watch): latest look, multiple-testing correction, guardrails, live-split check."""
    items = await run_in_threadpool(runner(request).summary, model)
    return {"model": model, "comparisons": [summary_json(i) for i in items]}


@router.get("/models/{model}/comparisons/{challenger}/history")
async def comparison_history(
    model: str, challenger: RowId, request: Request, _: Reader, limit: Limit = 10_000
) -> dict[str, Any]:
    """Every look of the challenger's tests, oldest first (how the evidence grew)."""
    looks = await run_in_threadpool(runner(request).history, model, challenger, limit=limit)
    return {"model": model, "challenger": challenger, "history": [look_json(x) for x in looks]}


@router.post("/models/{model}/compare")
async def compare_now(model: str, request: Request, principal: Operator) -> dict[str, Any]:
    """Run the model's comparison loop now (it also runs on its schedule). A promotion or
    rollback the run causes is decided by ``tunewatch`` and names the caller's token as
    ``requested_by`` in what it records."""
    results = await run_in_threadpool(runner(request).run, model, requested_by=principal.name)
    return {"model": model, "results": [result_json(r) for r in results]}
