"""`tunewatch serve` on a port another socket holds: one line and exit 2, before the store.

The daemon used to migrate the store, take the scheduler's lease and start its workers,
and only then fail to bind inside uvicorn: several lines of uvicorn's log and exit 3,
not the CLI's one-line error, with a store written for a daemon that never served.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml


def test_serve_on_a_port_in_use_is_one_error_line_and_exit_2_without_a_store(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data)}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEWATCH_")}
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tunewatch._cli",
                "--config",
                str(config),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"tunewatch: error: cannot listen on 127.0.0.1:{port}: "), lines
    assert not (data / "tunewatch.db").exists()
