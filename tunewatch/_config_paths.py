"""Where a config's database paths point: relative SQLite paths (and Optuna journal
files) in ``store.url`` and ``tuning.storage_url``, and a relative ``data_dir``, are made
absolute, beside the config file (``~`` expanded), in-memory SQLite is told apart, and
paths holding a NUL, blank values and URLs whose host holds an ``@`` are refused. Part of
:mod:`tunewatch._config`, which calls these while it builds a config.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from tunewatch._errors import ConfigError

# The default store's file under data_dir (`Config.store_url`).
STORE_FILE = "tunewatch.db"


def in_memory_sqlite(url: str) -> bool:
    scheme = url.partition("://")[0].partition("+")[0].lower()
    if scheme != "sqlite":
        return False
    try:
        database = make_url(url).database
    except ArgumentError:
        return False  # the store says why when it opens
    return not database or database == ":memory:" or "mode=memory" in database


def same_database(a: str, b: str) -> bool:
    """Whether URLs ``a`` and ``b`` name one database however they are spelt: the driver
    (``postgresql://``, ``postgresql+psycopg://``), an omitted default port, the host's
    case, the user, a SQLite path or an Optuna journal file's path (no ``://``) through a
    symlink or with ``..``. Not every spelling: ``localhost`` and ``127.0.0.1`` are told
    apart (what must never be one database checks again when it opens them:
    :func:`retune.archive_study`)."""
    if a == b:
        return True
    if "://" not in a and "://" not in b:  # journal files
        return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))
    try:
        url_a, url_b = make_url(a), make_url(b)
    except ArgumentError:
        return False
    backend = url_a.get_backend_name()
    if backend != url_b.get_backend_name():
        return False
    if backend == "sqlite":
        if in_memory_sqlite(a) or in_memory_sqlite(b):
            return False
        paths = (url_a.database or "", url_b.database or "")
        if any(p.startswith("file:") for p in paths):
            return False  # URI filenames: told apart as written
        resolved = [os.path.realpath(os.path.expanduser(p)) for p in paths]
        return resolved[0] == resolved[1]

    def where(url: URL) -> tuple[object, ...]:
        port = url.port if url.port is not None else (5432 if backend == "postgresql" else None)
        host = (url.host or "").lower()
        # the schema a `-csearch_path=` option picks; other options (timeouts) do not move it
        return host, port, url.database, url.query.get("options")

    return where(url_a) == where(url_b)


#: The DB-API driver of each backend tunewatch installs (as the store's URLs are checked).
_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}

#: What a URL whose host holds an '@' is refused with, after the setting's name. The value
#: is not quoted: the host is then the tail of a password holding an unescaped '@'
#: (``u:p@ss@host``), which the driver's error quoted (stderr, logs, a failed job's error).
AT_IN_HOST = (
    "its host holds '@': write an '@' in the password as %40 (the value is not shown: it "
    "holds a password)"
)


def host_holds_at(url: str) -> bool:
    """Whether ``url`` (with ``://``) parses to a host holding an ``@``: SQLAlchemy ends
    the password at its first ``@``, so the rest of a password holding one is read as
    the host. One that does not parse is False (whoever opens it says why)."""
    if "://" not in url:
        return False
    try:
        host = make_url(url).host
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return False
    return host is not None and "@" in host


def blank(value: object) -> bool:
    """Whether ``value`` is text that is empty or spaces only, as a template or a secret
    rendered blank writes it: no URL or directory, yet it read as the default one."""
    return isinstance(value, str) and not value.strip()


def openable_storage(url: str) -> str:
    """``url`` if it is an Optuna journal file's path (no ``://``) or a SQLite or
    PostgreSQL URL with the installed driver, else ``ValueError`` saying why: a tuning
    storage no worker can open (``foo://x``) loaded, and every retune failed."""
    if "://" not in url:
        return url
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ValueError(
            "a tuning storage must be a sqlite or postgresql URL or a journal file's path; "
            "SQLAlchemy cannot parse this URL (a port that is not a number, say)"
        ) from None
    if host_holds_at(url):
        raise ValueError(f"a tuning storage URL: {AT_IN_HOST}")
    backend = parsed.get_backend_name()
    if backend not in _DRIVERS:
        raise ValueError(
            "a tuning storage must be a sqlite or postgresql URL or a journal file's path, "
            f"got backend {backend!r}"
        )
    driver = parsed.get_driver_name()  # loads the dialect: known ones only
    if driver != _DRIVERS[backend]:  # another one is not installed: each job failed
        raise ValueError(
            f"a tuning storage on {backend} must use the driver {_DRIVERS[backend]!r} (the "
            f"one installed) or none, got driver {driver!r}"
        )
    return url


def anchored(url: str, base: Path) -> str:
    """``url`` with a relative SQLite database path made absolute under ``base``; any
    other URL (an absolute or ``~/`` path, ``sqlite://`` in memory, a ``file:`` URI,
    another database) as it is."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.partition("+")[0].lower() != "sqlite":
        return url
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # the store says why when it opens
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return url
    if Path(database).expanduser().is_absolute():
        return url  # `~/…` too: the store expands it
    return parsed.set(database=str(base / database)).render_as_string(hide_password=False)


def beside(url: str, base: Path, key: str, source: str) -> str:
    """``url`` (a database URL, or the path of Optuna's journal file) with a relative
    SQLite or journal path made absolute under ``base``. Refused when that file does not
    exist but the one under the working directory, where releases before 2026-12 read it,
    does: an upgraded daemon silently made and migrated a new, empty store."""
    journal = bool(url) and "://" not in url  # Optuna's journal file at that path
    absolute = str(base / Path(url).expanduser()) if journal else anchored(url, base)
    if absolute == url or base == Path.cwd():
        return absolute
    earlier = str(Path.cwd() / Path(url)) if journal else anchored(url, Path.cwd())
    here, there = _database_file(absolute, journal), _database_file(earlier, journal)
    if here is not None and there is not None and not here.exists() and there.exists():
        raise ConfigError(
            f"{source}: `{key}` names the relative path {url!r}, which is read beside the "
            f"config file, as {here}, which does not exist; earlier releases read it under "
            f"the working directory, as {there}, which does: write the one you mean as an "
            "absolute path"
        )
    return absolute


def data_dir_beside(data_dir: str, base: Path, source: str, *, holds_store: bool) -> str:
    """A config file's ``data_dir`` made absolute under ``base``, the file's directory, with
    ``~`` expanded as in the other paths (``~/x`` made a directory named ``~`` there).
    Refused, as :func:`beside` refuses a URL, when it holds the store (no store URL is
    given) and the store's file there does not exist but the one under the working
    directory, where releases before 2026-12 read a file's ``data_dir``, does: an upgraded
    daemon silently made and migrated a new, empty store beside the file."""
    expanded = Path(os.path.expanduser(data_dir))  # an unknown ~user stays as written
    absolute = str(base / expanded)
    if not holds_store or expanded.is_absolute() or base == Path.cwd():
        return absolute
    here = Path(absolute) / STORE_FILE
    there = Path.cwd() / expanded / STORE_FILE
    if not here.exists() and there.exists():
        raise ConfigError(
            f"{source}: `data_dir` names the relative path {data_dir!r}, which is read beside "
            f"the config file: its store, {here}, does not exist, but the working "
            f"directory's, {there}, does (earlier releases read a file's `data_dir` there, "
            "and a command run without --config keeps its store there): write the one you "
            "mean as an absolute path"
        )
    return absolute


def _database_file(url: str, journal: bool) -> Path | None:
    if journal:
        return Path(url)
    try:
        database = make_url(url).database
    except ArgumentError:
        return None
    return Path(database) if database else None


def without_nul(value: str | None, what: str, *, url: bool = False) -> str | None:
    """``value`` unless it holds a NUL character, which no file name (and so no SQLite
    database, journal file or directory) can, nor a database driver send: it escaped as
    ``ValueError: embedded null byte`` from wherever the path was first used (a traceback
    from the CLI, a failed job). In a URL (``url``, with ``://``) ``%00`` is one too: the
    URL's parts are read percent-decoded."""
    if value is None:
        return None
    found = [value.find("\0")]
    if url and "://" in value:
        found.append(value.find("%00"))
    positions = [i for i in found if i >= 0]
    if positions:
        written = "NUL character (\\x00, or %00 in a URL)" if url else "NUL character (\\x00)"
        raise ValueError(
            f"{what} must not hold a {written}, as no file name can; got one at position "
            f"{min(positions)} of {len(value)} characters"
        )
    return value
