"""Models, versions, stages, events and the audit log."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query
from pydantic import AfterValidator, BeforeValidator
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from tunewatch import _governance as governance
from tunewatch._approval_rules import check_champion_registration
from tunewatch._auth import Principal
from tunewatch._config import Config
from tunewatch._objective_display import known, score
from tunewatch._reference import Reference
from tunewatch._registry import check_caller_study
from tunewatch._report import build_report, refresh_reports
from tunewatch._runtime import version_or_404
from tunewatch._version_metadata import VersionMetadata
from tunewatch.api._context import RowId, ascii_digits, authenticate, context
from tunewatch.api._errors import ON_FORBIDDEN, ApiError
from tunewatch.api._listing_limit import BUSY_RESPONSES as LISTING_BUSY
from tunewatch.api._listing_limit import ListingRoute
from tunewatch.api._model_bodies import Promote, RegisterVersion, Rollback, StageChange
from tunewatch.api._route import ApiRoute
from tunewatch.api._uploads import decoded_upload
from tunewatch.store import (
    MAX_ID,
    MAX_MODEL_NAME,
    ApprovalRow,
    ModelSummary,
    Role,
    RunTally,
    Store,
    VersionRow,
)
from tunewatch.store._governance import deadline_of

from ._conflict_docs import DECIDING, PENDING, REGISTERING, TO_SERVE, conflicts

router = APIRouter(prefix="/v1", route_class=ApiRoute)


def require(*permissions: str) -> Callable[[Request], Principal]:
    def dependency(request: Request) -> Principal:
        return authenticate(request, *permissions)

    dependency.permissions = permissions  # type: ignore[attr-defined]  # read by ApiRoute
    return dependency


Reader = Annotated[Principal, Depends(require("read"))]
Registrar = Annotated[Principal, Depends(require("register"))]
Operator = Annotated[Principal, Depends(require("operate"))]
Approver = Annotated[Principal, Depends(require("approve"))]
Limit = Annotated[int, BeforeValidator(ascii_digits), Query(ge=1, le=10_000)]

_BEFORE_ID = (
    "Only rows older than the one of this id (exclusive): the `next` of the page before. "
    "`next` is null on the last page."
)
# Keyset cursors, `?before_id=`: a listing is read back to its first row a page at a time
# (only the newest `limit`, at most 10,000, could be read). Audit entries', jobs' and
# approval requests' ids are 32-bit INTEGERs in PostgreSQL (a larger cursor would fail in
# the database as it is cast), those of events and evaluations 64-bit.
SmallRowCursor = Annotated[
    int | None, BeforeValidator(ascii_digits), Query(ge=1, le=MAX_ID, description=_BEFORE_ID)
]
RowCursor = Annotated[
    int | None, BeforeValidator(ascii_digits), Query(ge=1, le=2**63 - 1, description=_BEFORE_ID)
]
# a model's versions are paged by number (32-bit in PostgreSQL, as audit ids)
VersionCursor = Annotated[
    int | None,
    BeforeValidator(ascii_digits),
    Query(
        ge=1,
        le=MAX_ID,
        description="Only versions numbered below this one (exclusive): the `next` of the "
        "page before. `next` is null on the last page.",
    ),
]


def _printable(value: str | None) -> str | None:
    """A model cursor as a name must be spelt: printable (PostgreSQL refuses a NUL in the
    query itself, and no model is named with a control character)."""
    if value is not None and not value.isprintable():
        shown = value if len(value) <= 32 else value[:32] + "..."
        raise ValueError(
            "must hold printable characters only (no control characters, no bidi override "
            f"or isolate characters), as a model's name does, got {shown!r}"
        )
    return value


# models are paged by name: a cursor is spelt as a name (1 to 200 printable characters)
# but need not name a model; one no model could be named is refused as a bad request
ModelCursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_MODEL_NAME,
        description="Only models named after this one (exclusive; names compared code point "
        "by code point): the `next` of the page before. `next` is null on the last page.",
    ),
    AfterValidator(_printable),
]

T = TypeVar("T")
Cursor = TypeVar("Cursor", int, str)
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def _refusals_audited(action: governance.GovernedAction) -> Callable[[Endpoint], Endpoint]:
    """Mark a governance route whose caller's role is refused (403) as audited, as the
    store's refusals of the change itself are (``audit_refusal``): a ``denied_<action>``
    entry naming the caller and the version, approval or model the path names (see
    :data:`~tunewatch.api._errors.ON_FORBIDDEN`)."""

    def hook(request: Request, principal: Principal, message: str) -> None:
        params = request.path_params
        store = context(request).runtime.store
        details: dict[str, Any] = {}
        if "approval_id" in params:
            if not _is_number(params["approval_id"]):
                return  # names no approval: refused as a bad request after the token
            details["approval"] = int(params["approval_id"])
            target = governance.approval_target(store, details["approval"])
        elif "version" in params:
            if not _is_number(params["version"]):
                return
            target = f"{params['model']}/v{int(params['version'])}"
        else:
            target = params["model"]
        governance.audit_denied(
            store,
            action,
            actor=principal.name,
            target=target,
            status=403,
            code="forbidden",
            message=message,
            details=details,
        )

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, ON_FORBIDDEN, hook)
        return endpoint

    return mark


def _is_number(text: str) -> bool:
    """Whether a path's ``text`` is an id or version as the route reads one (``RowId``)."""
    return text.isascii() and text.isdigit() and int(text) <= MAX_ID


