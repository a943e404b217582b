"""Where and when ``Store.migrate`` works: a store at its revision opens without the write
lock; on PostgreSQL the store is its connection's current schema, whatever else the
search_path names; ``tunewatch migrate --to`` takes a store to a named revision."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from alembic import command
from alembic.script import ScriptDirectory

from tests.conftest import PG_BASE_URL
from tunewatch import StoreError
from tunewatch._cli import main
from tunewatch.store import Store, metadata
from tunewatch.store._migrate import MIGRATIONS_DIR, alembic_config

NEWER = "0099"


def _head_and_previous() -> tuple[str, str]:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    return head, previous


def _sqlite_revisions(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


# -- SQLite: a store at its revision opens with a read transaction --------------------------


def test_a_store_at_head_opens_and_reads_while_another_connection_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tunewatch.db"
    url = f"sqlite:///{path}"
    with Store.open(url) as store:
        store.ensure_model(name="m", task="binary", feature_names=["a"])
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        with Store.open(url, lock_timeout_s=0.2) as store:
            assert [m.name for m in store.list_models()] == ["m"]
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_store_that_needs_an_upgrade_still_waits_for_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "tunewatch.db"
    url = f"sqlite:///{path}"
    head, previous = _head_and_previous()
    with Store.open(url) as store, store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), previous)
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="database is locked"):
            Store.open(url, lock_timeout_s=0.05)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert _sqlite_revisions(path) == [previous]
    Store.open(url).close()
    assert _sqlite_revisions(path) == [head]


# -- PostgreSQL: the store is the current schema ---------------------------------------------

# about making and migrating stores: each begins with no store (not a migrated copy)
pytestmark = pytest.mark.new_store

_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@pytest.fixture
def two_schemas(pg_available: None) -> Iterator[tuple[str, str]]:
    import psycopg

    a, b = (f"tw_{uuid.uuid4().hex[:12]}" for _ in range(2))
    with psycopg.connect(_ADMIN, autocommit=True) as c:
        for schema in (a, b):
            c.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield a, b
    finally:
        with psycopg.connect(_ADMIN, autocommit=True) as c:
            for schema in (a, b):
                c.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _pg_url(*search_path: str) -> str:
    return f"{PG_BASE_URL}?options=-csearch_path%3D{','.join(search_path)}"


def _schema_state(schema: str) -> tuple[list[str], list[str], list[str]]:
    """The schema's tables, its alembic_version rows and its models' names."""
    import psycopg

    with psycopg.connect(_ADMIN) as c:
        tables = [
            row[0]
            for row in c.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "ORDER BY 1",
                (schema,),
            )
        ]
        versions = [
            row[0] for row in c.execute(f'SELECT version_num FROM "{schema}".alembic_version')
        ]
        models = [row[0] for row in c.execute(f'SELECT name FROM "{schema}".models ORDER BY 1')]
    return tables, versions, models


@pytest.mark.postgres
@pytest.mark.parametrize("a_revision", ["previous", "head"])
def test_a_store_is_created_in_its_current_schema_not_in_one_later_on_the_search_path(
    two_schemas: tuple[str, str], a_revision: str
) -> None:
    a, b = two_schemas
    head, previous = _head_and_previous()
    with Store.open(_pg_url(a)) as store:
        store.ensure_model(name="a_model", task="binary", feature_names=["x"])
        if a_revision == "previous":
            with store.engine.begin() as conn:
                command.downgrade(alembic_config(conn), previous)
    a_before = _schema_state(a)
    assert a_before[1] == [head if a_revision == "head" else previous]

    with Store.open(_pg_url(b, a)) as store:
        assert store.list_models() == []
        store.ensure_model(name="b_model", task="binary", feature_names=["x"])

    assert _schema_state(a) == a_before
    tables, versions, models = _schema_state(b)
    assert versions == [head]
    assert set(tables) == {t.name for t in metadata.sorted_tables} | {"alembic_version"}
    assert models == ["b_model"]


@pytest.mark.postgres
def test_a_search_path_naming_no_existing_schema_is_refused_naming_the_rule(
    pg_available: None,
) -> None:
    missing = f"tw_missing_{uuid.uuid4().hex[:12]}"
    with pytest.raises(StoreError) as info:
        Store.open(_pg_url(missing))
    assert info.value.code == "no_store_schema"
    assert "current schema" in info.value.message
    assert missing in info.value.message


# -- tunewatch migrate --to ------------------------------------------------------------------


@pytest.fixture
def cli_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Path]:
    """``--config`` arguments for a SQLite store in ``tmp_path``, and its file."""
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    monkeypatch.delenv("TUNEWATCH_STORE_URL", raising=False)
    return ["--config", str(config)], tmp_path / "data" / "tunewatch.db"


def test_migrate_to_a_previous_revision_downgrades_and_opening_upgrades_again(
    cli_store: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args, path = cli_store
    head, previous = _head_and_previous()
    assert main([*args, "migrate"]) == 0
    assert _sqlite_revisions(path) == [head]
    capsys.readouterr()

    assert main([*args, "migrate", "--to", previous]) == 0
    assert _sqlite_revisions(path) == [previous]
    assert f"is at revision {previous!r}" in capsys.readouterr().out

    assert main([*args, "models"]) == 0
    assert _sqlite_revisions(path) == [head]

    assert main([*args, "migrate", "--to", previous]) == 0
    assert main([*args, "migrate", "--to", head]) == 0
    assert _sqlite_revisions(path) == [head]


def test_migrate_to_an_unknown_revision_is_refused_naming_the_known_ones(
    cli_store: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args, path = cli_store
    head, previous = _head_and_previous()
    assert main([*args, "migrate"]) == 0
    capsys.readouterr()
    assert main([*args, "migrate", "--to", NEWER]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert f"got {NEWER!r}" in line and "0001" in line and previous in line and head in line
    assert _sqlite_revisions(path) == [head]


def test_the_too_new_message_names_the_downgrade_command_for_the_newer_build(
    cli_store: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args, path = cli_store
    head, _ = _head_and_previous()
    assert main([*args, "migrate"]) == 0
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (NEWER,))
    capsys.readouterr()
    assert main([*args, "models"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert f"with the newer tunewatch, run `tunewatch migrate --to {head!r}`" in line
    # this build cannot downgrade from a revision it has no script for
    assert main([*args, "migrate", "--to", head]) == 2
    assert "which this tunewatch does not know" in capsys.readouterr().err
    assert _sqlite_revisions(path) == [NEWER]
