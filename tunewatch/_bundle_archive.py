"""Reading a bundle: its manifest, checked field by field, and its members, read in
memory by the names the manifest gives, within size limits (each member's, as stored, and all
of them together's), and checked against the SHA-256 in their
names before they are used. A bundle holds its manifest and the members the manifest
names, each once, and nothing else (:func:`open_archive`, :func:`check_members`).

A member's headers may carry only the extra fields that say nothing of what it is
(:mod:`tunewatch._bundle_zip_fields`). Info-ZIP's Unicode Path field (0x7075) renames a member for
``unzip`` and not for zipfile, which ignores it: a crafted bundle's ``unzip -p bundle.zip
manifest.json`` showed a regulated manifest, and the import read another, unregulated."""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, get_args

from tunewatch._bundle_zip_fields import extra_fields_refused
from tunewatch._errors import TunewatchError
from tunewatch._reference import Reference
from tunewatch._tag_rules import MAX_TAGS, TagRuleError, check_tag
from tunewatch._version_metadata import MAX_METADATA_DEPTH, TASKS, json_depth
from tunewatch.store import Stage

FORMAT = "tunewatch-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_SPACE_BYTES = 1024 * 1024
#: The versions one bundle holds: far more than a model's lineage moved at once, and what
#: bounds the members a bundle may hold.
MAX_BUNDLE_VERSIONS = 1000
#: The members a bundle may hold: its manifest, a search space, and each version's
#: artefact and reference snapshot.
MAX_MEMBERS = 2 + 2 * MAX_BUNDLE_VERSIONS
#: The central directory zipfile reads, and makes an entry of each member it lists, when
#: it opens a bundle: 1 KiB a member, several times what a member's name and extra fields
#: take. Past it the bundle is refused before zipfile reads it.
MAX_DIRECTORY_BYTES = 1024 * MAX_MEMBERS
_MEMBERS_RULE = (
    f"{MAX_MEMBERS} members (its manifest, a search space, and an artefact and a reference "
    f"snapshot for each of at most {MAX_BUNDLE_VERSIONS} versions)"
)
#: What a bundle's members may unpack to in all, in ``server.max_artefact_bytes``: a
#: default export (the champion's artefact and reference snapshot) takes at most 2, and
#: each member is held to one. Twenty members each just within their limit, inflating a
#: thousand times, wrote 448 MiB from a 331 KiB bundle.
BUNDLE_BYTES_FACTOR = 16
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
    if type(version) is not int or version < 1:  # not a bool: `true` read as format 1
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
        if space is not None and not (isinstance(space, dict) and is_sha256(space.get("sha256"))):
            raise ValueError(
                f"`search_space` must be an object with a SHA-256 `sha256`, got {space!r:.200}"
            )
        if not isinstance(manifest["versions"], list):
            raise TypeError("`versions` must be a list")
        if len(manifest["versions"]) > MAX_BUNDLE_VERSIONS:
            raise ValueError(
                f"`versions` lists {len(manifest['versions'])} versions; a bundle holds at "
                f"most {MAX_BUNDLE_VERSIONS}"
            )
        for entry in manifest["versions"]:
            _check_entry(entry)
        if not manifest["versions"]:
            raise ValueError("`versions` is empty")
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"the bundle's {MANIFEST} is incomplete: {exc}") from exc
    _check_nesting(manifest.get("config"), "config")
    seen: set[int] = set()
    for entry in manifest["versions"]:
        if entry["version"] in seen:  # it would be registered twice
            raise BundleError(
                f"the bundle's {MANIFEST} lists version {entry['version']} more than once"
            )
        seen.add(entry["version"])
    return manifest


