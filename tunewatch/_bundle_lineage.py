"""Where an imported version came from and which of the target's versions an entry already
is: the ``imported`` record an import writes into a version's details (its source, first
origin and the source store's own facts), and the lookups that recognise a version by it
on its way in, on its way back, and as another entry's parent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunewatch._bundle_archive import BundleError
from tunewatch._errors import NotFoundError
from tunewatch._report_source_history import (
    HISTORY_FORMAT,
    HISTORY_PARTS,
    MAX_HISTORY_ROWS,
    is_history_row,
    row_width,
)
from tunewatch.store import Store

#: Details a tuning job writes about the store it ran in: its job and trigger, and how many
#: of the version's reference rows were that store's traffic (which that store's next job
#: reads again). An import keeps them under ``details.imported``, not as the target's.
PER_STORE_DETAILS = (
    "job",
    "trigger",
    "rows",
    "traffic_rows",
    "traffic_through",
    "trained_rows",
    "trained_traffic_rows",
)


def imported_details(
    entry: Mapping[str, Any], source_model: str, manifest: Mapping[str, Any], digest: str
) -> dict[str, Any]:
    """The imported version's details: the entry's, but for what described the source
    store, which goes under ``imported`` with where the version came from and when the
    source created it (``created_at``: the version's own is the import's), and what the
    source's report said of the tests that decided on it and of its decisions
    (``history``, :func:`checked_history`; refused when malformed or of a newer format). A
    version the source had imported itself keeps that record (``via``, with the time the
    store before created it, and its history) and its first ``origin``."""
    details = entry["details"]
    incoming = details.get("imported")
    origin = _origin(incoming) or (source_model, entry["version"])
    record = {
        "model": source_model,
        "version": entry["version"],
        "origin": {"model": origin[0], "version": origin[1]},
        "stage": entry["stage"],
        "parent_version": entry.get("parent_version"),
        # study names number jobs per store: kept here, not as the version's study,
        # where it could collide with a job of this store
        "study": entry.get("study"),
        **{k: details[k] for k in PER_STORE_DETAILS if k in details},
        "bundle_sha256": digest,
        "exported_at": manifest.get("exported_at"),
        # when the source store registered it (its own import time, for a version it had
        # imported: the first store's is then under `via`); the target's `created_at` is
        # this import's
        "created_at": entry.get("created_at"),
    }
    history = checked_history(entry)
    if history is not None:  # the source report's evidence and decisions
        record["history"] = history
    if incoming is not None:
        record["via"] = incoming
    return {
        **{k: v for k, v in details.items() if k not in (*PER_STORE_DETAILS, "imported")},
        "imported": record,
    }


def checked_history(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The entry's ``history`` (:mod:`tunewatch._report_source_history`), with only the parts
    this format holds; ``None`` when it has none (a bundle written before bundles carried
    it). Refused (``BundleError``) when it is of a newer format, or malformed: each part a
    list of at most ``MAX_HISTORY_ROWS`` rows, each row a list of its part's number of
    strings; ``left_out``, counts of rows left out by part."""
    version = entry["version"]
    history = entry.get("history")
    if history is None:
        return None
    if not isinstance(history, dict):
        raise BundleError(f"version {version}: `history` must be an object, got {history!r:.100}")
    found = history.get("format_version")
    if type(found) is not int or found < 1:  # not a bool
        raise BundleError(
            f"version {version}: `history.format_version` must be a positive integer, "
            f"got {found!r:.40}"
        )
    if found > HISTORY_FORMAT:
        raise BundleError(
            f"version {version}: `history` is format {found}, newer than this tunewatch reads "
            f"({HISTORY_FORMAT}); upgrade tunewatch to import the bundle"
        )
    checked: dict[str, Any] = {"format_version": found}
    for part in HISTORY_PARTS:
        rows = history.get(part, [])
        width = row_width(part)
        if not (
            isinstance(rows, list)
            and len(rows) <= MAX_HISTORY_ROWS
            and all(is_history_row(row, width) for row in rows)
        ):
            raise BundleError(
                f"version {version}: `history.{part}` must be a list of at most "
                f"{MAX_HISTORY_ROWS} rows, each a list of {width} strings, got {rows!r:.200}"
            )
        checked[part] = rows
    left_out = history.get("left_out", {})
    if not (
        isinstance(left_out, dict)
        and set(left_out) <= set(HISTORY_PARTS)
        and all(type(n) is int and n > 0 for n in left_out.values())
    ):
        raise BundleError(
            f"version {version}: `history.left_out` must map parts of the history "
            f"({', '.join(HISTORY_PARTS)}) to positive integers, got {left_out!r:.200}"
        )
    if left_out:
        checked["left_out"] = left_out
    return checked


