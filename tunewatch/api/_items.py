"""The list of items a mirror or feedback body carries (``{"records": [...]}``,
``{"items": [...]}``), and their ids."""

from __future__ import annotations

from typing import Any

from tunewatch.api._errors import ApiError
from tunewatch.api._oip_request import MAX_ID_LENGTH


def items_of(body: dict[str, Any], key: str, limit: int) -> list[dict[str, Any]]:
    """``body[key]``: a non-empty list of at most ``limit`` objects, the body's only
    field (400 ``invalid_request``; 413 ``too_many_items`` past ``limit``)."""
    items = body.get(key)
    extra = set(body) - {key}
    if extra:
        raise ApiError(
            400, "invalid_request", f"unknown fields {sorted(extra)}; send {{{key!r}: [...]}}"
        )
    if not isinstance(items, list) or not items:
        raise ApiError(400, "invalid_request", f"`{key}` must be a non-empty list")
    if len(items) > limit:
        raise ApiError(
            413, "too_many_items", f"`{key}` holds {len(items)} entries; the limit is {limit}"
        )
    if not all(isinstance(i, dict) for i in items):
        raise ApiError(400, "invalid_request", f"every entry of `{key}` must be an object")
    return items


def id_of(item: dict[str, Any], key: str, where: str) -> str:
    """``item[key]``: a request id (400 ``invalid_id`` naming ``where`` otherwise)."""
    value = item.get(key)
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_ID_LENGTH
        or not value.isprintable()
    ):
        raise ApiError(
            400,
            "invalid_id",
            f"{where}.{key} must be a printable string of 1–{MAX_ID_LENGTH} characters",
        )
    return value
