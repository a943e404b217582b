"""Model bundles: a model's versions, artefacts and configuration, moved between
environments (``tunewatch export`` / ``tunewatch import``).

A bundle is a zip file holding ``manifest.json`` (format version, the model, its config,
each version's metadata, stage and tags, where its parent was first registered, and its
``history``: the rows of the source report's comparison evidence and decisions, versioned,
:mod:`tunewatch._report_source_history`), the
versions' artefacts under ``artefacts/<sha256>.onnx`` and ``artefacts/<sha256>.npz``
(reference snapshots), and the search space the config names, ``spaces/<sha256>.yaml``
(``search_space`` in the manifest: the config keeps the source's path), and nothing
else: a bundle holding another member, or one twice, is refused, as is one of more than
``MAX_BUNDLE_VERSIONS`` versions. Nothing is extracted to disk: members are read by the
names the manifest gives, within size limits (an artefact's and a reference snapshot's
is ``server.max_artefact_bytes``), and each is checked against its SHA-256 before it is
used (:mod:`tunewatch._bundle_archive`). Imported versions go through the same registration as
any other (the sandboxed candidate check, the model's task, features and regulated flag),
so a bundle cannot bring in what an upload could not; the whole bundle is checked before
anything is registered (:mod:`tunewatch._bundle_import`), and versions brought in before are
recognised by where they came from (:mod:`tunewatch._bundle_lineage`).

The manifest is covered by no hash of its own (each artefact's proves only that it matches
the manifest): an edited one (``regulated: false``, hyperparameters relabelled) imported,
exit 0, its champion served with no approver. What ties a bundle to its export is the
SHA-256 of the whole file: the export records it in the source's audit log
(``export_bundle``) and returns it (the CLI prints it), and an import given it
(``sha256``, ``--sha256``) refuses any other file before reading it. An import into a
model the target governs — regulated by its config or its store, or given safe ranges by
its config or by the one a daemon of the store stored — must be given it
(:func:`sha256_required`): the bundle's own flag cannot decide, since a forger drops it.
The bytes imported are the bytes hashed: the file is copied into a private temporary file
as it is hashed, and the copy is read (a file rewritten in place after its hash was
imported under the digest given).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunewatch._artefacts import ArtefactStore
from tunewatch._bundle_archive import (
    FORMAT,
    FORMAT_VERSION,
    MAX_BUNDLE_VERSIONS,
    MAX_MANIFEST_BYTES,
    MAX_SPACE_BYTES,
    BundleError,
    check_members,
    is_sha256,
    open_archive,
    open_bundle,
    read_manifest,
    read_space,
    sha256_file,
    space_member,
)
from tunewatch._bundle_file import copying, private_copy, write_zip
from tunewatch._bundle_import import ImportedVersion, apply, plan
from tunewatch._bundle_lineage import identity
from tunewatch._config import Config
from tunewatch._errors import NotFoundError
from tunewatch._import_lease import ImportLease
from tunewatch._registry import DERIVED_DETAILS, Registry
from tunewatch._report import source_history
from tunewatch.store import MAX_MODEL_NAME, Store, VersionRow, valid_model_name

__all__ = [
    "BundleError",
    "BundledConfig",
    "ExportedBundle",
    "ImportedVersion",
    "export_bundle",
    "import_bundle",
    "sha256_required",
]


@dataclass(frozen=True, slots=True)
class BundledConfig:
    """The model's config from a bundle, for the operator to merge into the target's, and
    the search-space file it names (``settings["tuning"]["search_space"]`` is still the
    source's path: write ``search_space`` out and point the setting at it).

    The live split's challenger (``comparison.split.challenger``) is the version the
    import made of the source's in the target: the source's number would name another
    version there. Where the bundle does not hold that version the split is ``None``,
    and ``unbundled_split`` is the source's: kept, it would send traffic to whatever
    version the target holds, or registers later, under that number."""

    settings: dict[str, Any]
    search_space: bytes | None
    unbundled_split: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ExportedBundle:
    """What an export wrote: the versions, and the SHA-256 of the bundle file, as the
    source's audit log records it (``export_bundle``) and an import checks it."""

    versions: tuple[int, ...]
    sha256: str


logger = logging.getLogger(__name__)

#: The share of the manifest an import reads (``MAX_MANIFEST_BYTES``) the exported
#: versions' report histories take at most, in all: each the newest rows that fit its part.
HISTORY_BYTES = MAX_MANIFEST_BYTES // 4


def export_bundle(
    store: Store,
    artefacts: ArtefactStore,
    config: Config,
    model: str,
    path: str | Path,
    *,
    versions: Sequence[int] | None = None,
    actor: str = "tunewatch",
) -> ExportedBundle:
    """Write ``model``'s ``versions`` (default: the champion) to the bundle at ``path``;
    returns the versions written and the bundle file's SHA-256.

    The source's audit log records the export (``export_bundle``: ``actor``, the model,
    the versions and the SHA-256), once the file is written and before it takes its place
    at ``path``: a bundle whose export could not be recorded is not left there."""
    row = store.get_model(model)
    if versions and len(set(versions)) > MAX_BUNDLE_VERSIONS:  # an import would refuse it
        raise BundleError(
            f"cannot export {len(set(versions))} versions: a bundle holds at most "
            f"{MAX_BUNDLE_VERSIONS} versions"
        )
    if versions:
        # one read: read one by one, a promotion meanwhile left two champions in the bundle
        chosen = store.get_versions(model, versions)
    else:
        champion = store.champion(model)
        if champion is None:
            raise BundleError(f"model {model!r} has no champion; name the versions to export")
        chosen = [champion]
    cfg = config.model(model)
    entries = []
    # each member's bytes, read as it is written: one artefact in memory at a time
    members: dict[str, Callable[[], bytes]] = {}
    space = None
    if cfg is not None and cfg.tuning.search_space is not None:
        data = _space_bytes(cfg.tuning.search_space)
        space = {"sha256": hashlib.sha256(data).hexdigest()}
        members[space_member(space["sha256"])] = lambda: data
    tags = store.tags_of_versions(row.name, [v.version for v in chosen])
    for v in chosen:  # an artefact two versions share is one member, where it came first
        name = f"artefacts/{v.artefact_sha256}.onnx"
        members.setdefault(name, functools.partial(artefacts.get, v.artefact_sha256))
        reference = v.details.get("reference_sha256")
        if reference:
            members.setdefault(
                f"artefacts/{reference}.npz", functools.partial(artefacts.get, reference, ".npz")
            )
        entries.append(
            {
                "version": v.version,
                "stage": v.stage,
                "artefact_sha256": v.artefact_sha256,
                "reference_sha256": reference,
                "hyperparameters": v.hyperparameters,
                "dataset_version": v.dataset_version,
                "parent_version": v.parent_version,
                "parent_origin": _parent_origin(store, row.name, v),
                "study": v.study,
                "details": {k: x for k, x in v.details.items() if k not in DERIVED_DETAILS},
                "created_at": v.created_at.isoformat(),
                "tags": tags.get(v.version, {}),  # absent from bundles written before tags
                # what the source's report says of the tests and decisions about it
                "history": source_history(
                    store, row.name, v.version, max_bytes=HISTORY_BYTES // len(chosen)
                ),
            }
        )
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": datetime.now(UTC).isoformat(),
        "model": {
            "name": row.name,
            "task": row.task,
            "feature_names": list(row.feature_names),
            # the config's flag too: a daemon sets the store's from it only when it starts
            "regulated": row.regulated or (cfg is not None and cfg.regulated),
        },
        "config": cfg.model_dump(mode="json") if cfg is not None else None,
        "search_space": space,
        "versions": entries,
    }
    target = Path(path)
    written = tuple(v.version for v in chosen)

    def record(digest: str) -> None:
        store.append_audit(
            actor=actor,
            action="export_bundle",
            target=row.name,
            details={
                "bundle_sha256": digest,
                "versions": list(written),
                "exported_at": manifest["exported_at"],
                "file": target.name,
            },
        )

    text = json.dumps(manifest, indent=2, sort_keys=True)
    digest = write_zip(target, text, members, record=record)
    logger.info(
        "exported model=%s versions=%s to %s (sha256 %s)", model, list(written), target, digest
    )
    return ExportedBundle(written, digest)


