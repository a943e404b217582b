"""A version's key/value tags: an operator sets (``PUT``) and deletes (``DELETE``) them,
one key at a time, each change audited under the caller's name by the store.

The key is the path's last part and may hold ``/`` (``team/risk``); both its spelling and
the value are checked against the one convention (:mod:`tunewatch._tag_rules`), a
refusal answered 400 ``invalid_request`` naming the key, the rule and the value. A
missing model or version is answered as ``GET /v1/models/{m}/versions/{v}`` answers it.
Both answer the version's tags as they are after the change, so a script needs no second
read, and rewrite the version's rationale report file (:func:`~tunewatch._report.refresh_reports`,
as a governance change does): it listed the tags of the last promotion."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field
from starlette.requests import Request

from tunewatch._report import refresh_reports
from tunewatch._runtime import version_or_404
from tunewatch._tag_rules import MAX_VALUE_LENGTH
from tunewatch.api._context import RowId, context
from tunewatch.api._model_bodies import _Body
from tunewatch.api._models import Operator
from tunewatch.api._route import ApiRoute
from tunewatch.store import Store

router = APIRouter(prefix="/v1", route_class=ApiRoute)

_PATH = "/models/{model}/versions/{version}/tags/{key:path}"
_INVALID: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "`invalid_request`: the key or value is outside the tag convention "
        "(key: 1-64 of `[a-z0-9._/-]`, each part between slashes starting with a letter or "
        f"digit, not `tunewatch.`; value: 0-{MAX_VALUE_LENGTH} printable characters, none "
        "invisible; at most 50 tags a version)"
    }
}


class TagValue(_Body):
    value: str = Field(
        description=f"The tag's value: 0 to {MAX_VALUE_LENGTH} printable characters, none "
        "invisible (fillers, variation selectors, joiners)."
    )


def _answer(store: Store, model: str, version: int) -> dict[str, Any]:
    tags = store.tags_of_versions(model, [version]).get(version, {})
    return {"model": model, "version": version, "tags": tags}


@router.put(_PATH, responses=_INVALID)
def set_tag(
    model: str, version: RowId, key: str, body: TagValue, request: Request, principal: Operator
) -> dict[str, Any]:
    """Set the version's tag ``key`` to ``value`` (a new tag, or its value replaced), audited
    (``set_tag``, with the previous value); the same value again writes nothing. 200: the
    version's tags."""
    runtime = context(request).runtime
    version_or_404(runtime.store, model, version)
    if runtime.store.set_version_tag(model, version, key, body.value, actor=principal.name):
        refresh_reports(runtime.store, runtime.config, model, (version,))
    return _answer(runtime.store, model, version)


@router.delete(
    _PATH,
    responses={**_INVALID, 404: {"description": "`tag_not_found`: the version has no such tag"}},
)
def delete_tag(
    model: str, version: RowId, key: str, request: Request, principal: Operator
) -> dict[str, Any]:
    """Delete the version's tag ``key``, audited (``delete_tag``, with its value). 200: the
    version's tags; 404 ``tag_not_found`` when it has none of that key."""
    runtime = context(request).runtime
    version_or_404(runtime.store, model, version)
    runtime.store.delete_version_tag(model, version, key, actor=principal.name)
    refresh_reports(runtime.store, runtime.config, model, (version,))
    return _answer(runtime.store, model, version)
