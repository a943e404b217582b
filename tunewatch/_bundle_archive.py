"""Reading a bundle: its manifest, checked field by field, and its members, read in
memory by the names the manifest gives, within size limits, and checked against the
SHA-256 in their names before they are used."""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import stat
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, get_args

from tunewatch._errors import TunewatchError
from tunewatch._reference import Reference
from tunewatch._version_metadata import TASKS
from tunewatch.store import Stage

FORMAT = "tunewatch-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_SPACE_BYTES = 1024 * 1024
STAGES: tuple[str, ...] = get_args(Stage)
_HEX = frozenset("0123456789abcdef")


class BundleError(TunewatchError, ValueError):
    """A bundle cannot be written or read: the message says which part and why."""

    code = "invalid_bundle"


def read_manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    raw = read_member(archive, MANIFEST, MAX_MANIFEST_BYTES, checked=False)
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
        names = model["feature_names"]
        if (
            not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names)
        ):  # integers registered a model with their strings; lists were a TypeError
            raise ValueError(
                "`model.feature_names` must be a non-empty list of distinct strings, "
                f"got {names!r:.200}"
            )
        if model["task"] not in TASKS:
            raise ValueError(
                f"`model.task` must be one of {', '.join(TASKS)}, got {model['task']!r}"
            )
        space = manifest.get("search_space")
        if space is not None and not (isinstance(space, dict) and _is_sha256(space.get("sha256"))):
            raise ValueError(
                f"`search_space` must be an object with a SHA-256 `sha256`, got {space!r:.200}"
            )
        if not isinstance(manifest["versions"], list):
            raise TypeError("`versions` must be a list")
        for entry in manifest["versions"]:
            _check_entry(entry)
        if not manifest["versions"]:
            raise ValueError("`versions` is empty")
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"the bundle's {MANIFEST} is incomplete: {exc}") from exc
    seen: set[int] = set()
    for entry in manifest["versions"]:
        if entry["version"] in seen:  # it would be registered twice
            raise BundleError(
                f"the bundle's {MANIFEST} lists version {entry['version']} more than once"
            )
        seen.add(entry["version"])
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
        if not _is_sha256(value):
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
    origin = entry.get("parent_origin")  # absent from bundles written before it was
    if origin is not None and not (
        isinstance(origin, dict)
        and isinstance(origin.get("model"), str)
        and type(origin.get("version")) is int  # not a bool
        and _is_sha256(origin.get("artefact_sha256"))
    ):
        raise TypeError(
            f"version {entry['version']}: `parent_origin` must be an object with a string "
            f"`model`, an integer `version` and a SHA-256 `artefact_sha256`, got {origin!r:.200}"
        )


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def read_member(archive: zipfile.ZipFile, name: str, limit: int, *, checked: bool = True) -> bytes:
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
        UnicodeDecodeError,  # a local header's name flagged UTF-8 that is not
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


def read_artefact(archive: zipfile.ZipFile, entry: Mapping[str, Any], limit: int) -> bytes:
    return read_member(archive, f"artefacts/{entry['artefact_sha256']}.onnx", limit)


def read_reference(archive: zipfile.ZipFile, entry: Mapping[str, Any]) -> Reference | None:
    sha = entry.get("reference_sha256")
    if not sha:
        return None
    name = f"artefacts/{sha}.npz"
    return Reference.from_bytes(read_member(archive, name, Reference.MAX_BYTES))


def read_space(archive: zipfile.ZipFile, manifest: Mapping[str, Any]) -> bytes | None:
    """The search-space file the model's config names (``spaces/<sha256>.yaml``), if the
    bundle holds one."""
    space = manifest.get("search_space")
    if space is None:
        return None
    return read_member(archive, space_member(space["sha256"]), MAX_SPACE_BYTES)


def space_member(sha256: str) -> str:
    return f"spaces/{sha256}.yaml"


def open_bundle(path: str | Path) -> BinaryIO:
    """The bundle file at ``path``, open for reading: a regular file, else ``BundleError``
    before anything is read (``/dev/zero`` was hashed without end). The file is checked
    again once open, and opened without blocking (a FIFO would wait for a writer), in
    case another took the path's place between the two."""
    refused = f"cannot read bundle {str(path)!r}: not a regular file"
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise BundleError(refused)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise BundleError(f"cannot read bundle {str(path)!r}: {exc.strerror}") from exc
    file = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
        file.close()
        raise BundleError(refused)
    return file


def sha256_file(file: BinaryIO, path: str | Path) -> str:
    """The SHA-256 of ``file`` (the bundle at ``path``) from where it is to its end."""
    digest = hashlib.sha256()
    try:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    except OSError as exc:
        raise BundleError(f"cannot read bundle {str(path)!r}: {exc.strerror}") from exc
    return digest.hexdigest()
