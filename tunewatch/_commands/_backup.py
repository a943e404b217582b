"""``tunewatch backup DIR``: a consistent copy of the embedded store, its tuning storage
and its artefacts, taken while the daemon serves (see :mod:`tunewatch._backup`)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from tunewatch._errors import TunewatchError

from ._context import actor_of, config_of

if TYPE_CHECKING:
    from tunewatch._backup import BackupResult
    from tunewatch._config import Config


def cmd_backup(args: argparse.Namespace) -> int:
    """Print what was written, each file with its size, what was not and how to restore.
    Exit 0; 1 when artefacts were left out, damaged or missing from the data_dir though
    the store names them (each named on stderr: the backup holds everything else); 2,
    nothing written (a partial backup removed), when refused or failed; 143 (128 +
    SIGTERM, as a shell reports a process SIGTERM ended) when stopped by SIGTERM, 130 by
    Ctrl-C, the partial backup removed. Partial directories other backups left in DIR's
    folder, to DIR or to another directory there, are named on stderr (exit 0)."""
    from tunewatch._backup import backup
    from tunewatch._backup_artefacts import ARTEFACTS
    from tunewatch._backup_partial import partial_destination
    from tunewatch.store import redact_url

    if not args.directory:  # Path("") is the working directory
        raise TunewatchError(
            "`backup` must name a directory, got an empty value; nothing was written",
            code="invalid_argument",
        )
    config = config_of(args)
    actor = actor_of(args)  # audited in the store and in its copy
    with _signals_stop() as stop:
        result = backup(config, Path(args.directory), actor=actor, stop=stop)
    print(f"backup of the store at {redact_url(config.store_url)} written to {result.directory}:")
    width = max(len(f"{ARTEFACTS}/"), *(len(f.name) for f in result.files))
    for file in result.files:
        print(f"  {file.name:<{width}}  {file.size_bytes:>12} bytes  {file.what}")
    print(f"  {ARTEFACTS + '/':<{width}}  {result.artefacts} files, {result.artefact_bytes} bytes")
    print(
        "not copied: reports/ (rebuilt from the store on request), worker-config.*.yaml "
        "(each written by its daemon as it starts, for its tuning workers)"
    )
    for note in result.not_copied:
        print(f"not copied: {note}")
    print(_restore_line(config, result))
    for damaged in result.damaged:
        print(f"tunewatch: warning: left out of the backup, damaged: {damaged}", file=sys.stderr)
    for missing in result.missing:
        print(f"tunewatch: warning: left out of the backup, missing: {missing}", file=sys.stderr)
    for leftover in result.leftovers:
        print(
            f"tunewatch: warning: {leftover} is a partial backup to "
            f"{partial_destination(leftover)}, left by a backup stopped part way, or one still "
            "running: delete it once none runs",
            file=sys.stderr,
        )
    return 1 if result.damaged or result.missing else 0


def _restore_line(config: Config, result: BackupResult) -> str:
    """How to restore: start the daemon on the backup, or delete what a crash leaves beside
    each database the configuration opens and copy the backup's files over them. Each
    file copied from elsewhere than ``data_dir`` under its name in the backup (`store.url`
    naming another file) is named with where it goes."""
    from tunewatch._config_paths import STORE_FILE

    # each copy is read from the backup only where its URL is the default, under data_dir
    where = f"data_dir: {result.directory}"
    if config.store.url is not None:
        where += f", store.url unset (or naming {result.directory / STORE_FILE})"
    for file in result.files:
        if file.part == "tuning storage" and config.tuning.storage_url is not None:
            where += f", tuning.storage_url naming {result.directory / file.name}"
        if file.part == "tuning archive" and config.tuning.archive_storage_url is not None:
            where += f", tuning.archive_storage_url naming {result.directory / file.name}"
    # a crash (kill -9) leaves a database's journal or write-ahead log beside it: copied in
    # beside it, SQLite replays it onto the copy (integrity_check fails)
    data_dir = Path(config.data_dir).resolve()
    moved = {file.name: file.source for file in result.files if file.source != data_dir / file.name}
    sidecars = [sidecar for file in result.files for sidecar in file.sidecars]  # the store's
    crash = "(a crash leaves them there, and SQLite would replay them onto the copies)"
    if not moved:
        names = _listed([sidecar.relative_to(data_dir).as_posix() for sidecar in sidecars])
        copy = f"delete {names} from its data_dir {crash}, then copy these files into it"
    else:
        copies = [f"{name} to {source}" for name, source in moved.items()]
        if any(entry.name not in moved for entry in result.directory.iterdir()):
            copies.append(f"and the other files into its data_dir {data_dir}")
        copy = (
            f"delete {_listed([str(s) for s in sidecars])} {crash}, then copy {', '.join(copies)}"
        )
    return f"restore: stop the daemon, then either start it with {where}, or {copy}"


def _listed(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]


@contextlib.contextmanager
def _signals_stop() -> Iterator[threading.Event]:
    """SIGTERM (``timeout``, a container stop, systemd) raises ``SystemExit(143)`` in the
    block, as Ctrl-C raises ``KeyboardInterrupt``: the backup removes what it wrote.

    The first signal also sets the event yielded, the backup's ``stop`` (a later one is
    only noted: a burst's second signal, or Ctrl-C pressed twice, may run inside the
    first one's ``stop.set()``, and waited there for the event's lock its own thread held,
    for ever). Python runs the handler only
    between bytecodes, so during a SQLite copy (one C call) it runs inside the copy's
    progress handler, where the exception it raises is lost and the copy fails as
    interrupted instead (see :mod:`tunewatch._backup`). A ``TunewatchError`` from the block
    once a signal came is raised as that signal's exit. Left as it was outside the main
    thread (where no handler can be set), Ctrl-C where SIGINT is ignored (a background
    job), and after."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    received: list[int] = []

    def stopping(signum: int, _frame: FrameType | None) -> None:
        first = not received
        received.append(signum)
        if not first:
            # the first one stops the backup; this one may run inside its stop.set(),
            # whose lock (not re-entrant) this thread holds: a set() here waited for ever
            return
        stop.set()
        raise _exit(signum)

    handled = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        handled.append(signal.SIGINT)
    previous = {signum: signal.signal(signum, stopping) for signum in handled}
    try:
        yield stop
    except TunewatchError as exc:
        if received:
            raise _exit(received[0]) from exc
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _exit(signum: int) -> BaseException:
    """What ends the command stopped by ``signum``: exit 130 for Ctrl-C (``main`` says
    "interrupted"), else 128 + the signal, as a shell reports a process it ended."""
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return SystemExit(128 + signum)
