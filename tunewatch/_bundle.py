"""Model bundles: a model's versions, artefacts and configuration, moved between
environments (``tunewatch export`` / ``tunewatch import``).

A bundle is a zip file holding ``manifest.json`` (format version, the model, its config,
each version's metadata and stage) and the versions' artefacts under
``artefacts/<sha256>.onnx`` and ``artefacts/<sha256>.npz`` (reference snapshots). Nothing
is extracted to disk: members are read by the names the manifest gives, within size
limits, and each is checked against its SHA-256 before it is used. Imported versions go
through the same registration as any other (the sandboxed candidate check, the model's
task, features and regulated flag), so a bundle cannot bring in what an upload could not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config
from tunewatch._errors import NotFoundError, TunewatchError
from tunewatch._governance import champion_registration_rules
from tunewatch._registry import DERIVED_DETAILS, TASKS, Reference, Registry, VersionMetadata
from tunewatch.store import Store, valid_model_name

logger = logging.getLogger(__name__)

FORMAT = "tunewatch-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_HEX = frozenset("0123456789abcdef")


class BundleError(TunewatchError, ValueError):
    """A bundle cannot be written or read: the message says which part and why."""

    code = "invalid_bundle"


@dataclass(frozen=True, slots=True)
class ImportedVersion:
    source_version: int
    version: int
    stage: str
    already_present: bool


def export_bundle(
    store: Store,
    artefacts: ArtefactStore,
    config: Config,
    model: str,
    path: str | Path,
    *,
    versions: Sequence[int] | None = None,
) -> list[int]:
    """Write ``model``'s ``versions`` (default: the champion) to the bundle at ``path``;
    returns the versions written."""
    row = store.get_model(model)
    if versions:
        chosen = [store.get_version(model, v) for v in sorted(set(versions))]
    else:
        champion = store.champion(model)
        if champion is None:
            raise BundleError(f"model {model!r} has no champion; name the versions to export")
        chosen = [champion]
    cfg = config.model(model)
    entries, files = [], {}
    for v in chosen:
        files[f"artefacts/{v.artefact_sha256}.onnx"] = artefacts.get(v.artefact_sha256)
        reference = v.details.get("reference_sha256")
        if reference:
            files[f"artefacts/{reference}.npz"] = artefacts.get(reference, ".npz")
        entries.append(
            {
                "version": v.version,
                "stage": v.stage,
                "artefact_sha256": v.artefact_sha256,
                "reference_sha256": reference,
                "hyperparameters": v.hyperparameters,
                "dataset_version": v.dataset_version,
                "parent_version": v.parent_version,
                "study": v.study,
                "details": {k: x for k, x in v.details.items() if k not in DERIVED_DETAILS},
                "created_at": v.created_at.isoformat(),
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
            "regulated": row.regulated,
        },
        "config": cfg.model_dump(mode="json") if cfg is not None else None,
        "versions": entries,
    }
    target = Path(path)
    try:
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
            for name, data in files.items():
                archive.writestr(name, data)
    except OSError as exc:
        raise BundleError(f"cannot write bundle {str(target)!r}: {exc.strerror}") from exc
    logger.info("exported model=%s versions=%s to %s", model, [v.version for v in chosen], target)
    return [v.version for v in chosen]


def import_bundle(
    store: Store,
    registry: Registry,
    config: Config,
    path: str | Path,
    *,
    actor: str,
    max_artefact_bytes: int,
    name: str | None = None,
) -> tuple[str, list[ImportedVersion], dict[str, Any] | None]:
    """Register the bundle's versions under ``name`` (default: the bundle's model name).

    Returns the model name, what became of each version, and the model's config from the
    bundle (for the operator to merge into the target's config file). A version the model
    already holds from this bundle's model is skipped, so an import can be repeated. The
    bundle's champion becomes champion only where the model has none yet and promoting it
    would need no approver (``config`` holds the target's rules); everything else arrives
    in shadow, to be promoted under the target's own governance.
    """
    digest = _sha256_file(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{str(path)!r} is not a readable bundle: {exc}") from exc
    with archive:
        manifest = _manifest(archive)
        source = manifest["model"]
        target = name or source["name"]
        if not valid_model_name(target):
            raise BundleError(f"model name {target[:80]!r} must be printable and not a path")
        imported: list[ImportedVersion] = []
        mapping: dict[int, int] = {}
        for entry in sorted(manifest["versions"], key=lambda e: e["version"]):
            done = _already_imported(store, target, source["name"], entry)
            if done is not None:
                mapping[entry["version"]] = done
                imported.append(ImportedVersion(entry["version"], done, "present", True))
                continue
            onnx = _member(
                archive, f"artefacts/{entry['artefact_sha256']}.onnx", max_artefact_bytes
            )
            reference = None
            if entry.get("reference_sha256"):
                data = _member(
                    archive, f"artefacts/{entry['reference_sha256']}.npz", Reference.MAX_BYTES
                )
                reference = Reference.from_bytes(data)
            # champion only where there is none and its promotion would need no approver
            champion_wanted = (
                entry["stage"] == "champion"
                and _champion(store, target) is None
                and not champion_registration_rules(
                    store,
                    config,
                    target,
                    task=source["task"],
                    regulated=source["regulated"],
                    hyperparameters=entry["hyperparameters"],
                )
            )
            details = {
                **entry["details"],
                "imported": {
                    "model": source["name"],
                    "version": entry["version"],
                    "parent_version": entry.get("parent_version"),
                    # study names number jobs per store: kept here, not as the version's
                    # study, where it could collide with a job of this store
                    "study": entry.get("study"),
                    "bundle_sha256": digest,
                    "exported_at": manifest.get("exported_at"),
                },
            }
            row = registry.register(
                target,
                onnx,
                VersionMetadata(
                    task=source["task"],
                    feature_names=tuple(source["feature_names"]),
                    hyperparameters=entry["hyperparameters"],
                    dataset_version=entry.get("dataset_version"),
                    parent_version=_parent(store, target, source["name"], entry, mapping),
                    study=None,
                    details=details,
                ),
                actor=actor,
                stage="champion" if champion_wanted else "shadow",
                regulated=source["regulated"],
                reference=reference,
            )
            mapping[entry["version"]] = row.version
            imported.append(ImportedVersion(entry["version"], row.version, row.stage, False))
        store.append_audit(
            actor=actor,
            action="import_bundle",
            target=target,
            details={
                "bundle_sha256": digest,
                "from_model": source["name"],
                "versions": {str(i.source_version): i.version for i in imported},
            },
        )
    return target, imported, manifest.get("config")


def _manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    raw = _member(archive, MANIFEST, MAX_MANIFEST_BYTES, checked=False)
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"the bundle's {MANIFEST} is not JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"not a tunewatch bundle: {MANIFEST} lacks `format: {FORMAT}`")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise BundleError(f"`format_version` must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"bundle format {version} is newer than this tunewatch reads ({FORMAT_VERSION}); "
            "upgrade tunewatch"
        )
    try:
        model = manifest["model"]
        if not isinstance(model, dict):
            raise TypeError("`model` must be an object")
        if not isinstance(manifest.get("config"), dict | None):
            raise TypeError("`config` must be an object")
        for key, kind in (
            ("name", str),
            ("task", str),
            ("feature_names", list),
            ("regulated", bool),
        ):
            if not isinstance(model.get(key), kind):
                raise TypeError(f"`model.{key}` must be of type {kind.__name__}")
        if model["task"] not in TASKS:
            raise ValueError(
                f"`model.task` must be one of {', '.join(TASKS)}, got {model['task']!r}"
            )
        if not isinstance(manifest["versions"], list):
            raise TypeError("`versions` must be a list")
        for entry in manifest["versions"]:
            _check_entry(entry)
        if not manifest["versions"]:
            raise ValueError("`versions` is empty")
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"the bundle's {MANIFEST} is incomplete: {exc}") from exc
    return manifest


def _check_entry(entry: Any) -> None:
    if not isinstance(entry, dict):
        raise TypeError(f"each of `versions` must be an object, got {entry!r:.100}")
    if not isinstance(entry.get("version"), int) or isinstance(entry.get("version"), bool):
        raise TypeError(f"a version entry needs an integer `version`, got {entry!r:.200}")
    for key in ("artefact_sha256", "reference_sha256"):
        value = entry.get(key)
        if key == "reference_sha256" and value is None:
            continue
        if not (
            isinstance(value, str) and len(value) == 64 and set(value) <= set("0123456789abcdef")
        ):
            raise ValueError(
                f"version {entry['version']}: `{key}` must be a SHA-256, got {value!r}"
            )
    for key, kind in (("hyperparameters", dict), ("details", dict), ("stage", str)):
        if not isinstance(entry.get(key), kind):
            raise TypeError(f"version {entry['version']}: `{key}` must be of type {kind.__name__}")
    for key, kinds in (("dataset_version", str), ("study", str), ("parent_version", int)):
        if entry.get(key) is not None and not isinstance(entry[key], kinds):
            raise TypeError(f"version {entry['version']}: `{key}` must be of type {kinds.__name__}")


def _member(archive: zipfile.ZipFile, name: str, limit: int, *, checked: bool = True) -> bytes:
    """The member ``name``, refused when missing, larger than ``limit`` once unpacked, or
    (``checked``) not matching the SHA-256 in its name."""
    try:
        info = archive.getinfo(name)
    except KeyError as exc:
        raise BundleError(f"the bundle lacks {name}") from exc
    if info.file_size > limit:
        raise BundleError(f"{name} unpacks to {info.file_size} bytes; the limit is {limit}")
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except (
        OSError,
        zipfile.BadZipFile,
        RuntimeError,
        zlib.error,
    ) as exc:  # RuntimeError: encrypted
        raise BundleError(f"cannot read {name} from the bundle: {exc}") from exc
    if len(data) > limit:
        raise BundleError(f"{name} unpacks to more than {limit} bytes")
    if checked:
        expected = Path(name).stem
        if hashlib.sha256(data).hexdigest() != expected:
            raise BundleError(f"{name} does not match its SHA-256: the bundle was altered")
    return data


def _parent(
    store: Store, target: str, source_model: str, entry: Mapping[str, Any], mapping: dict[int, int]
) -> int | None:
    """The target's version that the entry's parent became: in this import, or brought in
    by an earlier one."""
    parent = entry.get("parent_version")
    if parent is None:
        return None
    return (
        mapping[parent] if parent in mapping else _imported_as(store, target, source_model, parent)
    )


def _already_imported(
    store: Store, target: str, source_model: str, entry: Mapping[str, Any]
) -> int | None:
    return _imported_as(
        store, target, source_model, entry["version"], sha256=entry["artefact_sha256"]
    )


def _imported_as(
    store: Store, target: str, source_model: str, source_version: int, *, sha256: str | None = None
) -> int | None:
    """The target's version imported from ``source_model``'s ``source_version`` (with that
    artefact, when ``sha256`` is given), if any."""
    try:
        versions = store.list_versions(target)
    except NotFoundError:
        return None
    for v in versions:
        origin = v.details.get("imported") or {}
        if (
            origin.get("model") == source_model
            and origin.get("version") == source_version
            and sha256 in (None, v.artefact_sha256)
        ):
            return v.version
    return None


def _champion(store: Store, model: str) -> int | None:
    try:
        champion = store.champion(model)
    except NotFoundError:
        return None
    return champion.version if champion is not None else None


def _sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise BundleError(f"cannot read bundle {str(path)!r}: {exc.strerror}") from exc
    return digest.hexdigest()
