"""A migration is logged once committed: "store schema upgraded" was logged inside the
transaction, so a commit that failed (a full disk) left a log saying the store was
upgraded while it stayed at its revision."""

from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml
from alembic import command

from tests.tunewatch.store.record_helpers import output_record, request_record
from tunewatch.store import Store
from tunewatch.store._migrate import alembic_config

ROOT = Path(__file__).resolve().parents[3]
OLDER = "0005"
# room for SQLite's WAL index (tunewatch.db-shm, 32 KiB) and a few WAL frames, not for
# the pages the upgrade writes at its commit
FILE_SIZE_LIMIT = 40 * 1024


def _older_populated_store(data_dir: Path) -> Path:
    path = data_dir / "tunewatch.db"
    with Store.open(f"sqlite:///{path}") as store:
        store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
        store.add_version(
            model="m", artefact_sha256="a" * 64, hyperparameters={}, size_bytes=1, actor="t"
        )
        ids = [f"r{i}" for i in range(300)]
        store.write_records([request_record(i) for i in ids], [output_record(i) for i in ids])
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), OLDER)
    return path


def _limit_file_size() -> None:  # in the child, before it runs tunewatch
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def test_an_upgrade_whose_commit_fails_is_not_logged_as_done(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = _older_populated_store(data_dir)
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data_dir)}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEWATCH_")}

    done = subprocess.run(
        [sys.executable, "-m", "tunewatch", "--config", str(config), "migrate"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        preexec_fn=_limit_file_size,
        timeout=120,
    )

    assert done.returncode == 2, done.stderr
    assert "tunewatch: error: store migrate: database unavailable" in done.stderr
    assert "store schema upgraded" not in done.stderr
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(OLDER,)]
        assert conn.execute("SELECT count(*) FROM requests").fetchone() == (300,)
