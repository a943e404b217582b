"""The artefacts of a backup (``tunewatch backup DIR``, see :mod:`tunewatch._backup`), and
how every part of one is written: owner-only, durable files, and a write that fails named
by the part and the file it was writing.

Every artefact under the data directory is copied, read back through its content hash
first; a folder linked from elsewhere (an operator moved ``artefacts/<aa>`` to another
disk and linked it back: the daemon reads through the link) is copied as its files. Then
the copy is checked against the store's copy: each artefact a version or a drift report
names must be in it, else it is named (an artefact missing from the data directory, or
behind a link to a disk not mounted).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from sqlalchemy import create_engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from tunewatch._artefacts import ArtefactStore
from tunewatch._errors import StoreError
from tunewatch.store._schema import evaluations, model_versions

#: The artefact directory's name in a data directory (``Config.artefact_dir``).
ARTEFACTS = "artefacts"
#: An artefact's file name: its SHA-256 and its suffix (``tunewatch._artefacts``).
_ARTEFACT_NAME = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,15}")

Part = Literal["store", "tuning storage", "tuning archive", "artefacts"]


class WriteFailed(Exception):
    """Writing part of a backup failed: ``what`` was being written (the part and its file
    under the backup), ``reason`` why. Carries the ``OSError`` or ``StoreError`` as its
    cause; :func:`tunewatch._backup.backup` removes the partial backup and says so."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.reason = reason


def reason(exc: OSError, *, named: str = "") -> str:
    """The system's reason for ``exc`` without its errno, and the file it names unless
    that is the one ``named`` already (its path ends so)."""
    said = exc.strerror or str(exc)
    if exc.filename is None or (named and os.fsdecode(exc.filename).endswith(named)):
        return said
    return f"{said} ({os.fsdecode(exc.filename)})"


@contextlib.contextmanager
def writing(part: Part, name: str) -> Iterator[None]:
    """Raise an ``OSError`` or ``StoreError`` from the block as :class:`WriteFailed`
    naming ``part`` and ``name``, the file under the backup being written."""
    try:
        yield
    except OSError as exc:
        raise WriteFailed(f"the {part}, {name}", reason(exc, named=name.rstrip("/"))) from exc
    except StoreError as exc:
        raise WriteFailed(f"the {part}, {name}", exc.message) from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class ArtefactsCopied:
    """What :func:`copy_artefacts` wrote: ``count`` files of ``size_bytes`` in all;
    ``damaged``, each left out with why, and ``left_out``, their file names."""

    count: int
    size_bytes: int
    damaged: tuple[str, ...]
    left_out: frozenset[str]


def copy_artefacts(source: Path, target: Path) -> ArtefactsCopied:
    """Copy every artefact under ``source`` (``<aa>/<sha256><suffix>``) to ``target``,
    each read back through its content hash first, following a folder that is a link (its
    files are copied, not the link). Other files (a write's temporary file) are not
    artefacts, and not copied."""
    if not source.is_dir():  # nothing registered yet
        return ArtefactsCopied(count=0, size_bytes=0, damaged=(), left_out=frozenset())
    with writing("artefacts", f"{ARTEFACTS}/"):
        private_directory(target)
    artefacts = ArtefactStore(source)  # no store: the directory is the only copy
    count, size, damaged, left_out = 0, 0, [], set()
    for folder in sorted(source.iterdir()):
        if not folder.is_dir():  # a link to a folder is followed, as the daemon follows it
            continue
        try:
            names = sorted(
                entry.name
                for entry in folder.iterdir()
                if _ARTEFACT_NAME.fullmatch(entry.name) and entry.name.startswith(folder.name)
            )
        except OSError as exc:
            damaged.append(f"the artefacts under {folder}: cannot be read: {reason(exc)}")
            continue
        where = f"{ARTEFACTS}/{folder.name}"
        if names and not (target / folder.name).exists():
            with writing("artefacts", f"{where}/"):
                private_directory(target / folder.name)
        for name in names:
            try:
                data = artefacts.get(name[:64], name[64:])
            except StoreError as exc:  # NotFoundError too: it vanished
                damaged.append(f"artefact {name}: {exc.message}")
                left_out.add(name)
                continue
            with (
                writing("artefacts", f"{where}/{name}"),
                private_file(target / folder.name / name) as out,
            ):
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            count, size = count + 1, size + len(data)
        if names:
            with writing("artefacts", f"{where}/"):
                fsync_directory(target / folder.name)
    with writing("artefacts", f"{ARTEFACTS}/"):
        fsync_directory(target)
    return ArtefactsCopied(
        count=count, size_bytes=size, damaged=tuple(damaged), left_out=frozenset(left_out)
    )


def missing_artefacts(
    database: Path, target: Path, *, source: Path, left_out: frozenset[str]
) -> tuple[str, ...]:
    """The artefacts the SQLite store ``database`` (the backup's copy) names that
    ``target`` lacks, each with what names it, except those ``left_out`` (damaged: said
    already)."""
    missing = []
    for name, named_by in sorted(named_artefacts(database).items()):
        if name not in left_out and not (target / name[:2] / name).is_file():
            missing.append(f"artefact {name} ({', '.join(named_by)}): not found under {source}")
    return tuple(missing)


def named_artefacts(database: Path) -> dict[str, list[str]]:
    """Each artefact (its file name) the SQLite store ``database`` names, with what names
    it: a version's ONNX file and reference snapshot, a drift report's page."""
    named: dict[str, list[str]] = {}

    def name(sha256: object, suffix: str, what: str) -> None:
        if isinstance(sha256, str):
            named.setdefault(f"{sha256}{suffix}", []).append(what)

    engine = create_engine(
        "sqlite://",
        creator=lambda: sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True),
        poolclass=NullPool,
    )
    v, e = model_versions.c, evaluations.c
    try:
        with engine.connect() as conn:
            for model, version, sha256, details in conn.execute(
                select(v.model, v.version, v.artefact_sha256, v.details)
            ):
                name(sha256, ".onnx", f"model {model} version {version}'s ONNX file")
                name(
                    details.get("reference_sha256") if isinstance(details, dict) else None,
                    ".npz",
                    f"model {model} version {version}'s reference snapshot",
                )
            for evaluation, model, payload in conn.execute(
                select(e.id, e.model, e.payload).where(e.kind == "drift_report")
            ):
                sha256 = payload.get("sha256") if isinstance(payload, dict) else None
                name(sha256, ".html", f"model {model}'s drift report {evaluation}")
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the artefacts {database} names: {exc}") from exc
    finally:
        engine.dispose()
    return named


def private_directory(path: Path) -> None:
    path.mkdir(mode=0o700)
    path.chmod(0o700)  # whatever the umask


@contextlib.contextmanager
def private_file(path: Path) -> Iterator[BinaryIO]:
    """``path`` created (never replaced) 0600 and open for reading and writing."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w+b") as out:
        yield out


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
