"""Ctrl-C while ``tunewatch`` is still starting ends it as Ctrl-C during a command does:
``tunewatch: interrupted`` and exit 130. Start-up imports for 2-3 s before the command
line's ``main`` (and its ``except KeyboardInterrupt``) runs; Ctrl-C in those seconds
printed a traceback through runpy, ``tunewatch/__init__.py`` and pydantic or alembic
and died by the signal, or, landing in a C extension's initialisation, said
``ImportError: initialization failed`` and exited 1."""

from __future__ import annotations

import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tunewatch._entry import caused_by_interrupt

ROOT = Path(__file__).resolve().parents[2]


def _console_script() -> list[str]:
    """What the installed ``tunewatch`` script runs (pyproject's entry point), as
    ``python -c`` arguments: a reinstall is not needed to test the entry point."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    module, function = pyproject["project"]["scripts"]["tunewatch"].split(":")
    return ["-c", f"import sys; from {module} import {function}; sys.exit({function}())"]


LAUNCHES = {"python -m tunewatch": ["-m", "tunewatch"], "console script": _console_script()}

#: Libraries start-up imports, each with more than a second of importing after it (the
#: command modules, alembic): a signal sent once one is imported lands in start-up.
IMPORTED_AT_START = ["pydantic", "sqlalchemy"]


def _default_sigint() -> None:
    # A background job of a non-interactive shell starts with SIGINT ignored; a
    # terminal's Ctrl-C reaches a process that handles it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _imported(line: str) -> str | None:
    """The module a ``-X importtime`` line reports imported (``None``: another line)."""
    if not line.startswith("import time:"):
        return None
    return line.rsplit("|", 1)[-1].strip()


@pytest.mark.parametrize("launch", LAUNCHES.values(), ids=LAUNCHES.keys())
@pytest.mark.parametrize("library", IMPORTED_AT_START)
def test_ctrl_c_during_start_up_is_one_line_and_exit_130(
    launch: list[str], library: str, tmp_path: Path
) -> None:
    # -X importtime reports each module on stderr as it is imported: the signal is sent
    # on the process's own progress (the library imported, start-up not done), not a timer
    with subprocess.Popen(
        [sys.executable, "-X", "importtime", *launch, "--help"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    ) as child:
        try:
            assert child.stderr is not None and child.stdout is not None
            other: list[str] = []
            for line in child.stderr:
                if _imported(line) == library:
                    break
                if _imported(line) is None:
                    other.append(line)
            else:
                pytest.fail(f"start-up never imported {library}: {''.join(other)}")
            assert child.poll() is None, "the command ended before the signal"
            child.send_signal(signal.SIGINT)
            other += [line for line in child.stderr if _imported(line) is None]
            out = child.stdout.read()
            child.wait(timeout=120)
        finally:
            child.kill()
    assert "usage: tunewatch" not in out, "the command finished before the signal landed"
    assert "".join(other) == "tunewatch: interrupted\n"
    assert child.returncode == 130
    assert out == ""


def test_an_import_a_ctrl_c_broke_counts_as_the_interrupt() -> None:
    """Ctrl-C inside a C extension's initialisation surfaces as ``ImportError:
    initialization failed`` with the ``KeyboardInterrupt`` as its context."""
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None
    except ImportError as exc:
        suppressed = exc  # `from None` hides it from the traceback, not from __context__
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise ImportError("initialization failed") from interrupt
    except ImportError as exc:
        caused = exc
    assert caused_by_interrupt(suppressed)
    assert caused_by_interrupt(caused)
    assert not caused_by_interrupt(ImportError("No module named 'onnxruntime'"))


def test_an_interrupt_caught_after_it_left_generated_code_still_exits_130(
    tmp_path: Path,
) -> None:
    """Dataclasses and namedtuples make their methods by exec of source text, often in
    start-up: a Ctrl-C that landed there was caught and printed, and ``python -m`` then
    ended the process by SIGINT all the same (CPython recorded it as unhandled)."""
    (tmp_path / "interrupted_in_generated_code.py").write_text(
        "import sys\n"
        "from tunewatch._entry import interrupted\n"
        "try:\n"
        "    exec('raise KeyboardInterrupt')\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(interrupted())\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "interrupted_in_generated_code"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stderr) == (130, "tunewatch: interrupted\n")
