"""Opening the configured store, as the daemon and every CLI command do: with the
config's SQLite durability and lock timeout, a warning when this host's clock is far
from the database's, and the config checked against the models the store holds.

Apart from :mod:`tunewatch._daemon` so that a command that reads the store does not
import the web app and the scheduler (FastAPI, scikit-learn, Optuna: seconds).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tunewatch._config import Config
from tunewatch._config_paths import in_memory_sqlite
from tunewatch._errors import NotFoundError, TunewatchError
from tunewatch.store import Store

logger = logging.getLogger(__name__)

#: How far this process's clock may run from the database's before opening the store
#: warns. Leases, heartbeats and alert claims use the database's clock; a comparison
#: reads from a version's registration, by the registering host's clock, less an hour
#: (``tunewatch.comparison.CLOCK_MARGIN``), against requests stamped by a replica's.
CLOCK_WARNING = timedelta(minutes=5)


def open_store(config: Config, *, create: bool = True) -> Store:
    """The configured store, migrated. ``create=False`` (a command that reads or changes
    what a store holds) refuses a SQLite store that does not exist, rather than make an
    empty one and answer from it: with ``--config`` forgotten, or in another directory,
    ``tunewatch jobs`` said there were no jobs and left a new store behind."""
    if not create:
        missing = _missing_sqlite_file(config.store_url)
        if missing is not None:
            raise TunewatchError(
                f"no store at {missing}: pass --config (or set $TUNEWATCH_CONFIG) naming the "
                "daemon's configuration; `tunewatch migrate` makes a new, empty store",
                code="no_store",
            )
    store = Store.open(
        config.store_url,
        sqlite_synchronous=config.store.sqlite_synchronous,
        lock_timeout_s=config.store.lock_timeout_s,
    )
    warn_on_clock_offset(store)
    return store


def warn_on_clock_offset(
    store: Store, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> timedelta:
    """Log a warning when this host's clock is more than ``CLOCK_WARNING`` off the
    database's; returns the offset (the database's clock minus this host's)."""
    offset = store.clock_offset(now)
    if abs(offset) > CLOCK_WARNING:
        logger.warning(
            "this host's clock runs %.0f s %s the database's: keep hosts' clocks in sync "
            "(NTP); a comparison skips the requests a replica stamped more than an hour "
            "before a version's registration by the registering host's clock",
            abs(offset.total_seconds()),
            "behind" if offset > timedelta(0) else "ahead of",
        )
    return offset


def check_stored_models(config: Config, store: Store) -> None:
    """The config's tasks and settings that name columns, against the stored models'
    tasks and features (known only once a model registered)."""
    for cfg in config.models:
        try:
            stored = store.get_model(cfg.name)
        except NotFoundError:
            continue
        config.check_registered_model(cfg.name, stored.feature_names, task=stored.task)


def _missing_sqlite_file(url: str) -> str | None:
    """The database file a SQLite ``url`` names if it does not exist; None for another
    database, an in-memory one or a ``file:`` URI (the store says what is wrong there)."""
    if url.partition("://")[0].partition("+")[0].lower() != "sqlite" or in_memory_sqlite(url):
        return None
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # Store.open says why
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite"):
        return None  # a driver the store refuses, saying so
    database = parsed.database
    if not database or database.startswith("file:") or Path(database).exists():
        return None
    return database
