"""``tunewatch backup``'s SIGTERM/SIGINT handler run again inside its own ``stop.set()``
(a second signal of a burst, or Ctrl-C pressed twice): it called ``set`` again, and waited
for the event's lock its own thread held, for ever: the backup neither stopped nor ended."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.tunewatch.signal_inside_set import signal_inside_set

#: A bound against the hang, not a duration: the child ends in well under a second.
HANG_S = 60

_CHILD = """
from tunewatch._commands._backup import _signals_stop
try:
    with _signals_stop() as stop:
        signal.raise_signal(signal.SIGTERM)
finally:
    print("stop set" if stop.is_set() else "stop not set", flush=True)
    print("second signal" if signalled else "no second signal", flush=True)
"""


def test_a_signal_inside_the_backup_s_own_stop_set_ends_it_as_the_first_signal() -> None:
    source = signal_inside_set("stopping", "SIGINT") + _CHILD
    try:
        done = subprocess.run(
            [sys.executable, "-c", source], capture_output=True, text=True, timeout=HANG_S
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the backup's signal handler waited on its stop event's own lock ({exc})")
    assert done.stdout.splitlines() == ["stop set", "second signal"], done.stderr
    assert done.returncode == 128 + signal.SIGTERM, done.stderr  # the first signal's exit
