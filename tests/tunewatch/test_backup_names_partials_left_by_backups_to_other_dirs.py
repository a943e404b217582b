"""A backup names the partial backups left beside DIR by backups to other directories.

Backups are usually dated (cron: ``tunewatch backup /backups/$(date +%F)``), so no later
backup is to the DIR of one killed part way: its hidden partial directory, the size of the
store, was named by none of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunewatch._backup_partial import make_partial
from tunewatch._cli import main


@pytest.fixture
def live(tmp_path: Path) -> Path:
    """A config whose data_dir holds a (small) store."""
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    assert main(["--config", str(config), "migrate"]) == 0
    return config


def test_backup_names_a_partial_another_days_backup_left_and_leaves_it(
    live: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "backups"
    yesterday, today = root / "2026-12-04", root / "2026-12-05"
    left = make_partial(yesterday, yesterday)  # as a backup killed part way left it
    (left / "tunewatch.db").write_bytes(b"part of a copy")
    other = root / ".notes.partial-x"  # not a backup's: not named
    other.mkdir()
    capsys.readouterr()
    assert main(["--config", str(live), "backup", str(today)]) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"tunewatch: warning: {left} is a partial backup to {yesterday}, left by a backup "
        "stopped part way, or one still running: delete it once none runs"
    ], err
    assert (left / "tunewatch.db").read_bytes() == b"part of a copy"
    assert other.is_dir() and not yesterday.exists()
    assert [p.name for p in today.iterdir()] == ["tunewatch.db"]
