"""A process target for the multi-process storage tests (a bare-name helper module, so
that a spawned process imports it): open each of ``urls`` together with the other
processes."""

from __future__ import annotations

from typing import Any


def open_together(urls: list[str], barrier: Any, failures: Any) -> None:
    """Open each new RDB storage of ``urls`` the moment every process is ready to, and
    put each failure on ``failures``."""
    from retune._optuna import make_storage

    for url in urls:
        barrier.wait()
        try:
            make_storage(url, heartbeat_interval=10)
        except BaseException as exc:  # reported to the test
            failures.put(f"{url}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    failures.put(None)
