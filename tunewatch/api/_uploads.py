"""What a version's registration (``POST /v1/models/{model}/versions``) may upload.

``server.max_artefact_bytes`` bounds the files a registration carries — the ONNX file and
its reference snapshot, each — as ``tunewatch register`` holds the files it reads to it.
The API takes them base64-encoded in JSON, a third larger: its body limit was the setting
itself, so a file of more than three quarters of it, which the CLI registered, was refused
413 by the API. The route's body is now read under what both files of the limit take
encoded (:func:`registration_body_limit`), and each file is held to the setting once
decoded (:func:`decoded_upload`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from tunewatch.api._errors import ApiError

ARTEFACT_SETTING: Final = "`server.max_artefact_bytes`"
#: The base64 fields of a registration's body, each a file of at most the setting.
UPLOADS: Final = ("onnx_base64", "reference_npz_base64")


def registration_body_limit(*, max_artefact_bytes: int, max_body_bytes: int) -> int:
    """The body a registration may send: each of :data:`UPLOADS` at ``max_artefact_bytes``
    once base64-encoded (4 characters for every 3 bytes, padded), plus ``max_body_bytes``
    (``server.max_body_bytes``, any other route's limit) for the rest of its JSON."""
    return len(UPLOADS) * 4 * -(-max_artefact_bytes // 3) + max_body_bytes


def registration_limit_source(max_artefact_bytes: int) -> str:
    """What a registration's body limit is made of, naming the setting to raise: the
    parenthesis of its ``body_too_large`` (:class:`~tunewatch.api._body.BodyLimit`)."""
    return (
        f"a registration's: the ONNX file and its reference snapshot at {ARTEFACT_SETTING} "
        f"({max_artefact_bytes}) each, base64-encoded, plus `server.max_body_bytes`; raise "
        f"{ARTEFACT_SETTING} to register larger files"
    )


def decoded_upload(value: str, field: str, *, limit: int) -> bytes:
    """The file the base64 ``value`` of ``field`` encodes, of at most ``limit`` bytes
    (``server.max_artefact_bytes``): past it, 413 ``body_too_large`` with the words of
    ``tunewatch register``'s refusal. The size is read from the text's length before
    anything is decoded (valid base64 holds 3 bytes in every 4 characters, less its
    padding), so a refused file is never decoded; invalid base64 is 400."""
    size = len(value) // 4 * 3 - value[-2:].count("=")
    if size > limit:
        raise ApiError(
            413,
            "body_too_large",
            f"`{field}` holds {size} bytes, more than {ARTEFACT_SETTING} ({limit}): raise the "
            "setting to register it",
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "invalid_request", f"`{field}` is not valid base64") from exc
