"""Writing a model out: bundles of its versions (``export``, ``import``) and a version's
rationale report (``report``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tunewatch._artefacts import ArtefactStore

from ._context import actor_of, config_of, registry_of


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
    import yaml

    from tunewatch._bundle import import_bundle
    from tunewatch._daemon import open_store

    config = config_of(args)
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
        model_config["name"] = model
        Path(args.config_out).write_text(
            yaml.safe_dump({"models": [model_config]}, sort_keys=False), encoding="utf-8"
        )
        print(f"the model's config from the bundle is in {args.config_out}: merge it into yours")
    return 0


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
