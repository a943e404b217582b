"""Models, versions, stages, events and the audit log."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from tunewatch._auth import Principal
from tunewatch._registry import VersionMetadata
from tunewatch._runtime import version_or_404
from tunewatch.api._context import authenticate, context
from tunewatch.api._errors import ApiError
from tunewatch.store import VersionRow

router = APIRouter(prefix="/v1")


def require(*permissions: str) -> Callable[[Request], Principal]:
    def dependency(request: Request) -> Principal:
        return authenticate(request, *permissions)

    return dependency


Reader = Annotated[Principal, Depends(require("read"))]
Registrar = Annotated[Principal, Depends(require("register"))]
Operator = Annotated[Principal, Depends(require("operate"))]
Limit = Annotated[int, Query(ge=1, le=10_000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterVersion(_Body):
    onnx_base64: str = Field(description="The ONNX file, base64-encoded.")
    task: Literal["binary", "multiclass", "regression"]
    feature_names: list[str] = Field(min_length=1)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    dataset_version: str | None = None
    parent_version: int | None = None
    study: str | None = None
    stage: Literal["shadow", "champion"] = "shadow"
    regulated: bool | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class StageChange(_Body):
    reason: str = Field(min_length=1, max_length=2000)


def version_json(v: VersionRow) -> dict[str, Any]:
    out = asdict(v)
    for key in ("created_at", "stage_changed_at"):
        out[key] = out[key].isoformat() if out.get(key) else None
    return out


def _model_json(request: Request, name: str) -> dict[str, Any]:
    ctx = context(request)
    row = ctx.runtime.store.get_model(name)
    versions = ctx.runtime.store.list_versions(name)
    champion = next((v.version for v in versions if v.stage == "champion"), None)
    return {
        "name": row.name,
        "task": row.task,
        "feature_names": list(row.feature_names),
        "regulated": row.regulated,
        "champion": champion,
        "challengers": [v.version for v in versions if v.stage == "shadow"],
        "versions": len(versions),
    }


@router.get("/models")
def list_models(request: Request, _: Reader) -> dict[str, Any]:
    store = context(request).runtime.store
    return {"models": [_model_json(request, m.name) for m in store.list_models()]}


@router.get("/models/{model}")
def get_model(model: str, request: Request, _: Reader) -> dict[str, Any]:
    return _model_json(request, model)


@router.get("/models/{model}/versions")
def list_versions(model: str, request: Request, _: Reader) -> dict[str, Any]:
    store = context(request).runtime.store
    store.get_model(model)
    return {"versions": [version_json(v) for v in store.list_versions(model)]}


@router.get("/models/{model}/versions/{version}")
def get_version(model: str, version: int, request: Request, _: Reader) -> dict[str, Any]:
    return version_json(version_or_404(context(request).runtime.store, model, version))


@router.post("/models/{model}/versions", status_code=201)
def register_version(
    model: str,
    body: RegisterVersion,
    request: Request,
    principal: Registrar,
) -> dict[str, Any]:
    ctx = context(request)
    try:
        data = base64.b64decode(body.onnx_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "invalid_request", "`onnx_base64` is not valid base64") from exc
    metadata = VersionMetadata(
        task=body.task,
        feature_names=tuple(body.feature_names),
        hyperparameters=body.hyperparameters,
        dataset_version=body.dataset_version,
        parent_version=body.parent_version,
        study=body.study,
        details=body.details,
    )
    row = ctx.registry.register(
        model, data, metadata, actor=principal.name, stage=body.stage, regulated=body.regulated
    )
    ctx.runtime.load(model)
    return version_json(row)


@router.post("/models/{model}/versions/{version}/promote")
def promote(
    model: str,
    version: int,
    body: StageChange,
    request: Request,
    principal: Operator,
) -> dict[str, Any]:
    ctx = context(request)
    version_or_404(ctx.runtime.store, model, version)
    new, previous = ctx.runtime.store.promote(
        model, version, actor=principal.name, reason=body.reason
    )
    ctx.runtime.load(model)
    return {"champion": version_json(new), "previous": version_json(previous) if previous else None}


@router.post("/models/{model}/versions/{version}/retire")
def retire(
    model: str,
    version: int,
    body: StageChange,
    request: Request,
    principal: Operator,
) -> dict[str, Any]:
    ctx = context(request)
    current = version_or_404(ctx.runtime.store, model, version)
    if current.stage == "champion":
        raise ApiError(
            409,
            "champion_cannot_retire",
            f"version {version} is the champion; promote another version first",
        )
    row = ctx.runtime.store.set_stage(
        model, version, "retired", actor=principal.name, reason=body.reason
    )
    ctx.runtime.load(model)
    return version_json(row)


@router.get("/events")
def list_events(
    request: Request,
    _: Reader,
    model: str | None = None,
    type: str | None = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    events = context(request).runtime.store.list_events(model=model, type=type, limit=limit)
    return {"events": [{**asdict(e), "created_at": e.created_at.isoformat()} for e in events]}


@router.get("/audit")
def audit_log(
    request: Request,
    _: Reader,
    limit: Limit = 100,
) -> dict[str, Any]:
    store = context(request).runtime.store
    entries = store.audit_log(limit=limit)
    return {
        "entries": [{**asdict(e), "at": e.at.isoformat()} for e in entries],
        "chain_intact": store.verify_audit() is None,
    }
