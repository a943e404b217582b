"""``tunewatch migrate`` says what it did: it printed "is at the latest schema" right under
its own log line "upgraded from revision X to Y", as if there had been nothing to do."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from alembic.script import ScriptDirectory

from tunewatch._cli import main
from tunewatch.store import Store
from tunewatch.store._migrate import MIGRATIONS_DIR


@pytest.fixture
def cli_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], str]:
    """``--config`` arguments for a SQLite store in ``tmp_path``, and its URL."""
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    monkeypatch.delenv("TUNEWATCH_STORE_URL", raising=False)
    return ["--config", str(config)], f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}"


def test_migrate_says_it_upgraded_and_then_that_there_was_nothing_to_do(
    cli_store: tuple[list[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    args, url = cli_store
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    assert main([*args, "migrate"]) == 0
    capsys.readouterr()
    store = Store(url)  # not Store.open: that migrates to the newest
    try:
        store.migrate(to=previous)
    finally:
        store.close()

    assert main([*args, "migrate"]) == 0
    out = capsys.readouterr().out
    assert f"upgraded from revision {previous} to {head}" in out
    assert "is at the latest schema" not in out

    assert main([*args, "migrate"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(" is at the latest schema\n") and "upgraded from" not in out


def test_migrate_says_it_created_a_new_store(
    cli_store: tuple[list[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    args, _ = cli_store
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert main([*args, "migrate"]) == 0
    assert f"created: it is at the latest schema (revision {head})" in capsys.readouterr().out
