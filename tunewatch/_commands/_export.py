"""Writing a model out: bundles of its versions (``export``, ``import``) and a version's
rationale report (``report``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tunewatch._artefacts import ArtefactStore
from tunewatch._errors import TunewatchError

from ._context import actor_of, config_of, registry_of

if TYPE_CHECKING:
    from tunewatch._bundle import BundledConfig


def cmd_export(args: argparse.Namespace) -> int:
    from tunewatch._bundle import export_bundle
    from tunewatch._daemon import open_store

    config = config_of(args)
    store = open_store(config)
    try:
        written = export_bundle(
            store,
            ArtefactStore(config.artefact_dir),
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
    if args.config_out:  # before anything is imported: a failed write after read as a failure
        _check_config_out(Path(args.config_out))
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
        )
    finally:
        store.close()
    for i in imported:
        state = "already present" if i.already_present else i.stage
        print(f"{model} v{i.source_version} -> v{i.version} ({state})")
    if args.config_out and model_config is None:
        print(
            f"tunewatch: the bundle holds no config for {model}: {args.config_out} was not "
            "written (the source's config did not list the model)",
            file=sys.stderr,
        )
    elif args.config_out and model_config is not None:
        _write_config(Path(args.config_out), model, model_config)
        print(f"the model's config from the bundle is in {args.config_out}: merge it into yours")
    return 0


def _check_config_out(path: Path) -> None:
    """Refuse ``--config-out`` where the snippet or the search space beside it
    (:func:`_write_config`) could not be written as a file."""
    folder = path.resolve().parent
    if not folder.is_dir():
        raise TunewatchError(
            f"--config-out {path}: {folder} is not a directory; nothing was imported"
        )
    for destination in (path, _space_path(path)):
        if destination.is_dir():
            raise TunewatchError(
                f"--config-out {path}: {destination} is a directory, where the import writes "
                "a file; nothing was imported"
            )


def _space_path(path: Path) -> Path:
    """Where the search space goes beside the snippet at ``path``."""
    return path.resolve().with_name(f"{path.stem}.search_space.yaml")


def _write_config(path: Path, model: str, bundled: BundledConfig) -> None:
    """Write the model's config to ``path`` and the search space it names beside it: the
    config names the written file by its absolute path, which reads the same file once the
    snippet is merged into a config elsewhere."""
    import yaml

    settings = {**bundled.settings, "name": model}
    if bundled.search_space is not None:
        space = _space_path(path)
        space.write_bytes(bundled.search_space)
        tuning = settings.get("tuning")
        settings["tuning"] = {
            **(tuning if isinstance(tuning, dict) else {}),
            "search_space": str(space),
        }
        print(f"its search space is in {space}")
    path.write_text(yaml.safe_dump({"models": [settings]}, sort_keys=False), encoding="utf-8")


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
