"""A daemon that cannot write its workers' configuration (``data_dir`` full) refuses to
start with a message naming the file and what it is for.

It exited ``tunewatch: error: [Errno 28] No space left on device``, naming no file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.tunewatch.tmpfs import filled, mounted_tmpfs


def test_serve_on_a_full_data_dir_names_the_worker_config_it_cannot_write(tmp_path: Path) -> None:
    config = tmp_path / "tunewatch.yaml"
    with mounted_tmpfs(tmp_path / "data", "size=4k") as data_dir:
        # the store elsewhere: the daemon gets as far as its workers' configuration
        store = f"sqlite:///{tmp_path / 'tunewatch.db'}"
        config.write_text(yaml.safe_dump({"data_dir": str(data_dir), "store": {"url": store}}))
        filled(data_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEWATCH_")}
        ran = subprocess.run(
            [sys.executable, "-m", "tunewatch._cli", "--config", str(config), "serve"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        # no workers' configuration left, whole or partial
        assert [p.name for p in data_dir.iterdir() if "worker-config" in p.name] == []
    assert ran.returncode == 2, ran.stderr
    error = ran.stderr.strip().splitlines()[-1]
    # the daemon's own: its pid, and a random part
    worker_config = re.escape(f"{data_dir.resolve()}/worker-config.")
    assert re.match(rf"tunewatch: error: cannot write {worker_config}\d+\.[0-9a-f]+\.yaml, ", error)
    assert "the configuration the tuning worker processes read" in error, error
    assert error.endswith("No space left on device (ENOSPC)"), error