def paged(
    rows: Sequence[T], limit: int, row_id: Callable[[T], Cursor]
) -> tuple[Sequence[T], Cursor | None]:
    """The first ``limit`` of ``rows`` (read ``limit + 1``, in the listing's order: newest
    first, or by name) and the cursor of the next page: the last shown row's id (or name)
    when a row past the limit exists, else ``None``."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], row_id(rows[limit - 1])


def empty_is_none(value: object) -> object:
    """An empty query filter (``?type=``) read as none: it matched the empty string, and
    a script whose variable was unset listed nothing, 200, where the dashboard's JSON
    reads the same filter as "all"."""
    return None if value == "" else value


# a list route's filter: ``?name=`` means all, as no filter does; other values are read
# (and a Literal's checked) as before
ALL_WHEN_EMPTY = Query(description="Empty or absent: all.")
Filter = Annotated[str | None, BeforeValidator(empty_is_none), ALL_WHEN_EMPTY]
ApprovalStatus = Annotated[
    Literal["pending", "approved", "rejected"] | None,
    BeforeValidator(empty_is_none),
    ALL_WHEN_EMPTY,
]


def version_json(v: VersionRow, tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The version's row, with the objective its study tuned (``objective``, ``null`` for
    a version registered by hand), its best cross-validated value as that objective's
    (``best_score``; ``details.best_value`` is the loss the study minimised) and its
    ``tags`` (read by :func:`tagged_json`; ``None``: it holds none)."""
    out = asdict(v)
    for key in ("created_at", "stage_changed_at"):
        out[key] = out[key].isoformat() if out.get(key) else None
    out["objective"] = known(v.details.get("objective"))
    out["best_score"] = score(v.details.get("best_value"), out["objective"])
    out["tags"] = dict(tags or {})
    return out


def tagged_json(store: Store, *rows: VersionRow) -> list[dict[str, Any]]:
    """``rows`` of one model as :func:`version_json` answers them, their tags read in one
    statement: every answer showing a version shows its tags."""
    tags = store.tags_of_versions(rows[0].model, [r.version for r in rows]) if rows else {}
    return [version_json(r, tags.get(r.version)) for r in rows]


def _model_json(summary: ModelSummary) -> dict[str, Any]:
    """The model, its champion's and challengers' numbers and its count of versions:
    read by number and counted, no version whole (reading every version with its details
    to count them cost 0.5-0.7 s for this 160-byte answer at 2,003 versions)."""
    row, lineup = summary.model, summary.lineup
    return {
        "name": row.name,
        "task": row.task,
        "feature_names": list(row.feature_names),
        "regulated": row.regulated,
        "champion": lineup.champion,
        "challengers": list(lineup.challengers),
        "versions": lineup.total,
    }


@router.get("/models")
def list_models(
    request: Request, _: Reader, limit: Limit = 100, after: ModelCursor = None
) -> dict[str, Any]:
    """Models ascending by name (code point by code point), ``limit`` at a time, each with
    its champion, challengers and count of versions, the page read in one statement;
    ``next``: the ``after`` of the next page (the last name shown), null on the last.
    (Every model was answered, two statements each: 3,000 of them took 2.7 s.)"""
    store = context(request).runtime.store
    read = store.model_page(limit=limit + 1, after=after)
    models, last = paged(read, limit, lambda m: m.model.name)
    return {"models": [_model_json(m) for m in models], "next": last}


