"""A version registered with an ``imported`` record, made an import's as the audit log
records one: the ``import_bundle`` entry a bundle import writes after it registered the
version (:func:`tunewatch._bundle_import.apply`). Rationale reports present a version's
import only when such an entry confirms it."""

from __future__ import annotations

from tunewatch.store import AuditEntry, Store


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
