"""Where a version came from, for its rationale report (:mod:`tunewatch._report`), as the
audit log confirms it.

A version's ``details`` are free JSON: anyone who registers a version (POST
/v1/models/{m}/versions) writes them, and may write a ``job``, a ``trigger`` or an
``imported`` record as a tuning job or a bundle import does. The report presents only the
provenance the audit log records (:func:`provenance`):

- a bundle import, when an import's audit entry (:data:`IMPORTS`) says it registered the
  version: where from, the source's study, job and trigger, the bundle and who imported
  it, from the version's ``details.imported``;
- a tuning job, when the version's ``register_version`` entry is that job's
  (``job:<id>``, the actor a job registers its winner as): its trigger and tuning figures;
- otherwise, registration by hand, by the entry's actor. What the details claim of a job,
  a trigger or an import is shown apart, as supplied by the registrant and not verified,
  and the tuning figures' sections say so too (:data:`UNVERIFIED`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tunewatch._report_document import Row, Section
from tunewatch._report_search import mapping
from tunewatch.store import AuditEntry

#: The audit entries of a bundle import. They target the model, not the versions, and
#: map each bundled version to the target's (``versions``): the imported ones, those there
#: already, and (``import_bundle_failed``) those an import registered before it failed.
IMPORTS = ("import_bundle", "import_bundle_failed")
#: What a version's details say of where it came from: the job that tuned it, what
#: triggered that job, and the record of a bundle import.
CLAIMS = ("job", "trigger", "imported")
#: How a section of figures a version's registrant supplied, unchecked, is titled.
UNVERIFIED = "supplied by the registrant, not verified"
#: How deep the supplied provenance's mappings are shown a row per entry.
_FLAT_DEPTH = 3
#: The actor a tuning job registers its winner as (``tunewatch._tuning``).
_JOB_ACTOR = re.compile(r"job:(?P<id>[0-9]+)")


@dataclass(frozen=True, slots=True)
class Provenance:
    """What the audit log confirms of how a version was registered."""

    #: its ``register_version`` audit entry (``None``: the log holds none)
    registration: AuditEntry | None
    #: the import that registered it, and its ``details.imported`` record
    importer: AuditEntry | None = None
    imported: dict[str, Any] | None = None
    #: the tuning job that registered it
    job: int | None = None
    #: what its details claim of a job, a trigger or an import that the log does not
    #: confirm (:data:`CLAIMS`)
    supplied: dict[str, Any] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        """Whether a tuning job or a bundle import registered it: its figures are that
        job's (or, imported, the source store's) rather than its registrant's."""
        return self.job is not None or self.imported is not None

    def details(self, details: dict[str, Any]) -> dict[str, Any]:
        """``details`` without the claims the log does not confirm."""
        return {k: v for k, v in details.items() if k not in self.supplied}


def provenance(
    details: dict[str, Any], decisions: Sequence[AuditEntry], version: int
) -> Provenance:
    """What ``decisions`` (the audit entries about ``version``, oldest first) confirm of
    the provenance ``details`` claim."""
    registration = next((a for a in decisions if a.action == "register_version"), None)
    importer = next((a for a in decisions if _registered_by_import(a, version, registration)), None)
    record = details.get("imported")
    imported = record if importer is not None and isinstance(record, dict) else None
    found = None if registration is None else _JOB_ACTOR.fullmatch(registration.actor)
    job = None if found is None else int(found["id"])
    claimed = details.get("job")
    if job is not None and claimed is not None and claimed != job:
        job = None  # the details name another job than the one that registered it
    confirmed = {
        "job": job is not None,
        "trigger": job is not None,
        "imported": imported is not None,
    }
    supplied = {k: details[k] for k in CLAIMS if k in details and not confirmed[k]}
    return Provenance(
        registration=registration, importer=importer, imported=imported, job=job, supplied=supplied
    )


def bundled_as(entry: AuditEntry, version: int) -> str | None:
    """The source version (as the import's audit details key it) that import ``entry``
    maps to ``version``; ``None`` if it is not an import naming ``version``."""
    if entry.action not in IMPORTS:
        return None
    versions = mapping(entry.details.get("versions"))
    return next((s for s, v in versions.items() if type(v) is int and v == version), None)


def registered_by_import(entry: AuditEntry, version: int) -> bool:
    """Whether import ``entry`` registered ``version`` (rather than finding it there)."""
    source = bundled_as(entry, version)
    return source is not None and source in mapping(entry.details.get("registered"))


def _registered_by_import(entry: AuditEntry, version: int, registration: AuditEntry | None) -> bool:
    """:func:`registered_by_import`; for an entry of the format before imports told the
    versions they registered from those already there (no ``registered``), one that maps
    ``version`` and was written by who registered it, after it."""
    if registered_by_import(entry, version):
        return True
    return (
        "registered" not in entry.details
        and bundled_as(entry, version) is not None
        and registration is not None
        and registration.actor == entry.actor
        and registration.id < entry.id
    )


