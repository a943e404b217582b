"""The ``/v1`` routes reading the daemon's logs: its events and its audit log, each paged
newest first with a ``before_id`` cursor (split from :mod:`tunewatch.api._models`)."""

from __future__ import annotations

import difflib
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BeforeValidator

from tunewatch._event_types import RECORDED, is_recorded
from tunewatch.api._audit_limit import BUSY_RESPONSES, AuditRoute
from tunewatch.api._context import context
from tunewatch.api._errors import ApiError
from tunewatch.api._models import (
    Filter,
    Limit,
    Reader,
    RowCursor,
    SmallRowCursor,
    empty_is_none,
    paged,
)
from tunewatch.api._route import ApiRoute
from tunewatch.store import Store

router = APIRouter(prefix="/v1", route_class=ApiRoute)

_KNOWN_TYPES = ", ".join(f"`{t}`" for t in RECORDED)
# a filter (``?type=``, empty: all) checked by the route against the types recorded and
# those stored (a type an earlier version recorded), so the schema names no enum
EventTypeFilter = Annotated[
    str | None,
    BeforeValidator(empty_is_none),
    Query(
        description="Empty or absent: all. One of the event types the daemon records: "
        f"{_KNOWN_TYPES}; or a type an earlier version recorded, while the store holds "
        "events of it. Any other is 400 `invalid_request`."
    ),
]


def checked_type(store: Store, type: str | None, model: str | None) -> str | None:
    """``type`` if the daemon records it or the store holds events of it, else 400
    ``invalid_request`` naming it and the types recorded: a misspelt filter matched
    nothing, and an empty list read as "no such event". The store is asked only for a
    type the daemon does not record (:meth:`Store.event_type_stored`)."""
    if type is None or is_recorded(type) or store.event_type_stored(type, model=model):
        return type
    near = difflib.get_close_matches(type, RECORDED, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise ApiError(
        400,
        "invalid_request",
        "query.type: must be one of the event types the daemon records "
        f"({', '.join(repr(t) for t in RECORDED)}) or one the store holds events of, "
        f"got {type[:80]!r}{hint}",
    )


@router.get("/events")
def list_events(
    request: Request,
    _: Reader,
    model: Filter = None,
    type: EventTypeFilter = None,
    limit: Limit = 100,
    before_id: RowCursor = None,
) -> dict[str, Any]:
    """Events, newest first (by id, the order they were recorded in); ``next``: the
    ``before_id`` of the next older page, null on the last. ``type`` is one the daemon
    records or one the store holds (:func:`checked_type`), else 400."""
    store = context(request).runtime.store
    read = store.list_events(
        model=model, type=checked_type(store, type, model), limit=limit + 1, before_id=before_id
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
