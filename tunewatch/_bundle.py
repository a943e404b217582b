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
import lzma
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from shadow import CandidateRejectedError, inspect_candidate
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config
from tunewatch._errors import ConflictError, NotFoundError, StoreError, TunewatchError
from tunewatch._governance import champion_registration_rules
from tunewatch._registry import (
    DERIVED_DETAILS,
    TASKS,
    Reference,
    RegistrationError,
    Registry,
    VersionMetadata,
    recorded_parity_error,
)
from tunewatch.store import Stage, Store, canonical_json, valid_model_name

logger = logging.getLogger(__name__)

FORMAT = "tunewatch-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
STAGES: tuple[str, ...] = get_args(Stage)
_HEX = frozenset("0123456789abcdef")
#: Details a tuning job writes about the store it ran in: its job and trigger, and how many
#: of the version's reference rows were that store's traffic (which that store's next job
#: reads again). An import keeps them under ``details.imported``, not as the target's.
PER_STORE_DETAILS = ("job", "trigger", "rows", "traffic_rows")


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
    already holds is skipped (the same artefact, imported from that version or from the
    same origin, or the origin itself), so an import can be repeated and a round trip
    between environments adds nothing. The bundle's champion becomes champion only where
    the model has none yet and promoting it would need no approver (``config`` holds the
    target's rules); versions the source retired or rolled back arrive retired, everything
    else in shadow, to be promoted under the target's own governance.

    Every member is read, checked against its hash and inspected, and every version's
    metadata checked against the target model, before the first version is registered: a
    refused bundle registers nothing. Should a registration still fail (a champion
    registered meanwhile, the store), the audit log records ``import_bundle_failed`` with
    the versions registered until then. Imports into one model take turns: one started
    while another runs is refused (``ConflictError``, ``import_in_progress``).
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
        # renewed before each candidate check, which may take its whole timeout
        ttl = 2 * config.scoring.candidate_timeout_s + 60
        with _ImportLease(store, target, ttl_s=ttl) as lease:
            present, planned = _plan(
                store,
                config,
                archive,
                manifest,
                target,
                digest=digest,
                max_artefact_bytes=max_artefact_bytes,
                renew=lease.renew,
            )
            imported = _apply(
                store,
                registry,
                archive,
                manifest,
                target,
                present,
                planned,
                actor=actor,
                digest=digest,
                max_artefact_bytes=max_artefact_bytes,
                renew=lease.renew,
            )
    return target, imported, manifest.get("config")


def _apply(
    store: Store,
    registry: Registry,
    archive: zipfile.ZipFile,
    manifest: Mapping[str, Any],
    target: str,
    present: Mapping[int, int],
    planned: Sequence[_Planned],
    *,
    actor: str,
    digest: str,
    max_artefact_bytes: int,
    renew: Callable[[], None],
) -> list[ImportedVersion]:
    """Register what :func:`_plan` found to register, and audit the import (or, should
    a registration fail, the versions registered until then)."""
    source = manifest["model"]
    mapping = dict(present)
    imported = [ImportedVersion(s, v, "present", True) for s, v in present.items()]
    registered: dict[int, int] = {}
    try:
        for plan in planned:
            entry = plan.entry
            renew()
            row = registry.register(
                target,
                _artefact(archive, entry, max_artefact_bytes),
                replace(
                    plan.metadata,
                    parent_version=_parent(store, target, source["name"], entry, mapping),
                ),
                actor=actor,
                stage="champion" if plan.stage == "champion" else "shadow",
                regulated=source["regulated"],
                reference=_reference(archive, entry),
            )
            mapping[entry["version"]] = registered[entry["version"]] = row.version
            if plan.stage == "retired":
                row = store.set_stage(
                    target,
                    row.version,
                    "retired",
                    actor=actor,
                    reason=f"{entry['stage']} in {source['name']} (v{entry['version']})",
                )
            imported.append(ImportedVersion(entry["version"], row.version, row.stage, False))
    except Exception as exc:
        _audit_failure(store, actor, target, digest, source["name"], registered, exc)
        raise
    imported.sort(key=lambda i: i.source_version)
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
    return imported


class _ImportLease:
    """Imports into one model take turns: each holds the store's lease on it (named after
    a digest of the model's name, which may be longer than a lease's) while it checks and
    registers. Another import meanwhile is refused (``ConflictError``,
    ``import_in_progress``): it would find the versions not there yet and register them
    twice. A lease left by an import that died expires after ``ttl_s``; ``renew`` before
    each step that may take long."""

    def __init__(self, store: Store, model: str, *, ttl_s: float) -> None:
        self._store, self._model, self._ttl = store, model, ttl_s
        self._name = f"import:{hashlib.sha256(model.encode()).hexdigest()[:32]}"
        self._holder = f"import:{uuid.uuid4().hex}"

    def renew(self) -> None:
        if not self._store.acquire_lease(self._name, self._holder, ttl_s=self._ttl):
            raise ConflictError(
                f"another import into model {self._model!r} is in progress; retry once it "
                "has finished (an import skips the versions already there)",
                code="import_in_progress",
            )

    def __enter__(self) -> _ImportLease:
        self.renew()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._store.release_lease(self._name, self._holder)
        except StoreError:
            logger.exception(
                "could not release the import lease of model=%s; it expires in %g s",
                self._model,
                self._ttl,
            )


@dataclass(frozen=True, slots=True)
class _Planned:
    """A version the import will register: its manifest entry, its metadata (but for the
    parent, known once the versions before it are registered) and its stage: retired
    where the source retired or rolled it back, not a challenger to promote again."""

    entry: Mapping[str, Any]
    metadata: VersionMetadata
    stage: Literal["champion", "shadow", "retired"]


def _plan(
    store: Store,
    config: Config,
    archive: zipfile.ZipFile,
    manifest: Mapping[str, Any],
    target: str,
    *,
    digest: str,
    max_artefact_bytes: int,
    renew: Callable[[], None],
) -> tuple[dict[int, int], list[_Planned]]:
    """Check the whole bundle against the target without registering anything: which
    versions the target holds already (source version -> its version), and what to
    register. Raises what registering would, for any version."""
    source = manifest["model"]
    _check_fits(store, config, target, source)
    present: dict[int, int] = {}
    planned: list[_Planned] = []
    # champion only where there is none and its promotion would need no approver
    champion_free = _champion(store, target) is None
    for entry in sorted(manifest["versions"], key=lambda e: e["version"]):
        done = _already_imported(store, target, source["name"], entry)
        if done is not None:
            present[entry["version"]] = done
            continue
        metadata = VersionMetadata(
            task=source["task"],
            feature_names=tuple(source["feature_names"]),
            hyperparameters=entry["hyperparameters"],
            dataset_version=entry.get("dataset_version"),
            study=None,
            details=_details(entry, source["name"], manifest, digest),
        )
        renew()
        _check_candidate(config, _artefact(archive, entry, max_artefact_bytes), metadata)
        reference = _reference(archive, entry)
        if reference is not None:
            reference.check(len(metadata.feature_names))
        champion = (
            champion_free
            and entry["stage"] == "champion"
            and not champion_registration_rules(
                store,
                config,
                target,
                task=source["task"],
                regulated=source["regulated"],
                hyperparameters=entry["hyperparameters"],
            )
        )
        champion_free = champion_free and not champion
        stage: Literal["champion", "shadow", "retired"] = (
            "champion"
            if champion
            else "retired"
            if entry["stage"] in ("retired", "rolled_back")
            else "shadow"
        )
        planned.append(_Planned(entry, metadata, stage))
    return present, planned


def _details(
    entry: Mapping[str, Any], source_model: str, manifest: Mapping[str, Any], digest: str
) -> dict[str, Any]:
    """The imported version's details: the entry's, but for what described the source
    store, which goes under ``imported`` with where the version came from. A version the
    source had imported itself keeps that record (``via``) and its first ``origin``."""
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
    }
    if incoming is not None:
        record["via"] = incoming
    return {
        **{k: v for k, v in details.items() if k not in (*PER_STORE_DETAILS, "imported")},
        "imported": record,
    }


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


