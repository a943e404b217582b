"""Running tunewatch: the daemon (``serve``), its store's schema (``migrate``) and the
example loop (``demo``)."""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tunewatch._artefacts import ArtefactStore
from tunewatch._config_sections import disabled_auth_refusal
from tunewatch._errors import ConfigError, StoreError

from ._context import config_of

if TYPE_CHECKING:
    from tunewatch.store._migrate import Migration, StoredArtefact


def cmd_serve(args: argparse.Namespace) -> int:
    from tunewatch._serve import serve

    config = config_of(args)
    if args.host:  # listened on instead of `server.host` (the Docker image's 0.0.0.0)
        refusal = disabled_auth_refusal(config.auth, args.host, source="--host")
        if refusal is not None:
            raise ConfigError(refusal)
    serve(config, host=args.host, port=args.port)
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
        # this host's directory alone: the rows it is given are the store's, about to go
        cache = _KeepInCache(ArtefactStore(config.artefact_dir), to=args.to)
        try:
            store.migrate(to=args.to, keep_artefacts=cache)
        finally:
            store.close()
        # no sharing of cached artefacts: an older revision may not hold them
        print(f"store at {redact_url(config.store_url)} is at revision {args.to!r}")
        if cache.kept:
            print(
                f"kept {cache.kept} artefacts of the store in this host's cache "
                f"({cache.cache.root}): revision {args.to!r} has no table for them"
            )
        return 0

    from tunewatch._daemon import share_cached_artefacts
    from tunewatch._open_store import open_store

    # migrated here, not by open_store, which keeps no word of what it did: the command
    # printed "is at the latest schema" right under the log's "upgraded from revision …"
    store = Store(
        config.store_url,
        sqlite_synchronous=config.store.sqlite_synchronous,
        lock_timeout_s=config.store.lock_timeout_s,
    )
    try:
        migration = store.migrate()
    finally:
        store.close()
    store = open_store(config)  # at the newest now: only read
    try:  # a host running no daemon (the CLI's, a worker's) gives its cache to the others
        shared = share_cached_artefacts(store, ArtefactStore(config.artefact_dir, store=store))
    finally:
        store.close()
    print(f"store at {redact_url(config.store_url)} {_done(migration)}")
    if shared:
        print(f"kept {shared} artefacts cached here in the store, for every host")
    return 0


def _done(migration: Migration | None) -> str:
    """What ``tunewatch migrate`` did to the store, as it prints it."""
    if migration is None:
        return "is at the latest schema"
    if not migration.from_revisions:
        return f"created: it is at the latest schema (revision {migration.to})"
    return f"upgraded from revision {', '.join(migration.from_revisions)} to {migration.to}"


class _KeepInCache:
    """Writes every artefact the store keeps into this host's cache before a downgrade
    drops the table holding them (below revision 0014): on PostgreSQL that table may be
    the only copy, of an artefact registered from a host whose ``data_dir`` is gone (a
    CLI box, a tuning worker). Each file is read back and verified against its SHA-256.
    Refuses the downgrade (``StoreError``, ``artefacts_not_kept``) unless every one was
    kept: the store is then left at its revision, the table and its rows with it."""

    def __init__(self, cache: ArtefactStore, *, to: str) -> None:
        self.cache = cache
        self.to = to
        #: how many were kept (none: the downgrade dropped no artefacts table)
        self.kept = 0

    def __call__(self, rows: Iterator[StoredArtefact]) -> None:
        kept, failures = 0, []
        for row in rows:
            try:
                self._keep(row)
            except StoreError as exc:
                failures.append(exc.message)
            else:
                kept += 1
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise StoreError(
                f"not downgrading the store to revision {self.to!r}: that drops its "
                "artefacts table, which may hold the only copy of an artefact (one "
                "registered from a host whose data_dir is gone), and "
                f"{len(failures)} of {kept + len(failures)} artefacts could not be kept in "
                f"this host's cache at {self.cache.root} first: {failures[0]}{more}",
                code="artefacts_not_kept",
            )
        self.kept = kept

    def _keep(self, row: StoredArtefact) -> None:
        if hashlib.sha256(row.data).hexdigest() != row.sha256:
            raise StoreError(
                f"artefact {row.sha256}{row.suffix} in the store is corrupt: its content "
                "hash differs"
            )
        self.cache.put(row.data, row.suffix)
        self.cache.get(row.sha256, row.suffix)  # read back: what was written is verified


def cmd_demo(args: argparse.Namespace) -> int:
    from tunewatch._demo import run_demo

    return run_demo(data_dir=Path(args.data_dir), seed=args.seed)
