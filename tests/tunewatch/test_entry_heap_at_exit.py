"""A ``tunewatch`` process leaves its heap to the operating system when its command ends,
instead of collecting it object by object as the interpreter shuts down.

With scikit-learn, Optuna, onnxruntime and pandas imported, that last collection took
0.6 s of CPU after the command had finished (0.07 s with the heap frozen). A tuning worker
runs at ``tuning.worker_nice`` 19: on a busy host it gets about 1.5 % of a core, and a
worker that had stopped and queued its job again as its daemon died went on collecting
for over two minutes, its exit (and a daemon's wait for its workers at shutdown) held up
by it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tunewatch._launcher_worker import worker_command, worker_environment

#: Registered before the command runs, so it runs last at exit: whether the heap the
#: command left was frozen (moved out of the collector's reach) by then.
_REPORT_AT_EXIT = (
    "import atexit, gc, sys\n"
    "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0, file=sys.stderr))\n"
)


def _run_module(module: str) -> str:
    """``python -m module`` with :data:`_REPORT_AT_EXIT` registered first."""
    run = f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    return f"{_REPORT_AT_EXIT}import runpy\n{run}\n"


def _console_script() -> str:
    return f"{_REPORT_AT_EXIT}from tunewatch._entry import main\nsys.exit(main())\n"


def _launched_worker_module() -> str:
    """The module a daemon's launcher runs its workers as (``-m`` in its command)."""
    command = worker_command(Path("worker.yaml"))
    return command[command.index("-m") + 1]


@pytest.mark.parametrize(
    "program",
    [
        pytest.param(_console_script(), id="console_script"),
        pytest.param(_run_module("tunewatch"), id="python_m_tunewatch"),
        pytest.param(_run_module(_launched_worker_module()), id="launched_worker"),
    ],
)
def test_a_command_ends_with_its_heap_frozen_for_the_exit(tmp_path: Path, program: str) -> None:
    config = tmp_path / "missing.yaml"
    ran = subprocess.run(
        [sys.executable, "-P", "-c", program, "--config", str(config), "worker", "--job", "1"],
        cwd=tmp_path,
        env=worker_environment(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    # the command ran, and failed as it does: its configuration file is missing
    assert ran.returncode == 2, ran.stderr
    assert f"cannot read configuration file {config}" in ran.stderr
    assert ran.stderr.strip().splitlines()[-1] == "frozen True", ran.stderr