def _check_fits(store: Store, config: Config, target: str, source: Mapping[str, Any]) -> None:
    """The checks ``Registry.register`` makes against an existing model: the bundle's
    versions must take its features, be of its task, and not make it unregulated."""
    try:
        existing = store.get_model(target)
    except NotFoundError:
        return
    cfg = config.model(target)
    regulated = True if cfg is not None and cfg.regulated else source["regulated"]
    if tuple(existing.feature_names) != tuple(source["feature_names"]):
        raise RegistrationError(
            f"model {target!r} has features {list(existing.feature_names)}; a version must "
            f"take the same features, got {list(source['feature_names'])}",
            code="feature_names_mismatch",
        )
    if existing.task != source["task"]:
        raise ConflictError(
            f"model {target!r} is a {existing.task} model; a version cannot change its "
            f"task to {source['task']}",
            code="task_mismatch",
        )
    if regulated is False and existing.regulated:
        raise ConflictError(
            f"model {target!r} is regulated; a registration cannot make it unregulated "
            "(regulation only tightens)",
            code="regulated_mismatch",
        )


def _check_candidate(config: Config, onnx: bytes, metadata: VersionMetadata) -> None:
    """The checks ``Registry.register`` makes of a candidate before it stores anything:
    the sandboxed load under the target's limits, the feature count, plain-JSON
    hyperparameters and details, a valid ``parity_error``."""
    with tempfile.TemporaryDirectory(prefix="tunewatch-bundle-") as tmp:
        candidate = Path(tmp) / "candidate.onnx"
        candidate.write_bytes(onnx)
        try:
            info = inspect_candidate(
                candidate,
                memory_limit_bytes=config.scoring.candidate_memory_limit_mb * 1024 * 1024,
                timeout_s=config.scoring.candidate_timeout_s,
            )
        except CandidateRejectedError as exc:
            raise RegistrationError(exc.message, code=exc.code) from exc
    if info.signature.n_features != len(metadata.feature_names):
        raise RegistrationError(
            f"the model takes {info.signature.n_features} features but "
            f"{len(metadata.feature_names)} `feature_names` were given",
            code="feature_count_mismatch",
        )
    try:
        canonical_json(dict(metadata.hyperparameters))
        canonical_json(dict(metadata.details))
    except (TypeError, ValueError) as exc:
        raise RegistrationError(
            f"hyperparameters and details must be plain JSON with finite numbers: {exc}",
            code="invalid_request",
        ) from exc
    if "parity_error" in metadata.details and recorded_parity_error(metadata.details) is None:
        raise RegistrationError(
            "`details.parity_error` must be a finite number >= 0, got "
            f"{metadata.details['parity_error']!r}",
            code="invalid_request",
        )


