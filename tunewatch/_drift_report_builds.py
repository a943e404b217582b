"""How many drift reports are built at once in a process.

A build costs evidently seconds of CPU and 14 MiB or more, in one of the worker threads
that token look-ups, ``/readyz`` and scoring share: eight built at once by one viewer's
token raised the daemon's peak memory by 110 MiB, and nothing limited builds asked for
through the API. So at most :data:`MAX_BUILDS_IN_PROGRESS` reports are built at once in a
process (:func:`build_slot`, taken only to build: a stored report is served without
one); a report that needs building beyond them is refused at once, without waiting, with
:class:`ReportBusyError`, which the API and the dashboard answer 429 ``report_busy`` with
``Retry-After``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tunewatch._errors import TunewatchError

logger = logging.getLogger(__name__)

#: Report builds in progress at once, per process: evidently's build is seconds of CPU
#: and 14 MiB or more apiece, in the worker threads scoring and the probes use too.
MAX_BUILDS_IN_PROGRESS = 2
#: Seconds a caller refused with :class:`ReportBusyError` is asked to wait: a build of a
#: typical window takes a few.
RETRY_AFTER_S = 5
BUSY_CODE = "report_busy"

_slots = threading.BoundedSemaphore(MAX_BUILDS_IN_PROGRESS)


class ReportBusyError(TunewatchError):
    """The report of drift evaluation ``evaluation_id`` of ``model`` is not built yet and
    :data:`MAX_BUILDS_IN_PROGRESS` reports are being built in this process already; the
    caller may retry after ``retry_after_s`` seconds (HTTP: 429 with ``Retry-After``)."""

    code = BUSY_CODE

    def __init__(self, model: str, evaluation_id: int) -> None:
        super().__init__(
            f"the report of drift evaluation {evaluation_id} is not built yet and "
            f"{MAX_BUILDS_IN_PROGRESS} reports are being built in this daemon already "
            f"(at most {MAX_BUILDS_IN_PROGRESS} at once); retry in {RETRY_AFTER_S} s"
        )
        self.model = model
        self.evaluation_id = evaluation_id
        self.retry_after_s = RETRY_AFTER_S


@contextmanager
def build_slot(model: str, evaluation_id: int) -> Iterator[None]:
    """Hold one of the process's :data:`MAX_BUILDS_IN_PROGRESS` build slots while
    ``model``'s report of drift evaluation ``evaluation_id`` is built, or raise
    :class:`ReportBusyError` at once when none is free (the caller's worker thread does
    not wait for one). The slot is freed however the build ends."""
    if not _slots.acquire(blocking=False):
        logger.info(
            "model=%s evaluation=%s: report build refused, %d builds in progress",
            model,
            evaluation_id,
            MAX_BUILDS_IN_PROGRESS,
        )
        raise ReportBusyError(model, evaluation_id)
    try:
        yield
    finally:
        _slots.release()
