"""Writing a model out: bundles of its versions (``export``, ``import``) and a version's
rationale report (``report``)."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import stat
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tunewatch._artefacts import ArtefactStore
from tunewatch._errors import TunewatchError

from ._context import actor_of, config_of, registry_of

if TYPE_CHECKING:
    from tunewatch._bundle import BundledConfig
    from tunewatch._config import Config

logger = logging.getLogger(__name__)


def cmd_export(args: argparse.Namespace) -> int:
    from tunewatch._bundle import export_bundle
    from tunewatch._open_store import open_store

    config = config_of(args)
    # before the store is opened: `export MODEL STORE.db` replaced the store with the bundle
    _refuse_destination(
        f"cannot export to {args.path}",
        "it",
        Path(args.path),
        _protected(config, _config_path(args)),
        data_dir=config.data_dir,
        outcome="nothing was written",
    )
    store = open_store(config, create=False)
    try:
        written = export_bundle(
            store,
            ArtefactStore(config.artefact_dir, store=store),
            config,
            args.model,
            args.path,
            versions=args.version,
            actor=actor_of(args),
        )
    finally:
        store.close()
    print(f"exported {args.model} versions {list(written.versions)} to {args.path}")
    # what an import is given (--sha256): the audit log's `export_bundle` entry records it
    print(f"bundle sha256: {written.sha256}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from tunewatch._bundle import import_bundle
    from tunewatch._open_store import open_store

    config = config_of(args)
    out = None if args.config_out is None else Path(args.config_out)
    protected = _protected(config, _config_path(args), bundle=args.path)
    if out is not None:  # before anything is imported: a failed write after reads as a failure
        _check_config_out(args.config_out, _config_path(args), protected, config.data_dir)
    store = open_store(config)
    try:
        model, imported, model_config = import_bundle(
            store,
            registry_of(config, store),
            config,
            args.path,
            actor=actor_of(args),
            max_artefact_bytes=config.server.max_artefact_bytes,
            name=args.name,
            sha256=args.sha256,
            # the search space beside the snippet, for a bundle holding one, is checked
            # once the bundle is read, before anything is imported
            check_space=None
            if out is None
            else lambda space: _check_space(out, space, protected, config.data_dir),
        )
    finally:
        store.close()
    # the files are written before anything is printed: output that failed left them unwritten
    space, failure = None, None
    if out is not None and model_config is not None:
        try:
            space = _write_config(out, model, model_config)
        except OSError as exc:
            failure = f"cannot write {exc.filename}: {exc.strerror}"
        except TunewatchError as exc:
            failure = exc.message
        except Exception as exc:  # the versions are in: say so, whatever stopped the write
            logger.debug("writing the config from the bundle to %s failed", out, exc_info=True)
            failure = f"{type(exc).__name__}: {exc}"
    for i in imported:
        state = "already present" if i.already_present else i.stage
        held = f": {'; '.join(i.held)}" if i.held else ""  # why not champion
        print(f"{model} v{i.source_version} -> v{i.version} ({state}{held})")
    if failure is not None:
        print(
            f"tunewatch: error: the versions above were imported, but the model's config was "
            f"not written: {failure}; run the same import again with another --config-out to "
            "write it (versions already imported are skipped)",
            file=sys.stderr,
        )
        return 1
    if out is not None and model_config is None:
        print(
            f"tunewatch: the bundle holds no config for {model}: {out} was not "
            "written (the source's config did not list the model)",
            file=sys.stderr,
        )
    elif out is not None and model_config is not None:
        if space is not None:
            print(f"its search space is in {space}")
        print(f"the model's config from the bundle is in {out}: merge it into yours")
        if model_config.unbundled_split is not None:
            challenger = model_config.unbundled_split.get("challenger")
            print(
                f"tunewatch: {out} has no live split (`comparison.split: null`): the source's "
                f"split sent traffic to version {challenger!r}, which the bundle does not "
                "hold, and that number would name another version here; export that "
                "version with the champion to keep the split, or set one once its "
                "challenger is registered here",
                file=sys.stderr,
            )
    return 0


def _config_path(args: argparse.Namespace) -> str | None:
    """The config file the command runs with (as :func:`config_of` reads it), if any."""
    return args.config if args.config is not None else os.environ.get("TUNEWATCH_CONFIG")


def _check_config_out(
    text: str, config: str | None, protected: Sequence[tuple[str, str]], data_dir: str
) -> None:
    """Refuse ``--config-out`` where the snippet could not be written as a file, or is the
    ``config`` the command runs with (the one-model snippet would replace it: its store,
    ``data_dir``, auth and every other model), or another file it must not replace (see
    :func:`_refuse_destination`), so that nothing is imported when it could not be written
    (see :func:`_check_writable`)."""
    if not text:
        raise TunewatchError(
            "`--config-out` must name a file, got an empty value; nothing was imported",
            code="invalid_argument",
        )
    path = Path(text)
    if config is not None and _same_file(path, Path(config)):
        raise TunewatchError(
            f"--config-out {path} is the config this import runs with ({config}): the "
            "model's config from the bundle would replace it, and with it the store, "
            "data_dir, auth and every other model's settings; name another file and merge "
            "it into yours; nothing was imported",
            code="invalid_argument",
        )
    folder = path.resolve().parent
    if not folder.is_dir():
        raise TunewatchError(
            f"--config-out {path}: {folder} is not a directory; nothing was imported"
        )
    _check_writable(path, path, protected, data_dir)


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file: the same file on disk where both exist
    (through symbolic and hard links), else the same path once resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one is missing (or cannot be looked up): it is written there
        return os.path.realpath(a) == os.path.realpath(b)  # a link loop too, unlike resolve


def _check_writable(
    path: Path, destination: Path, protected: Sequence[tuple[str, str]], data_dir: str
) -> None:
    """Refuse ``destination`` (the snippet at ``--config-out`` ``path``, or the search
    space beside it) unless the import can write it and may (:func:`_refuse_destination`:
    the command's own standard output or error, ``/dev/stdout`` say, is written through):
    already there, it must be writable, and a file must be creatable beside it, as
    :func:`_write` creates one (it is created and removed)."""
    from tunewatch._bundle_file import non_regular_kind

    if destination.is_dir():
        raise TunewatchError(
            f"--config-out {path}: {destination} is a directory, where the import writes "
            "a file; nothing was imported"
        )
    _refuse_destination(
        f"--config-out {path}",
        "it" if destination == path else str(destination),
        destination,
        protected,
        data_dir=data_dir,
        outcome="nothing was imported",
        streams=True,
    )
    try:
        if destination.exists() and not os.access(destination, os.W_OK):  # through links
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        if non_regular_kind(destination) is None:  # else the stream, written through
            # the write creates a file beside the link's target and renames it into place
            partial = _partial_beside(Path(os.path.realpath(destination)))
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            partial.unlink()
    except OSError as exc:
        raise TunewatchError(
            f"--config-out {path}: cannot write {destination}: {exc.strerror}; nothing "
            "was imported",
            code="invalid_argument",
        ) from exc


#: A SQLite database's companion files, beside it under its name with these suffixes.
_SQLITE_COMPANIONS = (
    ("-wal", "write-ahead log"),
    ("-shm", "shared-memory index"),
    ("-journal", "rollback journal"),
)


def _protected(
    config: Config, config_file: str | None, *, bundle: str | None = None
) -> list[tuple[str, str]]:
    """The files a command's output must not replace, each with what it is: the
    ``config_file`` the command runs with, the store's and Optuna's SQLite databases (or
    journal file; the archive of old studies too) and their companions, the search
    spaces the config names, and the ``bundle`` an import reads. (``data_dir``, which
    holds the default ones, is refused whole by :func:`_refuse_destination`.)"""
    files = [] if config_file is None else [(config_file, "the config this command runs with")]
    for url, what in (
        (config.store_url, "the store's SQLite database"),
        (config.tuning_storage_url, "the tuning (Optuna) storage"),
        (config.tuning_archive_url, "the archive of old studies"),
    ):
        database = None if url is None else _database_file(url)
        if database is not None:
            files.append((database, what))
            files += [(database + end, f"{what}'s {kind}") for end, kind in _SQLITE_COMPANIONS]
    for model in config.models:
        if model.tuning.search_space is not None:
            files.append((model.tuning.search_space, f"model {model.name}'s search space"))
    if bundle is not None:
        files.append((bundle, "the bundle this import reads"))
    return files


def _database_file(url: str) -> str | None:
    """The file a SQLite URL or an Optuna journal path (no ``://``) names, ``~`` expanded
    as the store expands it; None for another database, in memory or a ``file:`` URI."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if "://" not in url:
        return str(Path(url).expanduser())
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # the store says why when it opens
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return None if database.startswith("file:") else str(Path(database).expanduser())


def _refuse_destination(
    label: str,
    subject: str,
    destination: Path,
    protected: Sequence[tuple[str, str]],
    *,
    data_dir: str,
    outcome: str,
    streams: bool = False,
) -> None:
    """Refuse, before anything is written (``TunewatchError``: exit 2, with ``label``,
    ``subject`` and ``outcome`` in its one line), to write ``destination`` where it is (or,
    through links, replaces) one of the ``protected`` files, lies under ``data_dir`` (the
    store, the artefacts, the reports), or is there and is not a regular file: a FIFO, a
    device, a socket. ``export MODEL STORE.db`` turned the store into a zip, and an export
    to a device replaced it with a world-writable regular file. With ``streams``, the
    command's own standard output or error (``/dev/stdout``, a pipe or a terminal) is
    written through, not refused."""
    from tunewatch._bundle_file import non_regular_kind

    reason = next(
        (f"{what} ({file})" for file, what in protected if _same_file(destination, Path(file))),
        None,
    )
    root = os.path.realpath(data_dir)
    if reason is None and Path(os.path.realpath(destination)).is_relative_to(root):
        reason = (
            f"under data_dir {root}, where tunewatch keeps its artefacts, reports and databases"
        )
    kind = non_regular_kind(destination)
    if reason is None and kind is not None and not (streams and _is_std_stream(destination)):
        reason = f"{kind}, not a regular file"
    if reason is not None:
        raise TunewatchError(f"{label}: {subject} is {reason}; {outcome}", code="invalid_argument")


def _is_std_stream(path: Path) -> bool:
    """Whether ``path`` is this process's standard output or error (``/dev/stdout``)."""
    try:
        found = os.stat(path)
        return any(os.path.samestat(found, os.fstat(fd)) for fd in (1, 2))
    except OSError:
        return False


def _space_path(path: Path) -> Path:
    """Where the search space goes beside the snippet at ``path``."""
    return path.resolve().with_name(f"{path.stem}.search_space.yaml")


def _check_space(
    path: Path, space: bytes, protected: Sequence[tuple[str, str]], data_dir: str
) -> None:
    """Refuse to write the bundle's ``space`` beside the snippet at ``--config-out``
    ``path`` unless the import can write it, and unless the file there, if any, holds the
    same: an earlier import with the same ``--config-out`` wrote it, and the config merged
    from that snippet names it by its path (see :func:`_check_writable`)."""
    destination = _space_path(path)
    _check_writable(path, destination, protected, data_dir)
    try:
        other = _holds_other(destination, space)
    except OSError as exc:
        raise TunewatchError(
            f"--config-out {path}: cannot read {destination} to compare it with the bundle's "
            f"search space: {exc.strerror}; nothing was imported",
            code="invalid_argument",
        ) from exc
    if other:
        raise TunewatchError(
            f"--config-out {path}: {destination} holds another search space than the "
            "bundle's, which a config merged from an earlier import may name; choose another "
            "--config-out, or move that file away; nothing was imported",
            code="invalid_argument",
        )


def _holds_other(path: Path, data: bytes) -> bool:
    """Whether ``path`` is a regular file holding other than ``data`` (not a pipe such as
    ``/dev/stdout``, which is not read)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            return f.read(len(data) + 1) != data
    except FileNotFoundError:
        return False


def _write_config(path: Path, model: str, bundled: BundledConfig) -> Path | None:
    """Write the model's config to ``path`` and the search space it names beside it, and
    return where the search space went (None: the bundle has none). The config names the
    written file by its absolute path, which reads the same file once the snippet is
    merged into a config elsewhere. Prints nothing: the caller does, once both are written."""
    import yaml

    settings = {**bundled.settings, "name": model}
    space = None
    if bundled.search_space is not None:
        space = _space_path(path)
        if _holds_other(space, bundled.search_space):  # written since it was checked
            raise TunewatchError(
                f"{space} holds another search space than the bundle's, written since the "
                "import checked it"
            )
        _write(space, bundled.search_space)
        tuning = settings.get("tuning")
        settings["tuning"] = {
            **(tuning if isinstance(tuning, dict) else {}),
            "search_space": str(space),
        }
    _write(path, yaml.safe_dump({"models": [settings]}, sort_keys=False).encode("utf-8"))
    return space


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (the snippet or the search space beside it); an
    ``OSError`` names the file (a failed write, say a full disk, names none).

    A regular file there (or none) is replaced, as ``export`` replaces its bundle: ``data``
    is written beside it, synced and renamed into place. Written through, a hard link at
    ``path`` to a file under ``data_dir`` (a ``cp -al`` backup's), which the refusal by real
    path does not see, overwrote a stored artefact; and a write cut short left a truncated
    file. A symlink is followed (its file is replaced, the link stays). An existing file's
    permissions are kept; a new file's are as ``open`` gives them (0666 less the umask):
    the snippet and the search space hold no secret. The command's own standard output or
    error (``/dev/stdout``), the one other file :func:`_check_writable` lets through, is
    written through; any other is refused, made since the import checked it."""
    from tunewatch._bundle_file import non_regular_kind

    kind = non_regular_kind(path)
    if kind is not None and not _is_std_stream(path):
        raise TunewatchError(
            f"{path} is {kind}, not a regular file, made since the import checked it"
        )
    try:
        if kind is not None:
            path.write_bytes(data)
        else:
            _replace(path, Path(os.path.realpath(path)), data)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def _replace(path: Path, final: Path, data: bytes) -> None:
    """Write ``data`` to a new file beside ``final`` (``path``'s real path), sync it and
    rename it over ``final``; the new file is removed if any of it fails (or is
    interrupted), leaving what was at ``final`` as it was."""
    from tunewatch._bundle_file import non_regular_kind

    try:
        mode: int | None = stat.S_IMODE(final.stat().st_mode) & 0o777  # no set-id or sticky
    except FileNotFoundError:
        mode = None
    partial = _partial_beside(final)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else 0o600)
    replaced = False
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        kind = non_regular_kind(final)  # again: the rename would replace it
        if kind is not None:
            raise TunewatchError(
                f"{path} is {kind}, not a regular file, made since the import checked it"
            )
        os.replace(partial, final)
        replaced = True
    finally:
        if not replaced:
            try:
                partial.unlink(missing_ok=True)
            except OSError:
                logger.exception("could not remove the partial file %s", partial)


def _partial_beside(final: Path) -> Path:
    """A new name beside ``final`` for the file renamed over it once written, which does
    not grow with ``final``'s name."""
    return final.with_name(f".tunewatch-import-{uuid.uuid4().hex[:16]}.partial")


def cmd_report(args: argparse.Namespace) -> int:
    from tunewatch._open_store import open_store
    from tunewatch._report import build_report, write_report

    config = config_of(args)
    store = open_store(config, create=False)
    try:
        md, page = write_report(store, config, args.model, args.version)
        if args.print:
            print(build_report(store, config, args.model, args.version).markdown())
    finally:
        store.close()
    print(f"wrote {md} and {page}", file=sys.stderr)
    return 0