def _artefact(archive: zipfile.ZipFile, entry: Mapping[str, Any], limit: int) -> bytes:
    return _member(archive, f"artefacts/{entry['artefact_sha256']}.onnx", limit)


def _reference(archive: zipfile.ZipFile, entry: Mapping[str, Any]) -> Reference | None:
    sha = entry.get("reference_sha256")
    if not sha:
        return None
    name = f"artefacts/{sha}.npz"
    data = _member(archive, name, Reference.MAX_BYTES)
    try:
        return Reference.from_bytes(data)
    except lzma.LZMAError as exc:  # a snapshot is a zip as well; from_bytes lets this pass
        raise BundleError(f"{name}: the reference snapshot is unreadable: {exc}") from exc


def _audit_failure(
    store: Store,
    actor: str,
    target: str,
    digest: str,
    source_model: str,
    registered: Mapping[int, int],
    exc: Exception,
) -> None:
    """Record an import that failed after its checks, and the versions it registered."""
    code = exc.code if isinstance(exc, TunewatchError) else type(exc).__name__
    logger.warning(
        "import of bundle %s into model=%s failed after registering %s: %s",
        digest[:12],
        target,
        dict(registered),
        exc,
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
                "error": str(exc)[:1000],
                "code": code,
            },
        )
    except StoreError:
        logger.exception("could not audit the failed import into model=%s", target)


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
    if entry["stage"] not in STAGES:
        raise ValueError(
            f"version {entry['version']}: `stage` must be one of {', '.join(STAGES)}, "
            f"got {entry['stage']!r:.40}"
        )
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
    except EOFError as exc:
        raise BundleError(
            f"cannot read {name} from the bundle: it ends before its declared size"
        ) from exc
    except (
        OSError,  # and bz2's errors
        zipfile.BadZipFile,
        RuntimeError,  # encrypted, or a compression method zipfile does not read
        zlib.error,
        lzma.LZMAError,
    ) as exc:
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
    """The target's version that the entry is already, if any: one with its artefact that
    was imported from this version of ``source_model``, or that has the same origin (it
    came by another way, or it is the origin: the entry is on its way back)."""
    try:
        versions = store.list_versions(target)
    except NotFoundError:
        return None
    origin = _origin(entry["details"].get("imported")) or (source_model, entry["version"])
    for v in versions:
        if v.artefact_sha256 != entry["artefact_sha256"]:
            continue
        record = v.details.get("imported")
        own = _origin(record) or (target, v.version)
        if own == origin or _source(record) == (source_model, entry["version"]):
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
