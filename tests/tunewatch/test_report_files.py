"""The rationale reports' files: owner-only like the store beside them, and a report that
cannot be written is one warning naming its path (a traceback per report, at ERROR, for a
daemon or a CLI whose ``reports/`` another user owned), or, for ``tunewatch report``,
whose job writing it is, one line and exit 2.

These run as root too, whom file modes do not stop: the writes fail on a file where the
directory goes, or a directory where a report goes."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._cli import main
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._report import refresh_reports


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which files were created 0644 and directories 0755."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path, umask_022: None) -> Iterator[Daemon]:
    """v1 champion, v2 shadow, in a data directory that existed beforehand, 0755 (the
    Dockerfile's ``mkdir -p``, systemd's ``StateDirectory=``)."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    made, _ = make_daemon(data, trained)
    try:
        yield made
    finally:
        made.close()


def _reports(daemon: Daemon) -> Path:
    return Path(daemon.config.data_dir).resolve() / "reports"


def _config_file(daemon: Daemon, tmp_path: Path) -> Path:
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(daemon.config.model_dump(mode="json")))
    return path


def _report_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tunewatch._report"]


def test_reports_are_owner_only_and_their_new_directory_too_under_umask_022(
    daemon: Daemon,
) -> None:
    refresh_reports(daemon.store, daemon.config, MODEL, (1, 2))
    folder = _reports(daemon)
    assert _mode(folder) == 0o700
    written = sorted(p.name for p in folder.iterdir())
    assert written == [f"{MODEL}-v{v}.{s}" for v in (1, 2) for s in ("html", "md")]
    for path in folder.iterdir():
        assert _mode(path) == 0o600, path


def test_an_existing_reports_directory_keeps_its_mode_and_an_old_report_is_made_owner_only(
    daemon: Daemon,
) -> None:
    folder = _reports(daemon)
    folder.mkdir()
    folder.chmod(0o750)  # the operator's choice
    old = folder / f"{MODEL}-v1.md"
    old.write_text("an older story", encoding="utf-8")
    old.chmod(0o644)
    refresh_reports(daemon.store, daemon.config, MODEL, (1,))
    assert _mode(folder) == 0o750
    assert _mode(old) == 0o600 and "an older story" not in old.read_text(encoding="utf-8")
    assert _mode(folder / f"{MODEL}-v1.html") == 0o600


def test_a_reports_path_that_is_a_file_is_one_warning_per_report_naming_it(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _reports(daemon)
    folder.write_text("not a directory", encoding="utf-8")
    with caplog.at_level(logging.DEBUG, logger="tunewatch._report"):
        refresh_reports(daemon.store, daemon.config, MODEL, (2, 1))
    records = _report_records(caplog)
    assert [(r.levelno, r.exc_info) for r in records] == [(logging.WARNING, None)] * 2
    for record, version in zip(records, (2, 1), strict=True):
        message = record.getMessage()
        assert f"model={MODEL} version={version}:" in message
        assert str(folder) in message and "(EEXIST)" in message, message
        assert "Traceback" not in message and "\n" not in message


def test_a_report_path_that_is_a_directory_is_one_warning_and_the_others_are_written(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _reports(daemon)
    blocked = folder / f"{MODEL}-v2.md"
    blocked.mkdir(parents=True)
    with caplog.at_level(logging.DEBUG, logger="tunewatch._report"):
        refresh_reports(daemon.store, daemon.config, MODEL, (2, 1))
    [record] = _report_records(caplog)
    assert (record.levelno, record.exc_info) == (logging.WARNING, None)
    assert str(blocked) in record.getMessage() and "(EISDIR)" in record.getMessage()
    assert (folder / f"{MODEL}-v1.md").is_file() and (folder / f"{MODEL}-v1.html").is_file()
    # no partial file left behind by the failed write
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{MODEL}-v1.html",
        f"{MODEL}-v1.md",
        f"{MODEL}-v2.md",
    ]


def test_cli_rollback_with_unwritable_reports_warns_once_per_report_and_succeeds(
    daemon: Daemon,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The rollback printed two PermissionError tracebacks, then exited 0."""
    daemon.store.promote(MODEL, 2, actor="ops", reason="better")
    _reports(daemon).write_text("not a directory", encoding="utf-8")
    config = _config_file(daemon, tmp_path)
    with caplog.at_level(logging.DEBUG, logger="tunewatch._report"):
        code = main(
            ["--config", str(config), "--actor", "alice", "rollback", MODEL, "--reason", "worse"]
        )
    assert code == 0
    assert "version 1 is champion again" in capsys.readouterr().out
    records = _report_records(caplog)
    assert [(r.levelno, r.exc_info) for r in records] == [(logging.WARNING, None)] * 2


def test_cli_report_that_cannot_be_written_is_one_error_line_naming_the_path(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tunewatch report` printed the raw ``[Errno 13] Permission denied: '…'``."""
    blocked = _reports(daemon) / f"{MODEL}-v1.html"
    blocked.mkdir(parents=True)
    config = _config_file(daemon, tmp_path)
    assert main(["--config", str(config), "report", MODEL, "1"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        f"tunewatch: error: cannot write the rationale report {blocked}: Is a directory (EISDIR)"
    )
