"""Imports for the rationale-report tests: a bundle imported into a daemon, a report's
section, and a version registered with an ``imported`` record made an import's as the
audit log records one: the ``import_bundle`` entry a bundle import writes after it
registered the version (:func:`tunewatch._bundle_import.apply`). Rationale reports
present a version's import only when such an entry confirms it."""

from __future__ import annotations

from pathlib import Path

from tunewatch._bundle import import_bundle
from tunewatch._daemon import Daemon
from tunewatch.store import AuditEntry, Store


def import_into(daemon: Daemon, bundle: Path, *, actor: str = "importer") -> int:
    """Import ``bundle`` into ``daemon``'s store as ``actor``; the last version imported
    (the target's number)."""
    _, imported, _ = import_bundle(
        daemon.store,
        daemon.registry,
        daemon.config,
        bundle,
        actor=actor,
        max_artefact_bytes=10**8,
    )
    return imported[-1].version


def section(markdown: str, title: str) -> str:
    """The section of a Markdown report headed ``## {title}``, to the next heading."""
    start = markdown.index(f"## {title}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:] if end == -1 else markdown[start:end]


def audit_import(
    store: Store, model: str, version: int, *, actor: str = "t", source_version: int = 7
) -> AuditEntry:
    """The ``import_bundle`` entry of an import by ``actor`` that registered ``version``
    of ``model`` from ``source_version`` of the bundle's model."""
    mapped = {str(source_version): version}
    return store.append_audit(
        actor=actor,
        action="import_bundle",
        target=model,
        details={
            "bundle_sha256": "ab" * 32,
            "sha256_given": False,
            "from_model": model,
            "versions": mapped,
            "registered": mapped,
            "already_present": {},
            "held_in_shadow": {},
        },
    )
