"""What travels between the event loops and the recorder's writer thread
(:mod:`tunewatch._recorder`): a record waiting with its future, one event-loop
iteration's batch, the stop marker, and the futures resolved on their own loops."""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Sequence
from dataclasses import dataclass

from tunewatch._errors import StoreError
from tunewatch.store import OutputRecord, RequestRecord, RunTally

logger = logging.getLogger(__name__)

#: What a request or output record takes besides its inputs or values: its dataclass,
#: strings, timestamp, future and queue entry (about 780 bytes a request with one output).
RECORD_OVERHEAD_BYTES = 512


@dataclass(slots=True)
class Pending:
    request: RequestRecord | None
    outputs: Sequence[OutputRecord]
    future: asyncio.Future[bool] | None
    loop: asyncio.AbstractEventLoop | None
    nbytes: int  # its share of the bound; 0 once given back (written or failed)
    tallies: Sequence[RunTally] = ()  # runs counted apart from outputs, failed ones too


@dataclass(slots=True)
class Batch:
    """Records of one event-loop iteration, not yet handed to the writer."""

    records: list[Pending]
    nbytes: int = 0


STOP = object()


def record_size(request: RequestRecord | None, outputs: Sequence[OutputRecord]) -> int:
    """What a record takes of the bound: its inputs and values, and its objects."""
    nbytes = RECORD_OVERHEAD_BYTES * len(outputs) + sum(len(o.values) for o in outputs)
    if request is not None:
        nbytes += RECORD_OVERHEAD_BYTES + len(request.inputs)
    return nbytes


def drain(
    handed: queue.SimpleQueue[list[Pending] | object],
) -> tuple[list[Pending], bool]:
    """Everything handed over so far, and whether the stop marker was among it."""
    records: list[Pending] = []
    stopping = False
    while True:
        try:
            item = handed.get_nowait()
        except queue.Empty:
            return records, stopping
        if item is STOP:
            stopping = True
        else:
            assert isinstance(item, list)
            records.extend(item)


def fail_futures(group: list[Pending], error: StoreError) -> None:
    """Fail the futures of records no writer will commit, one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool], bool]]] = {}
    for p in group:
        if p.future is not None and p.loop is not None:
            by_loop.setdefault(p.loop, []).append((p.future, False))
    notify(by_loop, error)


def notify(
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool], bool]]],
    error: Exception | None,
) -> None:
    for loop, pairs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, pairs, error)
        except RuntimeError:  # the loop closed while we committed; nobody is waiting
            logger.warning("event loop closed before %d records were acknowledged", len(pairs))


def _resolve(pairs: list[tuple[asyncio.Future[bool], bool]], error: Exception | None) -> None:
    for future, ok in pairs:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(ok)