@router.get("/models/{model}")
def get_model(model: str, request: Request, _: Reader) -> dict[str, Any]:
    store = context(request).runtime.store
    row, lineup = store.get_model(model), store.version_lineup(model)
    return _model_json(ModelSummary(model=row, lineup=lineup))


def list_versions(
    model: str,
    request: Request,
    _: Reader,
    limit: Limit = 100,
    before: VersionCursor = None,
) -> dict[str, Any]:
    """The model's versions, newest first (by version number), ``limit`` at a time, each
    with its details and tags; ``next``: the ``before`` of the next older page, null on
    the last.
    (Every version was answered, oldest first: 2,003 of them were 8.3 MB.)"""
    store = context(request).runtime.store
    store.get_model(model)
    read = store.version_page(model, limit=limit + 1, before=before)
    versions, after = paged(read, limit, lambda v: v.version)
    return {"versions": tagged_json(store, *versions), "next": after}


# limited as the evaluation listings are (:class:`ListingRoute`): whole rows, details and all
router.add_api_route(
    "/models/{model}/versions",
    list_versions,
    methods=["GET"],
    responses=LISTING_BUSY,
    route_class_override=ListingRoute,
)


@router.get("/models/{model}/versions/{version}")
def get_version(model: str, version: RowId, request: Request, _: Reader) -> dict[str, Any]:
    """The version, with its runs counted so far per role (``runs``: each role's runs,
    failures and the last failure's code; null before its first): ``max_error_rate``
    reads the challenger's, the rollback watch the champion's; and its ``tags``."""
    store = context(request).runtime.store
    [out] = tagged_json(store, version_or_404(store, model, version))
    out["runs"] = {role: _tally_json(store.run_tally(model, version, role)) for role in _RAN}
    return out


_RAN: tuple[Role, ...] = ("champion", "challenger")


def _tally_json(tally: RunTally | None) -> dict[str, Any] | None:
    if tally is None:
        return None
    return {"runs": tally.runs, "failures": tally.failures, "last_failure": tally.last_failure}


@router.post(
    "/models/{model}/versions",
    status_code=201,
    responses=conflicts(*REGISTERING),
)
def register_version(
    model: str,
    body: RegisterVersion,
    request: Request,
    principal: Registrar,
) -> dict[str, Any]:
    ctx = context(request)
    check_caller_study(model, body.study)
    if body.stage == "champion":
        check_champion_registration(
            ctx.runtime.store,
            ctx.runtime.config,
            model,
            task=body.task,
            regulated=body.regulated,
            hyperparameters=body.hyperparameters,
        )
    limit = ctx.runtime.config.server.max_artefact_bytes  # each file's, as `register`'s
    data = decoded_upload(body.onnx_base64, "onnx_base64", limit=limit)
    metadata = VersionMetadata(
        task=body.task,
        feature_names=tuple(body.feature_names),
        hyperparameters=body.hyperparameters,
        dataset_version=body.dataset_version,
        parent_version=body.parent_version,
        study=body.study,
        details=body.details,
    )
    reference = None
    if body.reference_npz_base64 is not None:
        reference = Reference.from_bytes(
            decoded_upload(body.reference_npz_base64, "reference_npz_base64", limit=limit),
            max_bytes=limit,  # as stored, unpacked
        )
    row = ctx.registry.register(
        model,
        data,
        metadata,
        actor=principal.name,
        stage=body.stage,
        regulated=body.regulated,
        reference=reference,
    )
    ctx.runtime.try_load(model)  # registered whether or not the line-up loads
    return tagged_json(ctx.runtime.store, row)[0]


