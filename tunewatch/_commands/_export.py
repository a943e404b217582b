"""Writing a model out: bundles of its versions (``export``, ``import``) and a version's
rationale report (``report``)."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tunewatch._artefacts import ArtefactStore
from tunewatch._errors import TunewatchError

from ._context import actor_of, config_of, registry_of

if TYPE_CHECKING:
    from tunewatch._bundle import BundledConfig

logger = logging.getLogger(__name__)


def cmd_export(args: argparse.Namespace) -> int:
    from tunewatch._bundle import export_bundle
    from tunewatch._daemon import open_store

    config = config_of(args)
    store = open_store(config)
    try:
        written = export_bundle(
            store,
            ArtefactStore(config.artefact_dir, store=store),
            config,
            args.model,
            args.path,
            versions=args.version,
        )
    finally:
        store.close()
    print(f"exported {args.model} versions {written} to {args.path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from tunewatch._bundle import import_bundle
    from tunewatch._daemon import open_store

    config = config_of(args)
    out = None if args.config_out is None else Path(args.config_out)
    if out is not None:  # before anything is imported: a failed write after reads as a failure
        _check_config_out(args.config_out, _config_path(args))
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
            # the search space beside the snippet, for a bundle holding one, is checked
            # once the bundle is read, before anything is imported
            check_space=None if out is None else lambda space: _check_space(out, space),
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
        print(f"{model} v{i.source_version} -> v{i.version} ({state})")
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


def _check_config_out(text: str, config: str | None) -> None:
    """Refuse ``--config-out`` where the snippet could not be written as a file, or is the
    ``config`` the command runs with (the one-model snippet would replace it: its store,
    ``data_dir``, auth and every other model), so that nothing is imported when it could
    not be written (see :func:`_check_writable`)."""
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
    _check_writable(path, path)


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file: the same file on disk where both exist
    (through symbolic and hard links), else the same path once resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one is missing (or cannot be looked up): it is written there
        return a.resolve() == b.resolve()


def _check_writable(path: Path, destination: Path) -> None:
    """Refuse ``destination`` (the snippet at ``--config-out`` ``path``, or the search
    space beside it) unless the import can write it: already there (a file, a link, a
    pipe such as ``/dev/stdout``), it must be writable; else it is created and removed."""
    if destination.is_dir():
        raise TunewatchError(
            f"--config-out {path}: {destination} is a directory, where the import writes "
            "a file; nothing was imported"
        )
    try:
        if destination.exists():  # through links: /dev/stdout's pipe has no name to create
            if not os.access(destination, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        else:
            target = destination.resolve()  # a link's target, which the write creates
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            target.unlink()
    except OSError as exc:
        raise TunewatchError(
            f"--config-out {path}: cannot write {destination}: {exc.strerror}; nothing "
            "was imported",
            code="invalid_argument",
        ) from exc


def _space_path(path: Path) -> Path:
    """Where the search space goes beside the snippet at ``path``."""
    return path.resolve().with_name(f"{path.stem}.search_space.yaml")


def _check_space(path: Path, space: bytes) -> None:
    """Refuse to write the bundle's ``space`` beside the snippet at ``--config-out``
    ``path`` unless the import can write it, and unless the file there, if any, holds the
    same: an earlier import with the same ``--config-out`` wrote it, and the config merged
    from that snippet names it by its path (see :func:`_check_writable`)."""
    destination = _space_path(path)
    _check_writable(path, destination)
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
    """Write ``data`` to ``path``; an ``OSError`` names the file (a failed write, say a
    full disk, names none)."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def cmd_report(args: argparse.Namespace) -> int:
    from tunewatch._daemon import open_store
    from tunewatch._report import build_report, write_report

    config = config_of(args)
    store = open_store(config)
    try:
        md, page = write_report(store, config, args.model, args.version)
        if args.print:
            print(build_report(store, config, args.model, args.version).markdown())
    finally:
        store.close()
    print(f"wrote {md} and {page}", file=sys.stderr)
    return 0
