"""Importing a bundle in two phases, under a lease on the target model
(:mod:`tunewatch._import_lease`): :func:`plan` reads and checks every member and version
and writes nothing, then :func:`apply` registers what it found to register."""

from __future__ import annotations

import logging
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from shadow import CandidateInfo
from tunewatch._bundle_archive import read_artefact, read_reference
from tunewatch._bundle_lineage import already_imported, imported_details, parent_in_target
from tunewatch._bundle_rules import bundled_rules, champion_held
from tunewatch._config import Config
from tunewatch._errors import ConflictError, NotFoundError, StoreError, TunewatchError
from tunewatch._import_lease import lapsed
from tunewatch._registry import Registry, describe_input
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import HeldLease, Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ImportedVersion:
    """What became of a bundled version; ``held``: why the bundle's champion landed in
    shadow (the rules that would make its promotion wait for an approver, the target's
    and the bundle's own, or the champion the target has)."""

    source_version: int
    version: int
    stage: str
    already_present: bool
    held: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Planned:
    """A version the import will register: its manifest entry, its metadata (but for the
    parent, known once the versions before it are registered), its stage (retired where
    the source retired or rolled it back, not a challenger to promote again) and what
    its candidate check found; ``held``: why the bundle's champion is not the target's."""

    entry: Mapping[str, Any]
    metadata: VersionMetadata
    stage: Literal["champion", "shadow", "retired"]
    inspected: CandidateInfo  # the sandboxed load's findings: not loaded again
    held: tuple[str, ...] = ()


def plan(
    store: Store,
    registry: Registry,
    config: Config,
    archive: zipfile.ZipFile,
    manifest: Mapping[str, Any],
    target: str,
    *,
    digest: str,
    max_artefact_bytes: int,
    renew: Callable[[], None],
) -> tuple[dict[int, int], list[Planned]]:
    """Check the whole bundle against the target without registering anything: which
    versions the target holds already (source version -> its version), and what to
    register. Raises what registering would, for any version: each goes through
    ``Registry.check``, the registration's own checks, and each after the champion the
    import registers is checked against that champion's input, as it will be then. The
    bundle's champion becomes the target's only where neither the target's rules nor the
    bundle's own (:mod:`tunewatch._bundle_rules`) would make its promotion wait."""
    source = manifest["model"]
    regulated = _asked_regulated(manifest)
    fit = VersionMetadata(task=source["task"], feature_names=tuple(source["feature_names"]))
    registry.check_fit(target, fit, regulated=regulated)
    own_rules = bundled_rules(archive, manifest)
    present: dict[int, int] = {}
    planned: list[Planned] = []
    # champion only where there is none and its promotion would need no approver
    current = _champion(store, target)
    # the champion this import registers, which the registration checks later versions
    # against as it checks them against the target's (Registry.check cannot: not there yet)
    new_champion: Planned | None = None
    for entry in sorted(manifest["versions"], key=lambda e: e["version"]):
        done = already_imported(store, target, source["name"], entry)
        if done is not None:
            present[entry["version"]] = done
            continue
        metadata = VersionMetadata(
            task=source["task"],
            feature_names=tuple(source["feature_names"]),
            hyperparameters=entry["hyperparameters"],
            dataset_version=entry.get("dataset_version"),
            study=None,
            details=imported_details(entry, source["name"], manifest, digest),
        )
        renew()
        inspected = registry.check(
            target,
            read_artefact(archive, entry, max_artefact_bytes),
            metadata,
            regulated=regulated,
            reference=read_reference(archive, entry),
        )
        held: tuple[str, ...] = ()
        if entry["stage"] == "champion":
            held = champion_held(
                store,
                config,
                target,
                entry,
                task=source["task"],
                regulated=regulated,
                own_rules=own_rules,
                current=current,
                new_champion=None if new_champion is None else new_champion.entry["version"],
            )
        champion = entry["stage"] == "champion" and not held
        stage: Literal["champion", "shadow", "retired"] = (
            "champion"
            if champion
            else "retired"
            if entry["stage"] in ("retired", "rolled_back")
            else "shadow"
        )
        if new_champion is not None:
            _check_input(target, new_champion, entry["version"], inspected)
        step = Planned(entry, metadata, stage, inspected, held)
        if champion:
            new_champion = step
        planned.append(step)
    return present, planned


def _asked_regulated(manifest: Mapping[str, Any]) -> bool | None:
    """The ``regulated`` a bundle's versions register with: ``True`` from a regulated
    source, else ``None`` (the target's flag stands), as an upload of the same file asks.
    An unregulated source is not a request to unregulate: ``False`` was refused by a model
    the target store regulates (``regulated_mismatch``), which an upload registers into."""
    return True if manifest["model"]["regulated"] else None