def trigger_rows(details: dict[str, Any], found: Provenance) -> tuple[Row, ...]:
    """What made the version: its job's trigger; for a version imported from another
    store, where it came from, the source's study, job and trigger (a bundle import moves
    them under ``details.imported``: they named that store's jobs), the bundle and who
    imported it; for one registered by hand, who registered it."""
    imported, importer = found.imported, found.importer
    if imported is None:
        if found.job is None:
            return (("registered", "by hand (no tuning job)"), *_registered_by(found))
        trigger = mapping(details.get("trigger"))
        return (("tuning job", found.job), *((str(k), v) for k, v in trigger.items()))
    origin = mapping(imported.get("origin"))
    source = mapping(imported.get("trigger"))
    return (
        ("imported from", f"{imported.get('model')} v{imported.get('version')}"),
        ("first registered as", f"{origin.get('model')} v{origin.get('version')}"),
        ("stage in the source", imported.get("stage")),
        ("source study", imported.get("study")),
        ("source job", imported.get("job")),
        ("bundle sha256", imported.get("bundle_sha256")),
        ("exported at", imported.get("exported_at")),
        (
            "imported by",
            None if importer is None else f"{importer.actor} (at {importer.at.isoformat()})",
        ),
        *((f"source trigger {k}", v) for k, v in source.items()),
    )


def _registered_by(found: Provenance) -> tuple[Row, ...]:
    entry = found.registration
    who = "— (the audit log records no registration)" if entry is None else entry.actor
    when = "" if entry is None else f" (at {entry.at.isoformat()})"
    return (("registered by", who + when),)


def supplied_section(found: Provenance) -> tuple[Section, ...]:
    """The job, trigger and import the version's details claim and the audit log does not
    confirm, each as the registrant supplied it; none when there is none."""
    if not found.supplied:
        return ()
    rows = [row for key, value in found.supplied.items() for row in _flat(key, value, 0)]
    return (
        Section(
            f"Provenance {UNVERIFIED}",
            text=(
                "No tuning job and no bundle import registered this version, as the audit "
                "log records: what its details say of a job, a trigger or an import was "
                "written by whoever registered it."
            ),
            rows=tuple(rows),
        ),
    )


def _flat(key: str, value: Any, depth: int) -> list[Row]:
    """``value`` as rows, a mapping's entries each as its own (``imported origin
    model``), down to :data:`_FLAT_DEPTH` levels; what lies deeper as JSON."""
    if not isinstance(value, dict) or not value:
        return [(key, value)]
    if depth >= _FLAT_DEPTH:
        return [(key, json.dumps(value, sort_keys=True, default=str))]
    return [row for k, v in value.items() for row in _flat(f"{key} {k}", v, depth + 1)]


def unverified(section: Section, found: Provenance) -> Section:
    """``section`` of figures from the version's details, titled as supplied by the
    registrant when neither a tuning job nor an import registered the version and the
    section holds any."""
    shown = any(v is not None for _, v in section.rows) or len(section.table) > 1
    if found.verified or not shown:
        return section
    return replace(section, title=f"{section.title} ({UNVERIFIED})")


def labelled(name: str, value: Any, found: Provenance) -> str:
    """A row's name, saying the registrant supplied its ``value`` unchecked when neither a
    tuning job nor an import registered the version."""
    return name if found.verified or value is None else f"{name} ({UNVERIFIED})"


def source_created(imported: dict[str, Any] | None) -> tuple[Row, ...]:
    """When an imported version was created before it came here (its own ``created`` is
    the import's time): in the store it was exported from, and, for one that store had
    imported itself, where it was first registered (the oldest ``via`` that says).
    A version imported before imports kept the time has neither row."""
    if imported is None or imported.get("created_at") is None:
        return ()
    rows: tuple[Row, ...] = (("created in the source store", imported["created_at"]),)
    first, via = None, imported.get("via")
    while isinstance(via, dict):
        first = via.get("created_at") or first
        via = via.get("via")
    if first is not None:
        rows += (("created where first registered", first),)
    return rows


#: A job's counts of its window (:func:`tunewatch._tuning_reference.reference_details`):
#: its snapshot's rows and traffic requests, then the rows it trained on and its labelled
#: traffic. A job before snapshots held the whole window told only ``rows`` (trained on)
#: and ``traffic_rows`` (labelled traffic).
_WINDOW_ROWS = (
    ("rows", "rows"),
    ("traffic_rows", "of which traffic"),
    ("trained_rows", "trained on"),
    ("trained_traffic_rows", "of which labelled traffic"),
)
_TRAINED_ROWS = (("rows", "rows"), ("traffic_rows", "of which labelled traffic"))


def row_counts(details: dict[str, Any], found: Provenance) -> tuple[Row, ...]:
    """The version's window: its rows and traffic, those it trained on and their labelled
    traffic (the tuning job's, the source store's for an imported version, the
    registrant's word for one registered by hand)."""
    imported = found.imported
    if imported is None or "rows" in details:
        held, where = details, ""
    else:
        held, where = imported, " (in the source store)"
    names = _WINDOW_ROWS if "trained_rows" in held else _TRAINED_ROWS
    if where:
        return tuple((name + where, held.get(key)) for key, name in names)
    return tuple((labelled(name, held.get(key), found), held.get(key)) for key, name in names)
