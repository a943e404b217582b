"""A store migrated by a newer tunewatch is refused with a message that says why, not
Alembic's ``CommandError`` traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from alembic.script import ScriptDirectory

from tunewatch import StoreError
from tunewatch._cli import main
from tunewatch.store import Store
from tunewatch.store._migrate import MIGRATIONS_DIR

NEWER = "0099"


def _head() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def _migrated_by_a_newer_build(url: str) -> None:
    Store.open(url).close()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": NEWER})
    finally:
        engine.dispose()


def _stored_revision(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar())
    finally:
        engine.dispose()


def test_a_store_at_a_revision_this_build_does_not_know_is_refused_naming_both(
    store_url: str,
) -> None:
    _migrated_by_a_newer_build(store_url)
    with pytest.raises(StoreError) as info:
        Store.open(store_url)
    error = info.value
    assert error.code == "schema_too_new"
    assert f"at revision '{NEWER}', which" in error.message
    assert f"(its newest is '{_head()}')" in error.message
    assert "upgrade tunewatch" in error.message
    assert _stored_revision(store_url) == NEWER  # left as it was


def test_migrate_of_a_store_a_newer_build_migrated_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}"
    _migrated_by_a_newer_build(url)
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    monkeypatch.setenv("TUNEWATCH_STORE_URL", url)
    assert main(["--config", str(config), "migrate"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    [line] = captured.err.splitlines()
    assert line.startswith("tunewatch: error: ")
    assert f"at revision '{NEWER}', which" in line and f"'{_head()}'" in line
    assert "upgrade tunewatch" in line