def _parent_origin(store: Store, model: str, v: VersionRow) -> dict[str, Any] | None:
    """Where ``v``'s parent was first registered (as an import records its ``origin``), and
    its artefact: the target finds the parent by it when the bundle does not hold it."""
    if v.parent_version is None:
        return None
    try:
        parent = store.get_version(model, v.parent_version)
    except NotFoundError:
        return None
    origin = identity(model, parent.version, parent.details)
    return {"model": origin[0], "version": origin[1], "artefact_sha256": parent.artefact_sha256}


def _space_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPACE_BYTES + 1)
    except OSError as exc:
        raise BundleError(f"cannot read search space {path!r}: {exc.strerror}") from exc
    if len(data) > MAX_SPACE_BYTES:
        raise BundleError(
            f"search space {path!r} is larger than a bundle holds ({MAX_SPACE_BYTES} bytes)"
        )
    return data


def import_bundle(
    store: Store,
    registry: Registry,
    config: Config,
    path: str | Path,
    *,
    actor: str,
    max_artefact_bytes: int,
    name: str | None = None,
    check_space: Callable[[bytes], None] | None = None,
    sha256: str | None = None,
) -> tuple[str, list[ImportedVersion], BundledConfig | None]:
    """Register the bundle's versions under ``name`` (default: the bundle's model name).

    ``sha256``: the bundle file's SHA-256 as its export gave it (hex, either case); a file
    of another is refused (``BundleError``) before anything in it is read. It must be given
    for a model the target governs (:func:`sha256_required`), and the audit entry records
    whether it was (``sha256_given``).

    Returns the model name, what became of each version, and the model's config from the
    bundle with its search space (for the operator to merge into the target's config file),
    its live split's challenger renumbered to the target's version (see :class:`BundledConfig`).
    A version the model already holds is skipped (the same artefact, imported from that
    version or from the same origin, or the origin itself), so an import can be repeated
    and a round trip between environments adds nothing. A parent the bundle does not hold
    is found where an earlier import brought it, or by where it was first registered. The
    bundle's champion becomes champion only where the model has none yet and promoting it
    would need no approver (``config`` holds the target's rules); versions the source
    retired or rolled back arrive retired, everything else in shadow, to be promoted under
    the target's own governance.

    The bundle must hold the members its manifest names and no other, each once and within
    its size limit (``max_artefact_bytes`` for artefacts and reference snapshots, which the
    caller takes from ``server.max_artefact_bytes``). Every member is read, checked against
    its hash and inspected, and every version's metadata checked against the target model,
    before the first version is registered: a refused bundle registers nothing. Should a
    registration still fail (a champion registered meanwhile, the store) or the import be
    interrupted (Ctrl-C), the audit log records ``import_bundle_failed`` with the versions
    registered until then. Imports into one model take turns: one started while another
    runs is refused (``ConflictError``, ``import_in_progress``). ``check_space`` is called
    with the bundle's search space, once checked and before anything is registered, when
    the bundle holds one (the caller checks it can write it out). ``path`` must be a
    regular file: a device or a FIFO is refused (``BundleError``) before it is read.
    """
    expected = None if sha256 is None else sha256.lower()
    if expected is not None and not is_sha256(expected):
        raise BundleError(f"`sha256` must be 64 hexadecimal digits, got {sha256!r:.80}")
    # The bytes read are the bytes hashed: copied as they are hashed into a file of this
    # process's own, which is what is read. Hashed, then read again from ``path``, a file
    # rewritten in between was imported under the digest given.
    with open_bundle(path) as file, private_copy(path, config.artefact_dir.parent) as copy:
        digest = sha256_file(copying(file, copy, path), path)
        if expected is not None and digest != expected:
            raise BundleError(
                f"bundle {str(path)!r} has SHA-256 {digest}, not {expected} (--sha256): not "
                "the bundle exported, or altered since; nothing was imported"
            )
        copy.seek(0)
        with open_archive(copy, path) as archive:
            return _import_archive(
                store,
                registry,
                config,
                archive,
                digest,
                actor=actor,
                max_artefact_bytes=max_artefact_bytes,
                name=name,
                check_space=check_space,
                sha256_given=expected is not None,
            )


