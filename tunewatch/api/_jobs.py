"""Re-tuning jobs: queue one by hand, follow its progress, cancel it."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from tunewatch._actions import ActionOutcome
from tunewatch._objective_display import recorded, recorded_params
from tunewatch.api._context import Reason, RowId, context
from tunewatch.api._errors import ApiError
from tunewatch.api._listing_limit import BUSY_RESPONSES, ListingRoute
from tunewatch.api._models import (
    ALL_WHEN_EMPTY,
    Filter,
    Limit,
    Operator,
    Reader,
    SmallRowCursor,
    empty_is_none,
    paged,
)
from tunewatch.api._route import ApiRoute
from tunewatch.store import JobRow

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", route_class=ApiRoute)
JobStatus = Annotated[
    Literal["queued", "running", "succeeded", "failed", "cancelled"] | None,
    BeforeValidator(empty_is_none),
    ALL_WHEN_EMPTY,
]


class RetuneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    reason: Reason = "manual"


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    reason: Reason  # as a rollback's or a promotion's: the audit log says why


def job_json(j: JobRow) -> dict[str, Any]:
    """The job's row, with the objective it tunes (``objective``: ``null`` for a job that
    recorded none) and its parameters (``objective_params``: a cost matrix, a threshold;
    ``null`` for a job that recorded none), and its best value as that objective's
    (``best_score``: a ROC AUC of 0.745 where ``best_value``, the loss its study
    minimises, is -0.745)."""
    out = asdict(j)
    for key in ("created_at", "started_at", "heartbeat_at", "finished_at"):
        out[key] = out[key].isoformat() if out.get(key) else None
    out["objective"], out["best_score"] = recorded(j)
    out["objective_params"] = recorded_params(j)
    return out


def list_jobs(
    request: Request,
    _: Reader,
    model: Filter = None,
    status: JobStatus = None,
    limit: Limit = 100,
    before_id: SmallRowCursor = None,
) -> dict[str, Any]:
    """Jobs, newest first (by id, the order they were queued in); ``next``: the
    ``before_id`` of the next older page, null on the last."""
    read = context(request).runtime.store.list_jobs(
        model=model, status=status, limit=limit + 1, before_id=before_id
    )
    jobs, after = paged(read, limit, lambda j: j.id)
    return {"jobs": [job_json(j) for j in jobs], "next": after}


# limited as the evaluation listings are (:class:`ListingRoute`): whole rows, specs and all
router.add_api_route(
    "/jobs",
    list_jobs,
    methods=["GET"],
    responses=BUSY_RESPONSES,
    route_class_override=ListingRoute,
)


@router.get("/jobs/{job_id}")
def get_job(job_id: RowId, request: Request, _: Reader) -> dict[str, Any]:
    """A job with its progress while it runs: the trials done (``trials``, of them
    ``cost_rejected``) of ``max_trials``, the best value so far (``best_value``, a loss:
    lower is better; ``best_score``, the same as the value of ``objective``), and the wall
    and CPU seconds its study spent (``wall_s``, ``cpu_s``, as its workers last recorded
    them after a trial) against its time budget (``wall_time_s``, ``cpu_time_s``;
    ``null`` for none)."""
    return job_json(context(request).runtime.store.get_job(job_id))


@router.post(
    "/jobs/{job_id}/cancel",
    responses={
        404: {"description": "No job of this id (`job_not_found`)."},
        409: {
            "description": "The job had finished (`job_finished`, the message naming how): "
            "it keeps its state."
        },
    },
)
def cancel_job(
    job_id: RowId, body: CancelRequest, request: Request, principal: Operator
) -> dict[str, Any]:
    """Cancel a queued or running job: it is finished as ``cancelled`` at once (its slot
    of ``tuning.max_concurrent_jobs`` free, its ``error`` naming who cancelled it and
    why), audited as ``cancel_job`` in the same transaction; its workers stop after their
    running trial and register nothing. The daemon's log gets one INFO line for it, the
    caller's name and reason quoted, as a stage change's."""
    store = context(request).runtime.store
    job = store.cancel_job(job_id, actor=principal.name, reason=body.reason)
    logger.info(
        "job=%d model=%s cancelled by %r: %r", job.id, job.model, principal.name, body.reason
    )
    return {"status": "cancelled", "job": job_json(job)}


@router.post(
    "/models/{model}/retune",
    status_code=202,
    responses={
        409: {
            "description": "No job was queued (the request is recorded all the same), "
            "the code says why: `cooldown` (the model's cool-down), `quota` (the "
            "concurrent tuning jobs), `no_trigger` (the model's triggers configure no "
            "`on: manual, do: retune`)."
        }
    },
)
async def retune(
    model: str, body: RetuneRequest, request: Request, principal: Operator
) -> dict[str, Any]:
    """Queue a manual re-tuning job (subject to the cool-down and the job quota): 202
    with the job queued now (``taken``) or before (``duplicate``); 409 when none was."""
    ctx = context(request)
    # an unknown model is the dispatcher's NotFoundError (404), read in the threadpool: a
    # read here held the event loop, every request with it, while the database was slow
    outcome = await run_in_threadpool(
        ctx.dispatcher.handle, model, "manual", {"reason": body.reason}, actor=principal.name
    )
    if outcome.job_id is None:  # recorded by the dispatcher, as a queued one is
        raise _not_queued(model, outcome)
    return {
        "action": outcome.action,
        "status": outcome.status,
        "reason": outcome.reason,
        "job": outcome.job_id,
    }


def _not_queued(model: str, outcome: ActionOutcome) -> ApiError:
    """409 for a manual retune that queued no job, its code the cause."""
    if outcome.status == "suppressed":
        # "error": a conflict with stored data other than the quota and the cool-down
        code = outcome.cause if outcome.cause in ("cooldown", "quota") else "conflict"
        why = outcome.reason
    elif outcome.action == "none":
        code = "no_trigger"
        why = f"{outcome.reason} (its triggers need one `on: manual, do: retune`)"
    else:
        code = "no_trigger"
        why = (
            f"its trigger on manual is `do: {outcome.action}`, not `do: retune` "
            f"(the request was recorded as an event)"
        )
    return ApiError(409, code, f"no retune queued for {model!r}: {why}")
