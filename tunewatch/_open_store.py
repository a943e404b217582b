"""Opening the configured store, as the daemon and every CLI command do: with the
config's SQLite durability and lock timeout, a warning when this host's clock is far
from the database's, and the config checked against the models the store holds (their
names, tasks, features and, for an objective of a number of classes, the champion's).

Apart from :mod:`tunewatch._daemon` so that a command that reads the store does not
import the web app and the scheduler (FastAPI, scikit-learn, Optuna: seconds).
"""

from __future__ import annotations

import logging
import os
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tunewatch._config import Config, objective_classes
from tunewatch._config_paths import in_memory_sqlite
from tunewatch._errors import ConfigError, NotFoundError, StoreError, TunewatchError
from tunewatch.store import ModelRow, Store, redact_url
from tunewatch.store._engine import transaction
from tunewatch.store._file_access import user_name
from tunewatch.store._migrate import store_schema

logger = logging.getLogger(__name__)

#: How far this process's clock may run from the database's before opening the store
#: warns. Leases, heartbeats and alert claims use the database's clock; a comparison
#: reads from a version's registration or promotion, by that host's clock, less an hour
#: (``tunewatch.comparison.CLOCK_MARGIN``), against labels stamped by the replica that
#: takes them.
CLOCK_WARNING = timedelta(minutes=5)


def open_store(config: Config, *, create: bool = True) -> Store:
    """The configured store, migrated. ``create=False`` (a command that reads or changes
    what a store holds) refuses a store that does not exist, rather than make an empty one
    and answer from it: a SQLite file that is not there, a PostgreSQL schema holding no
    store (no ``alembic_version`` table). With ``--config`` forgotten, or in another
    directory, ``tunewatch jobs`` said there were no jobs and left a new store behind; on
    PostgreSQL, pointed at an existing empty database (a mistyped name that exists,
    ``postgres``), it made the whole schema there and said "audit chain intact"."""
    if not create:
        missing = _missing_sqlite_file(config.store_url)
        if missing is not None:
            raise TunewatchError(
                f"no store at {missing}: pass --config (or set $TUNEWATCH_CONFIG) naming the "
                "daemon's configuration; `tunewatch migrate` makes a new, empty store",
                code="no_store",
            )
    warn_of_data_dir_owner(config)
    store = Store(
        config.store_url,
        sqlite_synchronous=config.store.sqlite_synchronous,
        lock_timeout_s=config.store.lock_timeout_s,
    )
    try:  # as Store.open, with the check first
        if not create and store.dialect == "postgresql":
            _refuse_an_empty_schema(store, config.store_url)
        store.migrate()
    except BaseException:  # cleanup only: the store closed, the error re-raised as it was
        store.close()
        raise
    warn_on_clock_offset(store)
    return store


def warn_of_data_dir_owner(config: Config) -> None:
    """Log a warning when this process's user is not the owner of ``data_dir``: what it
    writes there (artefacts, reports, a new store) is its user's, which the daemon's user
    may not read. Run with sudo, `register --stage champion`, `tokens create` and
    `report` left root's artefacts/ and reports/ (0700) there, and the daemon, as the
    directory's owner, answered 503 model_not_ready to every inference, with nothing said
    when the commands ran. A directory not made yet is this process's to make; one it
    may not write in, the store's error names (with its owner and mode)."""
    data_dir = Path(config.data_dir).expanduser()
    try:
        owner = data_dir.stat().st_uid
    except OSError:
        return
    user = os.geteuid()
    if owner == user or not os.access(
        data_dir, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids
    ):
        return  # nothing written there by this user: an error says so, naming the path
    owner_name, running = user_name(owner), user_name(user)
    logger.warning(
        "data_dir %s is owned by %s, and this command runs as %s: the files it writes there "
        "(artefacts, reports, a new store) will be owned by %s, and the daemon's user (%s, "
        "if it runs as the directory's owner) may not be able to read them; run tunewatch "
        "as %s",
        data_dir,
        owner_name,
        running,
        running,
        owner_name,
        owner_name,
    )


def _refuse_an_empty_schema(store: Store, url: str) -> None:
    """Refuse (``no_store``) a PostgreSQL store whose schema (the connection's current
    one, where migrations make it) has no version table: no store was ever made there."""
    with transaction(store.engine, "open") as conn:
        schema = store_schema(conn)  # none at all: no_store_schema, saying why
        if inspect(conn).has_table("alembic_version", schema=schema):
            return
        database = conn.execute(text("SELECT current_database()")).scalar_one()
    raise TunewatchError(
        f"no store in schema {schema!r} of database {database!r} ({redact_url(url)}): it "
        "has no alembic_version table. Pass --config (or set $TUNEWATCH_CONFIG) naming the "
        "daemon's configuration, or correct `store.url` ($TUNEWATCH_STORE_URL: the "
        "database, and the schema in ?options=-csearch_path%3D<schema>); `tunewatch "
        "migrate` makes a new, empty store there",
        code="no_store",
    )


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


#: How many of the store's models a message about a configured model names.
_NAMES_SHOWN = 10