def _check_nesting(value: Any, key: str) -> None:
    """Refuse ``value`` (the manifest's ``key``) nesting past ``MAX_METADATA_DEPTH`` levels,
    the bound a version's metadata keeps to: the config is written out as YAML, whose
    writer recursed past Python's limit on a deeper one once the versions were imported."""
    depth = json_depth(value)
    if depth <= MAX_METADATA_DEPTH:
        return
    path = _path_past(value, key, MAX_METADATA_DEPTH)
    raise BundleError(
        f"the bundle's {MANIFEST}: `{key}` must nest at most {MAX_METADATA_DEPTH} levels "
        f"deep, got {depth} (at `{path[:200]}{'...' if len(path) > 200 else ''}`)"
    )


def _path_past(value: Any, key: str, limit: int) -> str:
    """The key path (``config.a[0].b``) of the first object or list in ``value`` nested
    more than ``limit`` levels deep (``value`` itself is the first)."""
    stack: list[tuple[Any, str, int]] = [(value, key, 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict):
            children = [(v, f"{path}.{k}") for k, v in item.items()]
        elif isinstance(item, list):
            children = [(v, f"{path}[{i}]") for i, v in enumerate(item)]
        else:
            continue
        if depth > limit:
            return path
        stack.extend((child, at, depth + 1) for child, at in reversed(children))
    return key  # not reached: called for a value nested past the limit


def _check_entry(entry: Any) -> None:
    if not isinstance(entry, dict):
        raise TypeError(f"each of `versions` must be an object, got {entry!r:.100}")
    if not isinstance(entry.get("version"), int) or isinstance(entry.get("version"), bool):
        raise TypeError(f"a version entry needs an integer `version`, got {entry!r:.200}")
    for key in ("artefact_sha256", "reference_sha256"):
        value = entry.get(key)
        if key == "reference_sha256" and value is None:
            continue
        if not is_sha256(value):
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
    for key in ("dataset_version", "study"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise TypeError(f"version {entry['version']}: `{key}` must be of type str")
    created = entry.get("created_at")  # kept by the import as the source's creation time
    if created is not None and not _is_iso_time(created):
        raise ValueError(
            f"version {entry['version']}: `created_at` must be an ISO 8601 time, "
            f"got {created!r:.80}"
        )
    parent = entry.get("parent_version")
    if parent is not None and type(parent) is not int:  # not a bool: `true` read as version 1
        raise TypeError(
            f"version {entry['version']}: `parent_version` must be of type int, got {parent!r:.40}"
        )
    _check_tags(entry["version"], entry.get("tags"))
    origin = entry.get("parent_origin")  # absent from bundles written before it was
    if origin is not None and not (
        isinstance(origin, dict)
        and isinstance(origin.get("model"), str)
        and type(origin.get("version")) is int  # not a bool
        and is_sha256(origin.get("artefact_sha256"))
    ):
        raise TypeError(
            f"version {entry['version']}: `parent_origin` must be an object with a string "
            f"`model`, an integer `version` and a SHA-256 `artefact_sha256`, got {origin!r:.200}"
        )


def _check_tags(version: int, tags: Any) -> None:
    """A version's ``tags`` (absent from bundles written before tags were): each within
    the convention (:mod:`tunewatch._tag_rules`), as an import sets them."""
    if tags is None:
        return
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise TypeError(
            f"version {version}: `tags` must be an object of strings, got {tags!r:.200}"
        )
    if len(tags) > MAX_TAGS:
        raise ValueError(
            f"version {version}: a version holds at most {MAX_TAGS} tags, got {len(tags)}"
        )
    try:
        for key, value in tags.items():
            check_tag(key, value)
    except TagRuleError as exc:
        raise ValueError(f"version {version}: {exc.message}") from exc


def is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _is_iso_time(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 64:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


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
    return read_member(archive, artefact_member(entry), limit)


def read_reference(archive: zipfile.ZipFile, entry: Mapping[str, Any]) -> Reference | None:
    """The version's reference snapshot, if it has one: read within ``Reference.MAX_BYTES``
    here, within ``server.max_artefact_bytes`` too once :func:`check_members` has passed
    (zipfile reads no more of a member than its declared size), which also held the arrays
    it unpacks to, as stored, within that setting."""
    name = reference_member(entry)
    if name is None:
        return None
    return Reference.from_bytes(read_member(archive, name, Reference.MAX_BYTES))


def artefact_member(entry: Mapping[str, Any]) -> str:
    return f"artefacts/{entry['artefact_sha256']}.onnx"


def reference_member(entry: Mapping[str, Any]) -> str | None:
    sha = entry.get("reference_sha256")
    return f"artefacts/{sha}.npz" if sha else None


def check_members(
    archive: zipfile.ZipFile, manifest: Mapping[str, Any], *, max_artefact_bytes: int
) -> None:
    """Refuse the bundle (``BundleError``) unless it holds each member ``manifest`` names,
    within its limit by the size it declares, and nothing else: an artefact within
    ``max_artefact_bytes`` (``server.max_artefact_bytes``), a reference snapshot within it
    too, as ``register --reference`` and the API's uploads are, and within
    ``Reference.MAX_BYTES``, the search space within ``MAX_SPACE_BYTES``. The members
    together must unpack to at most ``BUNDLE_BYTES_FACTOR`` times ``max_artefact_bytes``
    (no compression-ratio rule: a legitimate sparse reference snapshot deflates 140 to
    590 times, as far as a zip bomb's members). A reference snapshot is sized as it will
    be stored, by the headers of its arrays (an ``.npz`` may be compressed itself): the
    snapshots are read, checked against their SHA-256 and their headers read, the only
    members read. An import checks this
    first, before it reads and inspects the rest; a member is then read no further than
    the size it declares (zipfile's reader stops there)."""
    artefact_limit = (max_artefact_bytes, "`server.max_artefact_bytes`")
    reference_limit = (
        artefact_limit
        if max_artefact_bytes <= Reference.MAX_BYTES
        else (Reference.MAX_BYTES, "the largest reference snapshot tunewatch reads")
    )
    expected: dict[str, tuple[str, tuple[int, str]]] = {}  # name -> what it is, its limit
    for entry in sorted(manifest["versions"], key=lambda e: e["version"]):
        version = entry["version"]
        expected[artefact_member(entry)] = (f"version {version}'s artefact", artefact_limit)
        reference = reference_member(entry)
        if reference is not None:  # one snapshot may serve several versions
            what = f"version {version}'s reference snapshot"
            expected.setdefault(reference, (what, reference_limit))
    space = manifest.get("search_space")
    if space is not None:
        expected[space_member(space["sha256"])] = ("the search space", (MAX_SPACE_BYTES, ""))
    sizes: dict[str, int] = {}  # name -> what it unpacks to
    for name, (what, (limit, rule)) in expected.items():
        try:
            size = sizes[name] = archive.getinfo(name).file_size
        except KeyError as exc:
            raise BundleError(f"the bundle lacks {name}") from exc
        _check_size(name, what, size, limit, rule)
    extra = [name for name in archive.namelist() if name != MANIFEST and name not in expected]
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise BundleError(
            f"the bundle holds {extra[0]!r}{more}, which its {MANIFEST} does not name: a "
            f"bundle holds its {MANIFEST} and the members it names, nothing else"
        )
    declared = dict(sizes)
    total_limit = BUNDLE_BYTES_FACTOR * max_artefact_bytes
    _check_total(sum(sizes.values()), total_limit, max_artefact_bytes)
    for name, (what, (limit, rule)) in expected.items():
        if not name.endswith(".npz"):
            continue
        data = read_member(archive, name, limit)
        # a snapshot unreadable raises the RegistrationError its import did
        stored = Reference.unpacked_bytes(data, stop_past=limit)
        _check_size(name, what, stored, limit, rule, stored=True)
        sizes[name] = max(declared[name], stored)
        _check_total(sum(sizes.values()), total_limit, max_artefact_bytes)


def _check_size(
    name: str, what: str, size: int, limit: int, rule: str, *, stored: bool = False
) -> None:
    """Refuse the member ``name`` unpacking to ``size`` bytes past ``limit`` (``rule``
    names it); ``stored``: its arrays' size as stored, counted until past the limit."""
    if size > limit:
        unpacks = f"{size} bytes or more once its arrays are stored" if stored else f"{size} bytes"
        raise BundleError(
            f"{name} ({what}) unpacks to {unpacks}; the limit is {limit}"
            + (f" ({rule})" if rule else "")
        )


def _check_total(total: int, limit: int, max_artefact_bytes: int) -> None:
    if total > limit:
        raise BundleError(
            f"the bundle's members unpack to {total} bytes in all; the limit is {limit} "
            f"({BUNDLE_BYTES_FACTOR} times `server.max_artefact_bytes`, {max_artefact_bytes})"
        )


def open_archive(file: BinaryIO, path: str | Path) -> zipfile.ZipFile:
    """The bundle ``file`` (at ``path``) opened as a zip archive; ``BundleError`` when
    zipfile cannot read it, when it holds more members than a bundle can
    (``MAX_MEMBERS``) or two of one name (zipfile reads the last, ``unzip`` the first: a
    reviewer would read another manifest than the one imported), or a member whose local
    or central header carries an extra field not in
    :data:`~tunewatch._bundle_zip_fields.ALLOWED_EXTRA_FIELDS` (see
    :func:`~tunewatch._bundle_zip_fields.extra_fields_refused`). The member count, and
    the size of the central directory listing them, are checked from its end record
    before zipfile reads the directory and makes an entry of each member."""
    _check_directory(file, path)
    try:
        archive = zipfile.ZipFile(file)
    except (
        OSError,
        zipfile.BadZipFile,
        UnicodeDecodeError,  # a member name flagged UTF-8 that is not
        NotImplementedError,  # a member needing a newer zip version to extract
    ) as exc:
        raise BundleError(f"{str(path)!r} is not a readable bundle: {exc}") from exc
    names = archive.namelist()
    repeated = [name for name, count in Counter(names).items() if count > 1]
    refused = None
    if len(names) > MAX_MEMBERS:
        refused = (
            f"{str(path)!r} holds {len(names)} members; a bundle holds at most {_MEMBERS_RULE}"
        )
    elif repeated:
        refused = (
            f"{str(path)!r} holds more than one member named {repeated[0]!r}: a bundle "
            "holds each member once"
        )
    if refused is None:
        refused = extra_fields_refused(archive, file, path)
    if refused is not None:
        archive.close()
        raise BundleError(refused)
    return archive


def _check_directory(file: BinaryIO, path: str | Path) -> None:
    """Refuse the zip ``file`` whose end record lists more than ``MAX_MEMBERS`` members or
    a central directory past ``MAX_DIRECTORY_BYTES``, without reading the directory.

    The end record is found as ``zipfile.ZipFile`` finds it, with the function it calls
    (not public: should a Python lack it, the count is checked once zipfile has listed
    the members). The directory's size bounds what zipfile lists whatever count the
    record gives: it lists every entry the directory holds."""
    end_record = getattr(zipfile, "_EndRecData", None)
    if end_record is None:
        return
    try:
        record = end_record(file)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{str(path)!r} is not a readable bundle: {exc}") from exc
    if not record:
        return  # not a zip file: zipfile says so
    members, size = int(record[4]), int(record[5])  # the entries in total, their bytes
    if members > MAX_MEMBERS or size > MAX_DIRECTORY_BYTES:
        raise BundleError(
            f"{str(path)!r} is not a bundle: its central directory lists {members} members "
            f"and takes {size} bytes; a bundle holds at most {_MEMBERS_RULE}, listed in at most "
            f"{MAX_DIRECTORY_BYTES} bytes"
        )


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
