"""Artefact bytes kept in the store, by content: one row per (SHA-256, suffix).

Rows are written once and never changed: the same bytes put again are the same row.
Hosts sharing a PostgreSQL store read each other's artefacts from here
(``tunewatch._artefacts.ArtefactStore`` caches them under each host's ``data_dir``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from sqlalchemy import Connection, select, tuple_

from ._engine import dialect_insert
from ._schema import artefacts
from ._types import utcnow

#: ``.onnx``, ``.npz``, ``.html``: a dot and up to 15 lowercase letters or digits (the
#: key's ``VARCHAR(16)``).
_SUFFIX = re.compile(r"\.[a-z0-9]{1,15}")


def check_suffix(suffix: str) -> None:
    if not _SUFFIX.fullmatch(suffix):
        raise ValueError(
            "artefact `suffix` must be a dot and 1 to 15 lowercase letters or digits "
            f"(such as '.onnx'), got {suffix!r}"
        )


def put_artefact(conn: Connection, data: bytes, suffix: str) -> bool:
    """Keep ``data`` under its SHA-256 and ``suffix``; ``False`` when it was kept already
    (then the bytes are not sent: a re-registration does not ship the file again)."""
    check_suffix(suffix)
    digest = hashlib.sha256(data).hexdigest()
    key = (artefacts.c.sha256 == digest, artefacts.c.suffix == suffix)
    if conn.execute(select(artefacts.c.sha256).where(*key)).first() is not None:
        return False
    stored = conn.execute(  # another host may have kept it meanwhile: still one row
        dialect_insert(conn, artefacts)
        .values(sha256=digest, suffix=suffix, data=data, size_bytes=len(data), created_at=utcnow())
        .on_conflict_do_nothing(index_elements=[artefacts.c.sha256, artefacts.c.suffix])
        .returning(artefacts.c.sha256)
    ).first()
    return stored is not None


def get_artefact(conn: Connection, sha256: str, suffix: str) -> bytes | None:
    """The bytes kept under ``sha256`` and ``suffix``, or ``None``; not verified here."""
    check_suffix(suffix)
    data = conn.execute(
        select(artefacts.c.data).where(artefacts.c.sha256 == sha256, artefacts.c.suffix == suffix)
    ).scalar_one_or_none()
    return None if data is None else bytes(data)


def missing_artefacts(conn: Connection, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Those of ``keys`` (SHA-256, suffix) the store keeps no bytes for."""
    wanted = set(keys)
    for suffix in {suffix for _, suffix in wanted}:
        check_suffix(suffix)
    kept: set[tuple[str, str]] = set()
    ordered = sorted(wanted)
    for start in range(0, len(ordered), 500):  # bounded statements, whatever the count
        chunk = ordered[start : start + 500]
        rows = conn.execute(
            select(artefacts.c.sha256, artefacts.c.suffix).where(
                tuple_(artefacts.c.sha256, artefacts.c.suffix).in_(chunk)
            )
        )
        kept.update((sha, suffix) for sha, suffix in rows)
    return wanted - kept
