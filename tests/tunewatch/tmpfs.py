"""A real full or read-only filesystem for a test: a tmpfs mounted over a directory.

Mounting needs root (``CAP_SYS_ADMIN``): without it a test using :func:`mounted_tmpfs`
is skipped with the reason, and failed under ``CI=true`` (the CI runs as root), as a
missing service is.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import service_missing


@contextlib.contextmanager
def mounted_tmpfs(at: Path, *options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``at`` (created if missing) with ``options`` — ``ro`` for a
    read-only one, ``size=4k`` for one full past a page — until the block ends."""
    at.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        service_missing("mounting a tmpfs (a real full or read-only directory) needs root")
    mount = ["mount", "-t", "tmpfs", "-o", ",".join(options or ("defaults",))]
    ran = subprocess.run([*mount, "tunewatch-test", str(at)], capture_output=True, text=True)
    if ran.returncode != 0:
        service_missing(f"cannot mount a tmpfs at {at}: {ran.stderr.strip()}")
    try:
        yield at
    finally:  # lazily: a file the code under test left open does not keep it mounted
        subprocess.run(["umount", "--lazy", str(at)], check=True)


def filled(root: Path) -> Path:
    """``root``, its filesystem filled to the last byte (a file ``filler`` takes it)."""
    with (root / "filler").open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass  # full: what the filler is for
    return root
