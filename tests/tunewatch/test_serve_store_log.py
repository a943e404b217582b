"""`tunewatch serve` says where its store is before it opens it: an environment variable
may have moved it from the file's (the image's `$TUNEWATCH_DATA_DIR` put the store in the
container's writable layer, and nothing in the log said so)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import make_url

from tests.tunewatch.serve_process import free_port, serving


def _store_line(log: list[str]) -> str:
    (line,) = (line for line in log if " store " in line and "data directory" in line)
    assert log.index(line) < next(i for i, s in enumerate(log) if "listening on" in s)
    return line


def test_serve_logs_its_sqlite_store_and_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    raw = {"data_dir": str(data), "server": {"port": free_port()}}
    with serving(raw, tmp_path / "tunewatch.yaml") as log:
        line = _store_line(log)
    assert f"store sqlite:///{data / 'tunewatch.db'}, data directory {data}" in line


@pytest.mark.postgres
def test_serve_logs_a_postgresql_store_without_its_password(tmp_path: Path, pg_url: str) -> None:
    url = make_url(pg_url).set(password="s3cret-pw").render_as_string(hide_password=False)
    raw = {"data_dir": str(tmp_path / "data"), "store": {"url": url}}
    raw["server"] = {"port": free_port()}
    with serving(raw, tmp_path / "tunewatch.yaml") as log:
        line = _store_line(log)
    assert "s3cret-pw" not in "".join(log)
    assert ":***@127.0.0.1" in line