def _origin(record: Any) -> tuple[str, int] | None:
    """Where the version an ``imported`` record describes was first registered: the
    record's ``origin``, else the model and version it was imported from (records before
    origins were kept); ``None`` for no record or a malformed one."""
    if not isinstance(record, Mapping):
        return None
    for found in (record.get("origin"), record):
        if isinstance(found, Mapping):
            model, version = found.get("model"), found.get("version")
            if isinstance(model, str) and type(version) is int:  # not a bool
                return model, version
    return None


def parent_in_target(
    store: Store, target: str, source_model: str, entry: Mapping[str, Any], mapping: dict[int, int]
) -> int | None:
    """The target's version that the entry's parent became: in this import, brought in
    from the source by an earlier one, or, by the entry's ``parent_origin``, the version
    the parent was first registered as or one imported from there by another way (a
    default bundle holds the champion only, whose parent the source may have imported
    from the target itself). Bundles written before ``parent_origin`` stop at the second."""
    parent = entry.get("parent_version")
    if parent is None:
        return None
    if parent in mapping:
        return mapping[parent]
    found = _imported_as(store, target, source_model, parent)
    origin = entry.get("parent_origin")  # absent from bundles written before it was
    if found is not None and origin is not None:
        # a model of that name and version from another store is not the parent: its
        # artefact must be the parent's too
        if store.get_version(target, found).artefact_sha256 != origin["artefact_sha256"]:
            found = None
    if found is not None or origin is None:
        return found
    try:
        versions = store.list_versions(target)
    except NotFoundError:
        return None
    for v in versions:  # the artefact too: another store may have its own model so named
        if v.artefact_sha256 == origin["artefact_sha256"] and identity(
            target, v.version, v.details
        ) == (origin["model"], origin["version"]):
            return v.version
    return None


def identity(model: str, version: int, details: Mapping[str, Any]) -> tuple[str, int]:
    """Where a version was first registered: its recorded origin if it was imported, else
    itself. Imports recognise a version by it, on its way back too."""
    return _origin(details.get("imported")) or (model, version)


def already_imported(
    store: Store, target: str, source_model: str, entry: Mapping[str, Any]
) -> int | None:
    """The target's version that the entry is already, if any: one with its artefact that
    was imported from this version of ``source_model``, or that has the same origin (it
    came by another way, or it is the origin: the entry is on its way back)."""
    try:
        versions = store.list_versions(target)
    except NotFoundError:
        return None
    origin = identity(source_model, entry["version"], entry["details"])
    for v in versions:
        if v.artefact_sha256 != entry["artefact_sha256"]:
            continue
        if identity(target, v.version, v.details) == origin or _source(
            v.details.get("imported")
        ) == (source_model, entry["version"]):
            return v.version
    return None


def _source(record: Any) -> tuple[Any, Any] | None:
    """The model and version an ``imported`` record says the version was imported from."""
    return (record.get("model"), record.get("version")) if isinstance(record, Mapping) else None


def _imported_as(store: Store, target: str, source_model: str, source_version: int) -> int | None:
    """The target's version imported from ``source_model``'s ``source_version``, if any."""
    try:
        versions = store.list_versions(target)
    except NotFoundError:
        return None
    for v in versions:
        if _source(v.details.get("imported")) == (source_model, source_version):
            return v.version
    return None
