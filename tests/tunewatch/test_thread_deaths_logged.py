"""A thread the daemon runs that dies of an exception is logged, with its traceback, in the
daemon's log format: Python's default hook wrote "Exception in thread …" to raw stderr,
outside the lines an operator greps and ships."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from tunewatch._thread_deaths import log_thread_deaths


@pytest.fixture
def installed() -> Iterator[list[threading.ExceptHookArgs]]:
    """The hook installed over a recording one (pytest's own, in a run, is chained the
    same way), restored after."""
    before = threading.excepthook
    chained: list[threading.ExceptHookArgs] = []
    threading.excepthook = chained.append
    try:
        log_thread_deaths()
        yield chained
    finally:
        threading.excepthook = before


def _die() -> None:
    raise RuntimeError("the loop broke")


def test_a_thread_s_death_is_logged_critical_with_its_name_and_traceback(
    installed: list[threading.ExceptHookArgs], caplog: pytest.LogCaptureFixture
) -> None:
    thread = threading.Thread(target=_die, name="tunewatch-example")
    with caplog.at_level(logging.CRITICAL, logger="tunewatch._thread_deaths"):
        thread.start()
        thread.join()
    [record] = [r for r in caplog.records if r.name == "tunewatch._thread_deaths"]
    assert record.levelno == logging.CRITICAL
    assert "tunewatch-example" in record.getMessage() and "RuntimeError" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    # the hook before it (pytest's, in a test run) still sees it
    assert [type(a.exc_value) for a in installed] == [RuntimeError]


def test_installing_twice_logs_once(
    installed: list[threading.ExceptHookArgs], caplog: pytest.LogCaptureFixture
) -> None:
    log_thread_deaths()  # main runs in-process in tests: once per command
    thread = threading.Thread(target=_die, name="tunewatch-twice")
    with caplog.at_level(logging.CRITICAL, logger="tunewatch._thread_deaths"):
        thread.start()
        thread.join()
    assert len([r for r in caplog.records if r.name == "tunewatch._thread_deaths"]) == 1
    assert len(installed) == 1
