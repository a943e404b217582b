"""The CLI's log lines and printed times are UTC, marked ``Z``, whatever the host's zone.
The log stamped its lines in local time with no offset, beside messages whose times are
UTC ("… 17:51:24,091 INFO …: purged the records received before …T22:51:24+00:00" under
America/New_York; a stamp repeated in the fall-back hour), and the listings printed UTC
times unmarked: one terminal, two clocks, neither named."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tunewatch._cli import main
from tunewatch.store import Store

ROOT = Path(__file__).resolve().parents[2]
MODEL = "credit"
#: the stamp the log's lines start with: ISO 8601 in UTC, to the millisecond
LOG_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) INFO ")


@pytest.fixture
def new_york() -> Iterator[None]:
    """The process's local zone is America/New_York (never UTC's offset) for the test."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "America/New_York")
        time.tzset()
        assert time.localtime().tm_gmtoff != 0
        try:
            yield
        finally:
            mp.undo()
            time.tzset()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    return path


def _minute(at: datetime) -> str:
    return f"{at:%Y-%m-%dT%H:%M}"


@pytest.mark.usefixtures("new_york")
def test_log_lines_are_stamped_in_utc_marked_z_under_a_local_zone(config: Path) -> None:
    before = datetime.now(UTC)
    done = subprocess.run(
        [sys.executable, "-m", "tunewatch", "--config", str(config), "migrate"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    after = datetime.now(UTC)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "store schema created" in line]
    stamp = LOG_STAMP.match(line)
    assert stamp is not None, line
    assert stamp.group(1)[:16] in {_minute(before), _minute(after)}


def _printed(text: str, pattern: str) -> datetime:
    return datetime.strptime(text, pattern).replace(tzinfo=UTC)


@pytest.mark.usefixtures("new_york")
def test_listings_print_utc_times_marked_z_under_a_local_zone(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    assert main(["--config", str(config), "migrate"]) == 0
    end = datetime(2026, 3, 8, 7, 30, 5, tzinfo=UTC)  # 02:30 in New York: a skipped hour
    with Store.open(f"sqlite:///{config.parent / 'data' / 'tunewatch.db'}") as store:
        store.ensure_model(name=MODEL, task="binary", feature_names=["x0"])
        store.add_version(
            model=MODEL,
            artefact_sha256="ab" * 32,
            hyperparameters={},
            size_bytes=1,
            actor="bob",
        )
        store.add_evaluation(
            model=MODEL,
            version=1,
            kind="drift",
            status="ok",
            window_start=None,
            window_end=end,
            payload={"alarm": False, "n_current": 1},
        )
    capsys.readouterr()
    common = ["--config", str(config), "--actor", "alice"]

    assert main([*common, "models"]) == 0
    [version] = [line for line in capsys.readouterr().out.splitlines() if " v1 " in line]
    created = version.split("created=")[1]
    assert created.endswith("Z")
    assert before <= _printed(created, "%Y-%m-%d %H:%MZ") <= datetime.now(UTC)

    assert main([*common, "audit"]) == 0
    entries = [line for line in capsys.readouterr().out.splitlines() if "register" in line]
    assert entries
    for entry in entries:
        at = " ".join(entry.split()[1:3])
        assert at.endswith("Z")
        assert before <= _printed(at, "%Y-%m-%d %H:%M:%SZ") <= datetime.now(UTC)

    assert main([*common, "drift", MODEL]) == 0
    [evaluation] = capsys.readouterr().out.splitlines()
    assert evaluation.startswith("2026-03-08 07:30:05Z v1 ok ")