@router.post(
    "/models/{model}/versions/{version}/promote",
    response_model=None,
    responses={
        202: {
            "description": "An approval request opened (regulated model, or hyperparameters "
            "outside their safe ranges): `{status: pending_approval, approval}`; nothing "
            "is promoted until another person approves it.",
            "content": {"application/json": {"schema": PENDING}},
        },
        **conflicts(*TO_SERVE, "not_promotable"),
    },
)
@_refusals_audited("promote")
def promote(
    model: str,
    version: RowId,
    body: Promote,
    request: Request,
    principal: Operator,
) -> dict[str, Any] | JSONResponse:
    """Promote now (200 `{status: promoted, champion, previous, unchanged}`), or — for
    regulated models and hyperparameters outside their safe ranges — open an approval
    request (202) that another person must decide. ``champion`` names the champion the
    promotion replaces: another serving instead is 409 ``champion_changed``, nothing
    changed. The champion itself is answered 200 with ``unchanged: true`` and nothing
    written (no audit entry, no event): a retried promotion finds its work done. A
    rolled-back version is 409 ``not_promotable``; one whose artefact this daemon cannot
    read back intact or load is refused, nothing changed (409 ``artefact_unavailable``).
    Promoted, the version's pending approval requests are closed (stored as rejected,
    superseded, audited)."""
    ctx = context(request)
    version_or_404(ctx.runtime.store, model, version)
    outcome = governance.promote(
        ctx.runtime.store,
        ctx.runtime.config,
        model,
        version,
        actor=principal.name,
        reason=body.reason,
        expected_champion=body.champion,
        artefacts=ctx.runtime.artefacts,
        audit_refusal=True,
    )
    if outcome.status == "pending_approval":
        assert outcome.approval is not None
        return JSONResponse(
            {
                "status": outcome.status,
                "approval": approval_json(outcome.approval, ctx.runtime.config),
            },
            status_code=202,
        )
    if not outcome.unchanged:
        ctx.runtime.try_load(model)  # its session is open: only the store can fail it
        replaced = () if outcome.previous is None else (outcome.previous.version,)
        refresh_reports(ctx.runtime.store, ctx.runtime.config, model, (version, *replaced))
    promoted = promotion_json(ctx.runtime.store, outcome.champion, outcome.previous)
    return {**promoted, "unchanged": outcome.unchanged}


def promotion_json(
    store: Store, new: VersionRow | None, previous: VersionRow | None
) -> dict[str, Any]:
    shown = iter(tagged_json(store, *(row for row in (new, previous) if row is not None)))
    champion = next(shown) if new else None
    return {"status": "promoted", "champion": champion, "previous": next(shown, None)}


def approval_json(a: ApprovalRow, config: Config) -> dict[str, Any]:
    """``a`` as the API answers it, with ``expires_at``: when a pending request expires
    (the earlier of the deadline it was made under and ``approvals.expire_after_days``
    after it was made; approved after, it is closed unpromoted), null for one decided or
    one with neither."""
    out = asdict(a)
    out["rules"] = list(a.rules)
    out["co_requesters"] = list(a.co_requesters)
    for key in ("created_at", "decided_at"):
        out[key] = out[key].isoformat() if out.get(key) else None
    limit = config.approvals.expire_after_days
    deadline = deadline_of(a, limit) if a.status == "pending" else None
    out["expires_at"] = None if deadline is None else deadline.isoformat()
    return out


@router.get(
    "/models/{model}/versions/{version}/report",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/markdown": {"schema": {"type": "string"}}}}},
)
def version_report(
    model: str, version: RowId, request: Request, _: Reader, format: Literal["md", "html"] = "html"
) -> Response:  # noqa: A002
    """The version's rationale report: trigger, data, search, evidence, decision."""
    ctx = context(request)
    version_or_404(ctx.runtime.store, model, version)
    report = build_report(ctx.runtime.store, ctx.runtime.config, model, version)
    if format == "md":
        return PlainTextResponse(report.markdown(), media_type="text/markdown")
    return HTMLResponse(report.html())


@router.post(
    "/models/{model}/rollback",
    responses=conflicts("champion_changed", "artefact_unavailable", "no_previous_champion"),
)
@_refusals_audited("rollback")
def rollback(model: str, body: Rollback, request: Request, principal: Operator) -> dict[str, Any]:
    """Restore the champion the current one replaced (409 when there is none, and 409
    ``artefact_unavailable``, nothing changed, when this daemon cannot read back intact or
    load its artefact). ``champion`` names the version to roll back: another serving
    instead is 409 ``champion_changed``, nothing changed, as is one that replaced the
    champion read before the write (rolled back, a version is never promoted again)."""
    ctx = context(request)
    restored, rolled_back = governance.rollback(
        ctx.runtime.store,
        ctx.runtime.artefacts,
        model,
        actor=principal.name,
        reason=body.reason,
        expected_champion=body.champion,
        audit_refusal=True,
    )
    ctx.runtime.try_load(model)
    refresh_reports(
        ctx.runtime.store, ctx.runtime.config, model, (restored.version, rolled_back.version)
    )
    champion, replaced = tagged_json(ctx.runtime.store, restored, rolled_back)
    return {"status": "rolled_back", "champion": champion, "rolled_back": replaced}


