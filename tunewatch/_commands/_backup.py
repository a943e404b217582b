"""``tunewatch backup DIR``: a consistent copy of the embedded store, its tuning storage
and its artefacts, taken while the daemon serves (see :mod:`tunewatch._backup`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tunewatch._errors import TunewatchError

from ._context import config_of


def cmd_backup(args: argparse.Namespace) -> int:
    """Print what was written, each file with its size, what was not and how to restore.
    Exit 0; 1 when artefacts were left out, damaged or missing from the data_dir though
    the store names them (each named on stderr: the backup holds everything else); 2,
    nothing written (a partial backup removed), when refused or failed."""
    from tunewatch._backup import backup
    from tunewatch._backup_artefacts import ARTEFACTS
    from tunewatch._config_paths import STORE_FILE
    from tunewatch.store import redact_url

    if not args.directory:  # Path("") is the working directory
        raise TunewatchError(
            "`backup` must name a directory, got an empty value; nothing was written",
            code="invalid_argument",
        )
    config = config_of(args)
    result = backup(config, Path(args.directory))
    print(f"backup of the store at {redact_url(config.store_url)} written to {result.directory}:")
    width = max(len(f"{ARTEFACTS}/"), *(len(f.name) for f in result.files))
    for file in result.files:
        print(f"  {file.name:<{width}}  {file.size_bytes:>12} bytes  {file.what}")
    print(f"  {ARTEFACTS + '/':<{width}}  {result.artefacts} files, {result.artefact_bytes} bytes")
    print(
        "not copied: reports/ (rebuilt from the store on request), worker-config.yaml "
        "(written at each daemon start)"
    )
    for note in result.not_copied:
        print(f"not copied: {note}")
    # each copy is read from the backup only where its URL is the default, under data_dir
    where = f"data_dir: {result.directory}"
    if config.store.url is not None:
        where += f", store.url unset (or naming {result.directory / STORE_FILE})"
    if config.tuning.storage_url is not None:
        for file in result.files:
            if file.part == "tuning storage":
                where += f", tuning.storage_url naming {result.directory / file.name}"
    # a crash (kill -9) leaves a database's journal or write-ahead log in the data_dir:
    # copied in beside it, SQLite replays it onto the copy (integrity_check fails)
    sidecars = [name for file in result.files for name in file.sidecars]  # the store's, at least
    listed = ", ".join(sidecars[:-1]) + f" and {sidecars[-1]}"
    print(
        f"restore: stop the daemon, then either start it with {where}, or delete {listed} from "
        "its data_dir (a crash leaves them there, and SQLite would replay them onto the "
        "copies), then copy these files into it"
    )
    for damaged in result.damaged:
        print(f"tunewatch: warning: left out of the backup, damaged: {damaged}", file=sys.stderr)
    for missing in result.missing:
        print(f"tunewatch: warning: left out of the backup, missing: {missing}", file=sys.stderr)
    return 1 if result.damaged or result.missing else 0
