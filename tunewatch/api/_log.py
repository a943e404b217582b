"""The ``/v1`` routes reading the daemon's logs: its events and its audit log, each paged
newest first with a ``before_id`` cursor (split from :mod:`tunewatch.api._models`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tunewatch.api._audit_limit import BUSY_RESPONSES, AuditRoute
from tunewatch.api._context import context
from tunewatch.api._models import Filter, Limit, Reader, RowCursor, SmallRowCursor, paged
from tunewatch.api._route import ApiRoute

router = APIRouter(prefix="/v1", route_class=ApiRoute)


@router.get("/events")
def list_events(
    request: Request,
    _: Reader,
    model: Filter = None,
    type: Filter = None,
    limit: Limit = 100,
    before_id: RowCursor = None,
) -> dict[str, Any]:
    """Events, newest first (by id, the order they were recorded in); ``next``: the
    ``before_id`` of the next older page, null on the last."""
    read = context(request).runtime.store.list_events(
        model=model, type=type, limit=limit + 1, before_id=before_id
    )
    events, after = paged(read, limit, lambda e: e.id)
    return {
        "events": [{**asdict(e), "created_at": e.created_at.isoformat()} for e in events],
        "next": after,
    }


# re-hashing the whole chain costs with the log, not the page: only when asked
Verify = Annotated[
    bool,
    Query(
        description="`true`: verify the whole hash chain and report `chain_intact` and "
        "`chain_break`; absent or `false`: both are null (not checked)."
    ),
]


def audit_log(
    request: Request,
    _: Reader,
    limit: Limit = 100,
    verify: Verify = False,
    before_id: SmallRowCursor = None,
) -> dict[str, Any]:
    """A page of the audit log, newest first (ids ascend in append order); ``next``: the
    ``before_id`` of the next older page, null on the last, so the log is read back to its
    first entry (one a ``chain_break`` names included). The chain is verified (every entry
    re-hashed, a scan of the whole log) only with ``?verify=true``, one such request at a
    time in a process (another is 429 ``audit_busy``: :class:`AuditRoute`); a plain
    ``def`` route, so FastAPI runs it in its threadpool, off the event loop."""
    store = context(request).runtime.store
    entries, after = paged(
        store.audit_log(limit=limit + 1, before_id=before_id), limit, lambda e: e.id
    )
    intact: bool | None = None
    chain_break: dict[str, Any] | None = None
    if verify:
        broken = store.verify_audit()
        intact = broken is None
        chain_break = None if broken is None else asdict(broken)
    return {
        "entries": [{**asdict(e), "at": e.at.isoformat()} for e in entries],
        "chain_intact": intact,
        "chain_break": chain_break,
        "next": after,
    }


# a verification takes the process's one slot (AuditRoute); a plain page does not
router.add_api_route(
    "/audit",
    audit_log,
    methods=["GET"],
    responses=BUSY_RESPONSES,
    route_class_override=AuditRoute,
)
