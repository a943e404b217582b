"""Running tunewatch: the daemon (``serve``), its store's schema (``migrate``) and the
example loop (``demo``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._context import config_of


def cmd_serve(args: argparse.Namespace) -> int:
    from tunewatch._serve import serve

    serve(config_of(args), host=args.host, port=args.port)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from tunewatch.store import Store, redact_url

    config = config_of(args)
    if args.to is not None:  # not open_store: that migrates to the newest first
        store = Store(
            config.store_url,
            sqlite_synchronous=config.store.sqlite_synchronous,
            lock_timeout_s=config.store.lock_timeout_s,
        )
        try:
            store.migrate(to=args.to)
        finally:
            store.close()
        # no sharing of cached artefacts: an older revision may not hold them
        print(f"store at {redact_url(config.store_url)} is at revision {args.to!r}")
        return 0

    from tunewatch._artefacts import ArtefactStore
    from tunewatch._daemon import share_cached_artefacts
    from tunewatch._open_store import open_store

    store = open_store(config)
    try:  # a host running no daemon (the CLI's, a worker's) gives its cache to the others
        shared = share_cached_artefacts(store, ArtefactStore(config.artefact_dir, store=store))
    finally:
        store.close()
    print(f"store at {redact_url(config.store_url)} is at the latest schema")
    if shared:
        print(f"kept {shared} artefacts cached here in the store, for every host")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tunewatch._demo import run_demo

    return run_demo(data_dir=Path(args.data_dir), seed=args.seed)
