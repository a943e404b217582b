"""A store the command cannot reach is one line on stderr and exit 2, as any error: it
was four, the store's warning and then the error line, each holding psycopg's message
over two lines (its newline and a tab before "Is the server running …")."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunewatch._cli import failure_line
from tunewatch._errors import ConfigError, StoreUnavailableError


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A PostgreSQL URL on a loopback port bound but not listening: a connection to it is
    refused at once (nobody else can listen there while it is bound)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/tunewatch"


def _tunewatch(url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEWATCH_")}
    env["TUNEWATCH_STORE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "tunewatch", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unreachable_store_is_one_error_line_and_exit_2(
    refusing_url: str, tmp_path: Path
) -> None:
    done = _tunewatch(refusing_url, tmp_path, "models")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tunewatch: error: store open: database unavailable: ")
    assert lines[0].endswith(
        " Is the server running on that host and accepting TCP/IP connections?"
    )
    assert done.stdout == ""


def test_the_daemon_still_logs_the_store_s_warning(refusing_url: str, tmp_path: Path) -> None:
    """`serve` logs the store's outages (a request answered 503 says no more than
    "database unavailable"): its start-up failure is logged as well as printed."""
    done = _tunewatch(refusing_url, tmp_path, "serve")
    assert done.returncode == 2
    assert "WARNING tunewatch.store._engine: store migrate: database unavailable" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("tunewatch: error: store migrate: ")


def test_an_error_over_several_lines_is_printed_on_one() -> None:
    error = StoreUnavailableError(
        'store open: database unavailable: connection to server at "db" failed: timeout\n'
        "\tIs the server running on that host and accepting TCP/IP connections?\r\n"
    )
    assert failure_line(error) == (
        'tunewatch: error: store open: database unavailable: connection to server at "db" '
        "failed: timeout; Is the server running on that host and accepting TCP/IP connections?"
    )


def test_a_configuration_s_errors_stay_apart_on_one_line() -> None:
    error = ConfigError(
        "invalid configuration in tunewatch.yaml:\n  models.0.name: Field required\n"
        "  store.url: not a database URL, got 'x'."
    )
    assert failure_line(error) == (
        "tunewatch: error: invalid configuration in tunewatch.yaml: models.0.name: Field "
        "required; store.url: not a database URL, got 'x'."
    )


def test_spaces_inside_a_line_of_an_error_are_kept() -> None:
    """A value quoted in a message keeps its spaces: the line breaks alone are joined."""
    assert failure_line(StoreUnavailableError("model 'a  b' missing")) == (
        "tunewatch: error: model 'a  b' missing"
    )
