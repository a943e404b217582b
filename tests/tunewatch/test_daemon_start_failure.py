"""A daemon whose start fails stops what it had started: no recorder, shadow or
refresh thread is left running behind the error (the app's lifespan does not call
``close`` after a failed start)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import StoreUnavailableError


def _tunewatch_threads() -> list[str]:
    return sorted(
        t.name for t in threading.enumerate() if t.name.startswith(("tunewatch", "shadow"))
    )


def test_a_scheduler_that_fails_to_start_leaves_no_thread_of_the_daemon_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = Daemon(build_config({"data_dir": str(tmp_path)}, env={}), env={})
    before = _tunewatch_threads()  # the store's own, which close() stops

    def refuse() -> None:
        raise StoreUnavailableError("the store went away while the leader started")

    monkeypatch.setattr(daemon.scheduler, "start", refuse)
    with pytest.raises(StoreUnavailableError):
        daemon.start()
    try:
        assert _tunewatch_threads() == before
    finally:
        daemon.close()