@router.get("/approvals")
def list_approvals(
    request: Request,
    _: Reader,
    model: Filter = None,
    status: ApprovalStatus = None,
    limit: Limit = 100,
    before_id: SmallRowCursor = None,
) -> dict[str, Any]:
    """Approval requests, newest first (by id, the order they were made in); ``next``:
    the ``before_id`` of the next older page, null on the last. A pending request's
    ``expires_at`` is when it expires (``approvals.expire_after_days``): approved after,
    it is closed unpromoted."""
    runtime = context(request).runtime
    read = runtime.store.list_approvals(
        model=model, status=status, limit=limit + 1, before_id=before_id
    )
    approvals, after = paged(read, limit, lambda a: a.id)
    return {"approvals": [approval_json(a, runtime.config) for a in approvals], "next": after}


def _decide(
    request: Request, approval_id: int, principal: Principal, body: StageChange, approve: bool
) -> dict[str, Any]:
    ctx = context(request)
    decided, promoted = governance.decide_approval(
        ctx.runtime.store,
        ctx.runtime.config,
        approval_id,
        approver=principal.name,
        approve=approve,
        reason=body.reason,
        artefacts=ctx.runtime.artefacts,
        audit_refusal=True,
    )
    if approve and decided.status == "rejected":  # closed: expired, or the champion changed
        # audited as denied_approve by governance.decide_approval
        code = governance.closed_code(decided, ctx.runtime.config)
        raise ApiError(409, code, governance.closed_unpromoted(decided))
    out: dict[str, Any] = {"approval": approval_json(decided, ctx.runtime.config)}
    if promoted is not None:
        ctx.runtime.try_load(decided.model)
        versions = [row.version for row in promoted if row is not None]  # new, replaced
        refresh_reports(ctx.runtime.store, ctx.runtime.config, decided.model, versions)
        out.update(promotion_json(ctx.runtime.store, *promoted))
    return out


@router.post(
    "/approvals/{approval_id}/approve",
    responses=conflicts(*DECIDING, "stage_changed", "approval_expired", *TO_SERVE),
)
@_refusals_audited("approve")
def approve(
    approval_id: RowId, body: StageChange, request: Request, principal: Approver
) -> dict[str, Any]:
    """Approve a pending promotion (not by its requester); it is promoted atomically. One
    made ``approvals.expire_after_days`` ago or more is closed unpromoted (409
    ``approval_expired``)."""
    return _decide(request, approval_id, principal, body, approve=True)


@router.post("/approvals/{approval_id}/reject", responses=conflicts(*DECIDING))
@_refusals_audited("reject")
def reject(
    approval_id: RowId, body: StageChange, request: Request, principal: Approver
) -> dict[str, Any]:
    return _decide(request, approval_id, principal, body, approve=False)


@router.post(
    "/models/{model}/versions/{version}/retire",
    responses=conflicts("champion_cannot_retire", "rolled_back_is_final"),
)
def retire(
    model: str,
    version: RowId,
    body: StageChange,
    request: Request,
    principal: Operator,
) -> dict[str, Any]:
    """Retire a version (200: the version, and ``unchanged``). One retired already by a
    retire is answered as it is with ``unchanged: true``, nothing written (no audit
    entry, no event, its ``stage_changed_at`` kept), as a promotion of the champion is;
    its pending approval requests are still closed. A champion a promotion retired is
    retired again, recorded: pulled, a rollback does not restore it. Of concurrent
    retires, one retires the version and the others are answered ``unchanged: true``:
    the store decides on the stage it reads under the model's lock."""
    ctx = context(request)
    version_or_404(ctx.runtime.store, model, version)
    moved = ctx.runtime.store.move_stage(
        model, version, "retired", actor=principal.name, reason=body.reason
    )
    if moved.changed:
        ctx.runtime.try_load(model)  # retired whether or not the line-up loads
    return {**tagged_json(ctx.runtime.store, moved.row)[0], "unchanged": not moved.changed}