def check_stored_models(config: Config, store: Store) -> None:
    """The config against the models the store holds (``ConfigError``): a configured
    name the store does not hold but holds in another case, another Unicode form
    (``e`` and a combining acute for ``é``, full-width letters) or with spaces around it
    (the config's settings, its regulation among them, applied to no model); the
    config's tasks and settings that name columns, against the stored models' tasks and
    features; an objective of a number of classes (a ``cost_matrix``) against the
    champion's (its primary output's columns), all known only once a model registered;
    a ``regulated: false`` the config sets for a model stored regulated is logged (it
    cannot clear the flag: regulation only tightens). A configured model the store does
    not hold at all is logged (a config written before its first registration), once per
    call: the daemon calls it when it starts, and the commands that evaluate, compare,
    retune, promote or decide an approval before they do."""
    held: list[ModelRow] | None = None  # read once, for the first model not stored
    for index, cfg in enumerate(config.models):
        try:
            stored = store.get_model(cfg.name)
        except NotFoundError:
            held = store.list_models() if held is None else held
            _not_stored(config, index, [m.name for m in held])
            continue
        if stored.regulated and not cfg.regulated and "regulated" in cfg.model_fields_set:
            logger.warning(
                "models.%d.regulated: false, but the store holds model %s regulated: "
                "regulation only tightens, so every promotion of it still waits for an "
                "approver (the config cannot clear the stored flag)",
                index,
                ascii(cfg.name),
            )
        classes = None
        if stored.task == "multiclass" and objective_classes(cfg) is not None:
            classes = _champion_classes(config, store, cfg.name)
        config.check_registered_model(
            cfg.name, stored.feature_names, task=stored.task, classes=classes
        )


def warn_of_unlisted_models(config: Config, store: Store) -> None:
    """Log the stored models the config does not list: each runs on the defaults of its
    task (:meth:`Config.model_or_default`), the default triggers among them: a decided
    challenger promoted (under its stored safe ranges and regulation), a retune on drift.
    A model removed from the config kept serving, evaluated, compared and promoted under
    them, and nothing said so (its config had said notify only)."""
    listed = {m.name for m in config.models}
    unlisted = [m.name for m in store.list_models() if m.name not in listed]
    if not unlisted:
        return
    shown = ", ".join(map(ascii, unlisted[:_NAMES_SHOWN]))
    more = f", … ({len(unlisted)} in all)" if len(unlisted) > _NAMES_SHOWN else ""
    logger.warning(
        "models: the store holds %s%s, which the config does not list: they run on their "
        "task's default settings — a challenger decided better is promoted (under the "
        "safe ranges and regulation stored before), drift, decay and alerts retune —; "
        "list them under `models` to set their own",
        shown,
        more,
    )


def _not_stored(config: Config, index: int, held: list[str]) -> None:
    """Refuse configured model ``index`` when the store holds its name but for case,
    Unicode form or surrounding spaces under a model the config does not list (a config
    listing both names means two models); else log that it is not registered yet. Names
    show escaped (:func:`ascii`): ``café`` decomposed and precomposed print alike, escaped
    they read ``'cafe\\u0301'`` and ``'caf\\xe9'``."""
    name = config.models[index].name
    listed = {m.name for m in config.models}
    alike = [h for h in held if _folded(h) == _folded(name) and h not in listed]
    if alike:
        raise ConfigError(
            f"models.{index}.name: a configured model must be named exactly as the store "
            f"holds it, got {ascii(name)}, which the store does not hold; it holds "
            f"{', '.join(map(ascii, alike))} (model names are case-sensitive and compared "
            "character by character, a combining accent or a full-width letter too): "
            "correct the name in the config. Under another name its settings "
            "(`regulated`, safe ranges, triggers) apply to no model: the stored one would "
            "be promoted with no approver"
        )
    shown = ", ".join(map(ascii, held[:_NAMES_SHOWN]))
    more = f", … ({len(held)} in all)" if len(held) > _NAMES_SHOWN else ""
    logger.log(
        logging.WARNING if held else logging.INFO,
        "models.%d.name: model %s is not registered yet: its settings apply from its first "
        "registration under that name (model names are case-sensitive); the store holds %s",
        index,
        ascii(name),
        f"{shown}{more}" if held else "no models",
    )


def _folded(name: str) -> str:
    """``name`` as a person reads it: spaces around it dropped, NFKC-normalised and
    case-folded, normalised again (case folding may decompose a letter NFKC composes), as
    :func:`tunewatch.store._tokens.fold_token_name` folds a token's name."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return folded.strip()


def _champion_classes(config: Config, store: Store, model: str) -> int | None:
    """The classes of ``model``'s champion: its primary output's columns as the graph
    declares them (read from the ONNX file, no session), else as a run of zeros gives
    them. ``None``, logged, when there is no champion or its artefact cannot be read or
    loaded: a champion that cannot be read is not checked against, as registration
    does not (its replacement must not be held up by it)."""
    from shadow import ShadowError, declared_primary_width
    from tunewatch._artefacts import ArtefactStore

    champion = store.champion(model)
    if champion is None:
        return None
    try:
        data = ArtefactStore(config.artefact_dir, store=store).get(champion.artefact_sha256)
        return declared_primary_width(data) or _run_width(data)
    except (StoreError, ShadowError) as exc:
        logger.warning(
            "model=%s version=%d cannot be read or loaded, its objective's classes are not "
            "checked against it: %s",
            model,
            champion.version,
            exc,
        )
        return None


def _run_width(data: bytes) -> int | None:
    """The primary output's columns as a run of zeros gives them (a session)."""
    from shadow import OnnxModel

    return OnnxModel.from_bytes(data).primary_width()


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
