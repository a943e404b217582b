"""A command run as a user other than the data directory's owner warns that what it writes
there is that user's: `sudo tunewatch register … --stage champion`, `tokens create` and
`report` left artefacts/ and reports/ owned by root, and the daemon, running as the
directory's owner, then answered 503 model_not_ready to every inference, with nothing
said when the command ran."""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path

import pytest

from tunewatch._cli import main

OTHER = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chowns the data dir: needs root")


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _tokens_create(tmp_path: Path, data_dir: Path) -> int:
    config = tmp_path / "tunewatch.yaml"
    config.write_text(f"data_dir: {data_dir}\n", encoding="utf-8")
    argv = ["--config", str(config), "--actor", "ops", "tokens", "create", "bob"]
    return main([*argv, "--role", "viewer"])


def _owner_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tunewatch._open_store" and r.levelno == logging.WARNING
    ]


def test_a_writing_command_run_as_another_user_names_both_users(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.chown(data_dir, OTHER, OTHER)
    with caplog.at_level(logging.WARNING):
        assert _tokens_create(tmp_path, data_dir) == 0
    [warning] = _owner_warnings(caplog)
    assert f"data_dir {data_dir} is owned by {_name(OTHER)}" in warning
    assert f"this command runs as {_name(0)}" in warning
    assert f"owned by {_name(0)}" in warning.split("runs as", 1)[1]
    assert "\n" not in warning


def test_a_command_run_as_the_data_dirs_owner_does_not_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with caplog.at_level(logging.WARNING):
        assert _tokens_create(tmp_path, data_dir) == 0
    assert _owner_warnings(caplog) == []


def test_a_data_dir_not_made_yet_does_not_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The command makes it, as its own user."""
    with caplog.at_level(logging.WARNING):
        assert _tokens_create(tmp_path, tmp_path / "new") == 0
    assert _owner_warnings(caplog) == []
