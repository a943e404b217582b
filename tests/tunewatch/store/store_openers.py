"""A process target for the multi-process migration test (a bare-name helper module, so
that a spawned process imports it): open one new store together with the other
processes."""

from __future__ import annotations

from typing import Any


def open_together(url: str, barrier: Any, outcomes: Any) -> None:
    """Open the store at ``url`` the moment every process is ready to, and put ``None``
    or the failure on ``outcomes``."""
    from tunewatch.store import Store

    barrier.wait()
    try:
        Store.open(url).close()
    except BaseException as exc:  # reported to the test
        outcomes.put(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    else:
        outcomes.put(None)
