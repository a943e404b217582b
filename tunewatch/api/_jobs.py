"""Re-tuning jobs: queue one by hand, follow its progress."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from tunewatch.api._context import Reason, RowId, context
from tunewatch.api._models import (
    ALL_WHEN_EMPTY,
    Filter,
    Limit,
    Operator,
    Reader,
    empty_is_none,
)
from tunewatch.api._route import ApiRoute
from tunewatch.store import JobRow

router = APIRouter(prefix="/v1", route_class=ApiRoute)
JobStatus = Annotated[
    Literal["queued", "running", "succeeded", "failed", "cancelled"] | None,
    BeforeValidator(empty_is_none),
    ALL_WHEN_EMPTY,
]


class RetuneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    reason: Reason = "manual"


def job_json(j: JobRow) -> dict[str, Any]:
    out = asdict(j)
    for key in ("created_at", "started_at", "heartbeat_at", "finished_at"):
        out[key] = out[key].isoformat() if out.get(key) else None
    return out


@router.get("/jobs")
def list_jobs(
    request: Request,
    _: Reader,
    model: Filter = None,
    status: JobStatus = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    rows = context(request).runtime.store.list_jobs(model=model, status=status, limit=limit)
    return {"jobs": [job_json(j) for j in rows]}


@router.get("/jobs/{job_id}")
def get_job(job_id: RowId, request: Request, _: Reader) -> dict[str, Any]:
    """A job with its progress (trials done, best so far, budget) while it runs."""
    return job_json(context(request).runtime.store.get_job(job_id))


@router.post("/models/{model}/retune", status_code=202)
async def retune(
    model: str, body: RetuneRequest, request: Request, principal: Operator
) -> dict[str, Any]:
    """Queue a manual re-tuning job (subject to the cool-down and the job quota)."""
    ctx = context(request)
    # an unknown model is the dispatcher's NotFoundError (404), read in the threadpool: a
    # read here held the event loop, every request with it, while the database was slow
    outcome = await run_in_threadpool(
        ctx.dispatcher.handle, model, "manual", {"reason": body.reason}, actor=principal.name
    )
    return {
        "action": outcome.action,
        "status": outcome.status,
        "reason": outcome.reason,
        "job": outcome.job_id,
    }
