"""What a SQLite store's file access failure says: the file or directory this process's
user may not use, with its owner and mode, and the user (``cannot write the store
/x/tunewatch.db (owned by root, mode 0600) as twuser: …``), where SQLite and the OS say
only "attempt to write a readonly database" or "Permission denied"."""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from stat import S_IMODE, S_ISDIR

from sqlalchemy import Engine

from .._errors import os_reason


def user_name(uid: int) -> str:
    """The name of user ``uid``, else "uid N" (no entry: a container's arbitrary uid)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _owned(stat: os.stat_result) -> str:
    return f"owned by {user_name(stat.st_uid)}, mode {S_IMODE(stat.st_mode):04o}"


def _may(path: Path, mode: int) -> bool:
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def file_access_problem(path: Path, action: str, reason: str) -> str:
    """One line: the store file ``path`` cannot be ``action``-ed (open, write, create),
    naming the file, or its directory, this process's user may not use (with its owner
    and mode), or what else is there (a directory); ``reason`` last. Ends with a bare
    path and ``reason`` where nothing is wrong with either (root, a transient error)."""
    user = user_name(os.geteuid())
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is not None and S_ISDIR(stat.st_mode):
        return f"cannot {action} the store {path} (a directory, not a file): {reason}"
    if stat is not None and not _may(path, os.R_OK | os.W_OK):
        return f"cannot {action} the store {path} ({_owned(stat)}) as {user}: {reason}"
    try:
        parent = path.parent.stat()
    except OSError:
        return f"cannot {action} the store {path}: {reason}"
    if not _may(path.parent, os.W_OK | os.X_OK):
        where = "" if stat is None else ", where SQLite keeps the store's -wal and -shm files"
        return (
            f"cannot {action} the store {path}: {user} may not make files in its directory "
            f"{path.parent} ({_owned(parent)}){where}: {reason}"
        )
    return f"cannot {action} the store {path}: {reason}"


def cannot_make_dir(directory: Path, exc: OSError) -> str:
    """One line: the store's ``directory`` cannot be made, naming the nearest directory
    above it that exists when this process's user may not make files in it (with its
    owner and mode), or the file that is there instead of a directory."""
    above = directory.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    head = f"cannot create the store's directory {directory}"
    if not above.is_dir():
        return f"{head}: {above} is not a directory: {os_reason(exc)}"
    if not _may(above, os.W_OK | os.X_OK):
        user = user_name(os.geteuid())
        owned = _owned(above.stat())
        return f"{head}: {user} may not make files in {above} ({owned}): {os_reason(exc)}"
    return f"{head}: {os_reason(exc)}"


#: SQLite's primary result codes of a file this process may not open or write:
#: SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN, each with the action it failed at.
_ACCESS_CODES = {3: "open", 8: "write", 14: "open"}


def sqlite_access_problem(engine: Engine, error: BaseException | None) -> str | None:
    """:func:`file_access_problem` for a SQLite file store's error of opening or writing
    its file, else None (another error, an in-memory or URI-named database)."""
    code = getattr(error, "sqlite_errorcode", None)
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not isinstance(code, int) or code & 0xFF not in _ACCESS_CODES or not database:
        return None
    if database == ":memory:" or database.startswith("file:"):
        return None
    return file_access_problem(Path(database), _ACCESS_CODES[code & 0xFF], str(error))
