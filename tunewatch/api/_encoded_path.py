"""An encoded slash in a request's path separates no segments, so it names no route.

The server decodes the path (``scope["path"]``) before anything routes on it, and both
Starlette and the inference front route on the decoded path: ``%2F`` acted as ``/``, so
``POST /v1/models/credit%2Fversions%2F2%2Fpromote`` promoted version 2 past a reverse
proxy whose rule denies ``/v1/models/*/versions/*/promote``. An encoded reserved
character is data, not the delimiter (RFC 3986 §2.2), and no model name holds a ``/``
(:func:`~tunewatch.store.valid_model_name`), so such a path names nothing and is answered
as an unknown path is, 404 ``not_found``, before any route runs. A tag's key is the
path's last part (``/v1/models/{m}/versions/{v}/tags/{key}``) and may hold ``/``
(``team/risk``): there an encoded slash is the key's own character, read as such.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

from starlette.types import Scope

from tunewatch.api._errors import ApiError

_ENCODED_SLASH: Final = re.compile(rb"%2[fF]")
# The path up to a tag's key, decoded: an encoded slash after it is in the key.
_BEFORE_TAG_KEY: Final = re.compile(r"^/v1/models/[^/]+/versions/[^/]+/tags/")


def encoded_slash_refusal(scope: Scope) -> ApiError | None:
    """404 ``not_found`` for an HTTP request whose path holds ``%2F`` (either case)
    anywhere before a tag's key; ``None`` for any other (and for a server that gives no
    ``raw_path``)."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None or b"%" not in raw:  # the hot path: one scan of a short path
        return None
    found = _ENCODED_SLASH.search(raw)
    if found is None:
        return None
    root = scope.get("root_path", "").encode("latin-1")
    start = len(root) if root and raw.startswith(root) else 0
    # Before the first encoded slash, every `/` is a separator: decoded, that part has
    # the segments the raw one has, however its other characters were spelt.
    if _BEFORE_TAG_KEY.match(unquote(raw[start : found.start()].decode("latin-1"))):
        return None
    return ApiError(
        404,
        "not_found",
        "Not Found: no route's path holds an encoded slash (%2F) before a tag's key; it "
        "separates no segments (RFC 3986 §2.2), and no model name holds a slash",
    )