def sha256_required(store: Store, config: Config, model: str) -> str | None:
    """Why an import into ``model`` must be given the bundle's SHA-256 ("regulated by this
    store's config"), or ``None`` where it need not: the target's own rules decide, the
    model's config (``regulated``, ``safe_ranges``), the store's regulated flag and the
    regulation and ``safe_ranges`` a daemon's config stored for the model (an import run
    under a config that does not list it took a bundle relabelled into them unverified, and
    its champion passed them). The bundle's flag cannot: a forger sets it false. A model the target
    neither regulates nor gives safe ranges takes an unverified bundle, as it takes
    ``register --stage champion`` from the same operator; the audit records that no
    digest was given."""
    cfg = config.model(model)
    if cfg is not None and cfg.regulated:
        return "regulated by this store's config"
    if cfg is not None and cfg.safe_ranges:
        return "given safe ranges by this store's config"
    try:
        if store.get_model(model).regulated:
            return "regulated in this store"
    except NotFoundError:
        pass  # not there yet: its flag is set by its first registration
    # the ranges a daemon's config gave the model, stored as it started (registered or
    # not), which a promotion checks whatever config it runs under
    stored = store.stored_safe_ranges(model)
    if stored is not None and stored.regulated:  # a daemon's config regulates it
        return "regulated in this store (by the config of a daemon)"
    if stored is not None and stored.safe_ranges:
        return "given safe ranges in this store (by the config of a daemon)"
    return None


