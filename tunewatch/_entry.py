"""The ``tunewatch`` command's entry point, the console script's and ``python -m
tunewatch``'s: Ctrl-C while the command line is still being imported ends the command
as Ctrl-C during it does, with :data:`INTERRUPTED` and exit 130.

Start-up imports for 2-3 s (pydantic, SQLAlchemy, alembic, the command modules) before
:func:`tunewatch._cli.main`, whose ``except KeyboardInterrupt`` covers the command, runs:
Ctrl-C in those seconds printed a traceback through the importing modules and died by the
signal, or, landing in a C extension's initialisation, printed ``ImportError:
initialization failed`` and exited 1. This module imports only the standard library, and
the command line inside its guard (the package's own front is lazy, :mod:`tunewatch`).

It is also where the process ends: the command's heap is frozen
(:func:`gc.freeze`) for the interpreter's shutdown, which then collected every object
scikit-learn, Optuna, onnxruntime and pandas had made, 0.6 s of CPU after the command was
done (0.07 s frozen). A tuning worker at ``tuning.worker_nice`` 19 on a busy host spent
minutes so after it had stopped. Nothing is lost: ``atexit`` handlers, the joins of
threads still running and the modules' teardown run as before, only the cyclic garbage
left at exit is not looked for.
"""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Callable
from types import FrameType

#: The line a command Ctrl-C ended prints on stderr.
INTERRUPTED = "tunewatch: interrupted"

#: Its exit status: 128 + SIGINT, as a shell reports a command Ctrl-C ended.
INTERRUPTED_STATUS = 130


def main() -> int:
    """Import and run the command line (``sys.argv``); its exit status. The process's
    entry: it ends once this returns (or raises), its heap frozen for the exit."""
    try:
        try:
            run_command_line = _import_command_line()
        except KeyboardInterrupt:
            return interrupted()
        try:
            return run_command_line()
        except KeyboardInterrupt:
            return interrupted()
        except ImportError as exc:  # a command's own late import
            if not caused_by_interrupt(exc):
                raise  # a missing dependency: its traceback says which
            return interrupted()
    finally:
        gc.freeze()


def _import_command_line() -> Callable[[], int]:
    """:func:`tunewatch._cli.main`, imported; ``KeyboardInterrupt`` when Ctrl-C came
    while it was imported, whatever error the import then failed with.

    A C extension a Ctrl-C stops in its initialisation fails with an error of its own,
    not always chained to the ``KeyboardInterrupt`` (NumPy's: "PyCapsule_Import could not
    import module "datetime""): a handler notes the signal while the import runs, and
    Python's own is back before the command does (asyncio keeps its Ctrl-C handling to
    Python's default handler alone)."""
    signalled = False

    def note_the_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signalled
        signalled = True
        raise KeyboardInterrupt

    # SIGINT ignored (a background job of a non-interactive shell) stays ignored
    noting = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if noting:
        signal.signal(signal.SIGINT, note_the_signal)
    try:
        from tunewatch._cli import main as run_command_line
    except Exception as exc:  # classified: re-raised unless Ctrl-C caused it
        if signalled or caused_by_interrupt(exc):
            raise KeyboardInterrupt from exc
        raise
    finally:
        if noting:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    return run_command_line


def interrupted() -> int:
    """Print :data:`INTERRUPTED`; :data:`INTERRUPTED_STATUS`."""
    sys.stderr.write(f"{INTERRUPTED}\n")  # the command's own output (its only print)
    # CPython records a KeyboardInterrupt that left code run from source text (exec of a
    # string: dataclasses and namedtuples make their methods so, many times in start-up)
    # as unhandled though it was caught, and `python -m` then ended the process by SIGINT
    # after this line (exit -2, not 130). Running source text again clears the record
    # (CPython 3.11: run_eval_code_obj).
    exec("")
    return INTERRUPTED_STATUS


def caused_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a ``KeyboardInterrupt`` was being raised or
    handled: a C extension Ctrl-C interrupted in its initialisation fails with
    ``ImportError: initialization failed``, the interrupt as its context."""
    chain = [exc.__cause__, exc.__context__]
    seen: set[int] = set()
    while chain:
        link = chain.pop()
        if link is None or id(link) in seen:
            continue
        if isinstance(link, KeyboardInterrupt):
            return True
        seen.add(id(link))
        chain += [link.__cause__, link.__context__]
    return False
