"""`tunewatch demo` starts from a fresh store: it may only clear a directory it made."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.serve_process import START_S, free_port, serve_process
from tunewatch._demo import fresh_demo_dir
from tunewatch._errors import ConfigError
from tunewatch._example import ExampleModel

#: What a cleared demo directory holds: the demo's marker, and the lock file that outlives
#: every process using the directory (deleting a locked file lets two processes lock two)
CLEARED = [".tunewatch-demo", ".tunewatch.lock"]
ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]


def test_a_directory_the_demo_did_not_make_is_refused_and_kept(tmp_path: Path) -> None:
    """`tunewatch demo --data-dir .tunewatch` used to delete the daemon's own store."""
    (tmp_path / "tunewatch.db").write_text("production")
    with pytest.raises(ConfigError, match="--data-dir.*not made by the demo"):
        fresh_demo_dir(tmp_path)
    assert (tmp_path / "tunewatch.db").read_text() == "production"


def test_the_demo_s_own_directory_is_cleared_and_a_new_or_empty_one_used(tmp_path: Path) -> None:
    new = tmp_path / "demo"
    fresh_demo_dir(new)
    (new / "tunewatch.db").write_text("last run")
    fresh_demo_dir(new)
    assert sorted(p.name for p in new.iterdir()) == CLEARED
    empty = tmp_path / "empty"
    empty.mkdir()
    fresh_demo_dir(empty)
    assert (empty / ".tunewatch-demo").exists()


def test_the_default_demo_directory_made_before_the_marker_is_cleared(tmp_path: Path) -> None:
    """`make demo` after an upgrade: the demo's own default directory has no marker yet."""
    old = tmp_path / ".tunewatch-demo"
    old.mkdir()
    (old / "tunewatch.db").write_text("an earlier demo")
    fresh_demo_dir(old)
    assert sorted(p.name for p in old.iterdir()) == CLEARED


def test_the_demo_s_search_space_is_the_package_s_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed from a wheel (the Docker image's `pip install .`), the demo looked for
    `configs/search_spaces/demo.yaml` beside the installed package or under the working
    directory, and exited 2: the spaces are package data now (a wheel's install:
    test_shipped_spaces_wheel.py)."""
    import tunewatch
    from tunewatch._demo import demo_config

    monkeypatch.chdir(tmp_path)
    (model,) = demo_config(tmp_path / "data")["models"]
    space = Path(model["tuning"]["search_space"])
    assert space == Path(tunewatch.__file__).parent / "search_spaces" / "demo.yaml"
    assert space.is_file()


def _stored(data_dir: Path) -> tuple[int, int, int]:
    """The store's models, versions and recorded requests, read from its file."""
    with sqlite3.connect(f"file:{data_dir / 'tunewatch.db'}?mode=ro", uri=True) as db:
        return tuple(  # type: ignore[return-value]
            db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("models", "model_versions", "requests")
        )


def test_a_demo_s_directory_a_daemon_serves_is_refused_and_its_store_kept(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """After a demo, the README's `TUNEWATCH_DATA_DIR=.tunewatch-demo tunewatch serve` serves
    the demo's marked directory; a demo started then deleted the live store (the database,
    its -wal and -shm, the artefacts) under the daemon, which went on answering 200 while
    committing every request to the deleted file."""
    data_dir = tmp_path / "demo"
    fresh_demo_dir(data_dir)  # marked, as a demo leaves it
    daemon, tokens = make_daemon(data_dir, trained, extra={"scheduler": {"enabled": False}})
    daemon.close()
    port = free_port()
    raw = {
        "data_dir": str(data_dir),
        "server": {"port": port},
        "scheduler": {"enabled": False},
        "models": [{"name": MODEL, "task": "binary"}],
    }
    with serve_process(raw, tmp_path / "serve.yaml"):
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer",
            json={"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": ROW}]},
            headers={"Authorization": f"Bearer {tokens['scorer']}"},
        )
        assert answer.status_code == 200, answer.text
        with pytest.raises(ConfigError, match="in use by another tunewatch process") as refused:
            fresh_demo_dir(data_dir)
        assert refused.value.code == "demo_dir_in_use"
        assert str(data_dir) in refused.value.message
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEWATCH_")}
        demo = subprocess.run(
            [sys.executable, "-m", "tunewatch._cli", "demo", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            env=env,
            timeout=START_S,
        )
        assert demo.returncode == 2, demo.stdout + demo.stderr
        assert "in use by another tunewatch process (serve, demo)" in demo.stderr
        assert "stop it first, or pass another --data-dir" in demo.stderr
        assert _stored(data_dir) == (1, 2, 1)
    fresh_demo_dir(data_dir)  # the daemon stopped: the demo's directory is the demo's again
    assert sorted(p.name for p in data_dir.iterdir()) == CLEARED


def test_a_running_demo_s_directory_is_refused_to_a_second_demo(tmp_path: Path) -> None:
    from tunewatch._demo import held_fresh_demo_dir

    data_dir = tmp_path / "demo"
    with held_fresh_demo_dir(data_dir):
        (data_dir / "tunewatch.db").write_text("the first demo's store")
        with pytest.raises(ConfigError, match="in use by another tunewatch process") as refused:
            fresh_demo_dir(data_dir)
        assert refused.value.code == "demo_dir_in_use"
        assert (data_dir / "tunewatch.db").read_text() == "the first demo's store"
    fresh_demo_dir(data_dir)
    assert sorted(p.name for p in data_dir.iterdir()) == CLEARED