def _check_input(target: str, champion: Planned, version: int, inspected: CandidateInfo) -> None:
    """A version after the bundle's champion takes its input, by name and width, as the
    registration will require once that champion is the target's
    (``Registry._check_input``): else the import would stop part-way."""
    expected = champion.inspected.signature.input
    got = inspected.signature.input
    if (got.name, got.shape[1:]) != (expected.name, expected.shape[1:]):
        raise ConflictError(
            f"the bundle's champion (version {champion.entry['version']}) takes input "
            f"{describe_input(expected)} and becomes model {target!r}'s champion; version "
            f"{version} takes {describe_input(got)}: a version must take an input of the "
            "same name and width as the champion; nothing was imported",
            code="signature_mismatch",
        )


def apply(
    store: Store,
    registry: Registry,
    archive: zipfile.ZipFile,
    manifest: Mapping[str, Any],
    target: str,
    present: Mapping[int, int],
    planned: Sequence[Planned],
    *,
    actor: str,
    digest: str,
    sha256_given: bool,
    max_artefact_bytes: int,
    renew: Callable[[], None],
    fence: HeldLease | None = None,
) -> list[ImportedVersion]:
    """Mark the target regulated if the bundle is, register what :func:`plan` found to
    register (each looked for again just before: one registered since is present, not
    registered twice), and audit the import (or, should a registration fail or the import
    be interrupted, the versions it registered until then, read back from the store by the
    mark it writes in their ``imported`` record, ``run``: one whose registration committed
    just before a Ctrl-C is among them, another import's are not). ``sha256_given``:
    the bundle's ``digest`` was checked against the one the operator gave (``--sha256``),
    recorded with the import. ``fence``: the import's lease, which each registration's
    transaction checks and extends (``renew`` checks it a step before: a stop in between
    can outlast it)."""
    source = manifest["model"]
    present = dict(present)  # with those another import registered since the plan
    mapping = dict(present)
    imported = [ImportedVersion(s, v, "present", True) for s, v in present.items()]
    registered: dict[int, int] = {}  # by this import: ``present`` were there before it
    regulated = _asked_regulated(manifest)
    # this run's mark on the versions it registers: a failure counts only its own, not
    # those another import of the same bundle registered
    run = uuid.uuid4().hex
    try:
        if source["regulated"]:
            _regulate(store, target, actor=actor, digest=digest)
        for step in planned:
            entry = step.entry
            renew()
            done = already_imported(store, target, source["name"], entry)
            if done is not None:  # registered since the plan (the lease stops that)
                mapping[entry["version"]] = present[entry["version"]] = done
                imported.append(ImportedVersion(entry["version"], done, "present", True))
                continue
            try:
                row = registry.register(
                    target,
                    read_artefact(archive, entry, max_artefact_bytes),
                    replace(
                        step.metadata,
                        parent_version=parent_in_target(
                            store, target, source["name"], entry, mapping
                        ),
                        details=_with_run(step.metadata.details, run),
                    ),
                    actor=actor,
                    stage=step.stage,  # retired in the same transaction: never a live shadow
                    regulated=regulated,
                    reference=read_reference(archive, entry),
                    inspected=step.inspected,
                    lease=fence,
                    # its own repeats it skips (already_imported); a version the target got
                    # another way is imported beside it, as ever, not a failed import
                    refuse_live_duplicate=False,
                )
            except ConflictError as exc:
                if fence is None or exc.code != "lease_lapsed":
                    raise
                raise lapsed(target, fence.ttl_s) from exc
            mapping[entry["version"]] = registered[entry["version"]] = row.version
            for key, value in entry.get("tags", {}).items():  # checked with the manifest
                store.set_version_tag(target, row.version, key, value, actor=actor)
            imported.append(
                ImportedVersion(entry["version"], row.version, row.stage, False, step.held)
            )
            if step.held:
                logger.info(
                    "model=%s version=%d (the bundle's champion, version %d) is in %s: %s",
                    target,
                    row.version,
                    entry["version"],
                    row.stage,
                    "; ".join(step.held),
                )
        _lacking_tags(store, manifest, target, present, actor=actor)
    except BaseException as exc:
        # The import's boundary: whatever ends it part-way (Ctrl-C and SystemExit too)
        # leaves a record of the versions it registered, then goes on as it was.
        registered = _committed(store, target, run, registered)
        _audit_failure(store, actor, target, digest, source["name"], registered, present, exc)
        raise
    imported.sort(key=lambda i: i.source_version)
    store.append_audit(
        actor=actor,
        action="import_bundle",
        target=target,
        details={
            "bundle_sha256": digest,
            "sha256_given": sha256_given,
            "from_model": source["name"],
            # every bundled version's counterpart in the target, however it got there
            "versions": {str(i.source_version): i.version for i in imported},
            **_outcome(registered, present),
            # why the bundle's champion is not the target's: the rules that would make its
            # promotion wait (the target's and the bundle's own), or the target's champion
            "held_in_shadow": {str(i.source_version): list(i.held) for i in imported if i.held},
        },
    )
    return imported


