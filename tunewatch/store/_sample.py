"""Uniform samples of a model's requests, chosen in SQL by a hash of the request id.

A request is in the sample of 1 in ``every`` (a power of two) when its key, a hash of its
id, is a multiple of ``every``: the same requests on every read (a verdict's report
re-reads the very rows it judged), whatever their content or time, and the sample of 1
in ``2 * every`` is part of the sample of 1 in ``every`` (windows sampled at different
rates share their requests). PostgreSQL hashes with its own ``hashtext``, SQLite with
BLAKE2b (a function the store's connections register): the backends sample alike, not
the same requests. Not CRC-32: it is linear in the id's bits, so of sequential ids
(``r0``, ``r1`` …) it took an exact eighth, a pattern of their digits.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import ColumnElement, func

#: The SQLite function computing a request id's sample key (registered on connect).
SQLITE_SAMPLE_KEY = "tunewatch_sample_key"


def sample_key(request_id: str | None) -> int | None:
    """SQLite's sample key of a request id: a 32-bit BLAKE2b digest of its UTF-8."""
    if request_id is None:
        return None
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=4)
    return int.from_bytes(digest.digest(), "big")


def in_sample(request_id: ColumnElement[str], every: int, dialect: str) -> ColumnElement[bool]:
    """Whether the request of ``request_id`` is in the sample of 1 in ``every``."""
    if every < 1 or every & (every - 1):
        raise ValueError(f"`every` must be a power of two, got {every}")
    if dialect == "postgresql":
        key = func.hashtext(request_id).op("&")(0x7FFFFFFF)  # non-negative
    else:
        key = getattr(func, SQLITE_SAMPLE_KEY)(request_id)
    return key.op("%")(every) == 0