def _import_archive(
    store: Store,
    registry: Registry,
    config: Config,
    archive: zipfile.ZipFile,
    digest: str,
    *,
    actor: str,
    max_artefact_bytes: int,
    name: str | None,
    check_space: Callable[[bytes], None] | None,
    sha256_given: bool,
) -> tuple[str, list[ImportedVersion], BundledConfig | None]:
    """:func:`import_bundle`, from the open archive whose file hashes to ``digest``."""
    manifest = read_manifest(archive)
    source = manifest["model"]
    target = source["name"] if name is None else name  # "" is refused below
    if not valid_model_name(target):
        raise BundleError(
            f"model name {target[:80]!r} must be 1 to {MAX_MODEL_NAME} printable characters, "
            "not a path and no space first or last"
        )
    required = None if sha256_given else sha256_required(store, config, target)
    if required is not None:  # before any member is read
        raise BundleError(
            f"model {target!r} is {required}: name the bundle's SHA-256 (--sha256, which "
            "`tunewatch export` printed and recorded in the source's audit log) to import "
            "into it; nothing was imported",
            code="sha256_required",
        )
    check_members(archive, manifest, max_artefact_bytes=max_artefact_bytes)
    space = read_space(archive, manifest)  # checked like the artefacts, before any write
    if space is not None and check_space is not None:
        check_space(space)  # where the caller will write it: refused, nothing is imported
    with ImportLease(store, target) as lease:  # renewed by a heartbeat, checked per step
        present, planned = plan(
            store,
            registry,
            config,
            archive,
            manifest,
            target,
            digest=digest,
            max_artefact_bytes=max_artefact_bytes,
            renew=lease.renew,
        )
        imported = apply(
            store,
            registry,
            archive,
            manifest,
            target,
            present,
            planned,
            actor=actor,
            digest=digest,
            sha256_given=sha256_given,
            max_artefact_bytes=max_artefact_bytes,
            renew=lease.renew,
            fence=lease.held,
        )
    settings = manifest.get("config")
    if settings is None:
        return target, imported, None
    settings, unbundled = _renumber_split(settings, {i.source_version: i.version for i in imported})
    return target, imported, BundledConfig(settings, space, unbundled)


def _renumber_split(
    settings: dict[str, Any], versions: Mapping[int, int]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``settings`` with the live split's challenger, a source version, renumbered through
    ``versions`` (source version -> the target's, for every version of the bundle); and
    the source's split, where the bundle does not hold its challenger, with the split
    set to ``None``: its number would name whatever the target holds under it."""
    comparison = settings.get("comparison")
    split = comparison.get("split") if isinstance(comparison, dict) else None
    if not isinstance(comparison, dict) or not isinstance(split, dict):
        return settings, None  # no split (or not one: the target's config refuses it)
    challenger = split.get("challenger")
    if isinstance(challenger, int) and not isinstance(challenger, bool) and challenger in versions:
        renumbered: dict[str, Any] | None = {**split, "challenger": versions[challenger]}
        unbundled = None
    else:
        renumbered, unbundled = None, split
    return {**settings, "comparison": {**comparison, "split": renumbered}}, unbundled