def _lacking_tags(
    store: Store,
    manifest: Mapping[str, Any],
    target: str,
    present: Mapping[int, int],
    *,
    actor: str,
) -> None:
    """Give each version already ``present`` the bundled tags it never held, each audited:
    an import interrupted between registering a version and setting its tags (each set in
    a transaction of its own) left it untagged, and importing again found it present and
    set nothing. A tag it holds keeps the target's value, and one someone deleted there
    (its ``delete_tag`` entry) stays deleted."""
    wanted = {e["version"]: e.get("tags", {}) for e in manifest["versions"]}
    for source_version, version in sorted(present.items()):
        tags = wanted.get(source_version) or {}
        if not tags:
            continue
        kept = set(store.tags_of_versions(target, [version]).get(version, {}))
        kept |= store.deleted_tag_keys(target, version)
        for key, value in tags.items():
            if key not in kept:
                store.set_version_tag(target, version, key, value, actor=actor)


def _with_run(details: Mapping[str, Any], run: str) -> dict[str, Any]:
    """``details`` with the import's ``run`` in its ``imported`` record."""
    return {**details, "imported": {**details["imported"], "run": run}}


def _committed(
    store: Store, target: str, run: str, registered: Mapping[int, int]
) -> dict[int, int]:
    """The versions the import ``run`` that failed part-way registered (source version ->
    the target's): those the store holds marked with ``run``, with those it saw registered
    (``registered``). A registration that committed before a Ctrl-C stopped it returning is
    among them; the ones it saw are kept should the store not answer (it may be what
    failed). Matched on the bundle's digest instead, the versions another import of the
    same bundle registered counted as this one's."""
    try:
        versions = store.list_versions(target)
    except NotFoundError:
        return dict(registered)  # nothing committed: the first registration creates it
    except StoreError:
        logger.exception(
            "could not read back the versions the import into model=%s registered", target
        )
        return dict(registered)
    found = dict(registered)
    for v in versions:
        record = v.details.get("imported")
        if not isinstance(record, Mapping) or record.get("run") != run:
            continue
        source = record.get("version")
        if type(source) is int:  # not a bool
            found[source] = v.version
    return found


def _outcome(registered: Mapping[int, int], present: Mapping[int, int]) -> dict[str, Any]:
    """An import's audit details that tell its work apart (source version -> the target's):
    the versions it ``registered``, and those ``already_present`` before it began (a
    repeated import, a retry of one that failed part-way, a round trip)."""
    return {
        "registered": {str(s): v for s, v in sorted(registered.items())},
        "already_present": {str(s): v for s, v in sorted(present.items())},
    }


def _regulate(store: Store, target: str, *, actor: str, digest: str) -> None:
    """A regulated bundle marks an unregulated target regulated (audited), before anything
    is registered: registering a version would, but the target may hold every version
    already (imported before the source was regulated) and register none. A target not
    there yet is created regulated by its first registration."""
    try:
        changed = store.regulate_model(
            target, actor=actor, reason=f"imported a regulated bundle (sha256 {digest})"
        )
    except NotFoundError:
        return  # not there yet: its first registration creates it regulated
    if changed:
        logger.info("model=%s marked regulated: bundle %s is", target, digest[:12])


def _audit_failure(
    store: Store,
    actor: str,
    target: str,
    digest: str,
    source_model: str,
    registered: Mapping[int, int],
    present: Mapping[int, int],
    exc: BaseException,
) -> None:
    """Record an import that failed (or was interrupted) after its checks, the versions
    it registered (``versions``, as before, and ``registered``) and those already there."""
    code = exc.code if isinstance(exc, TunewatchError) else type(exc).__name__
    error = str(exc) or type(exc).__name__  # a KeyboardInterrupt says nothing
    logger.warning(
        "import of bundle %s into model=%s failed after registering %s: %s",
        digest[:12],
        target,
        dict(registered),
        error,
    )
    try:
        store.append_audit(
            actor=actor,
            action="import_bundle_failed",
            target=target,
            details={
                "bundle_sha256": digest,
                "from_model": source_model,
                "versions": {str(s): v for s, v in registered.items()},
                **_outcome(registered, present),
                "error": error[:1000],
                "code": code,
            },
        )
    except StoreError:
        logger.exception("could not audit the failed import into model=%s", target)


def _champion(store: Store, model: str) -> int | None:
    try:
        champion = store.champion(model)
    except NotFoundError:
        return None
    return champion.version if champion is not None else None
