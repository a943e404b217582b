"""``ScoringLogFront``: the store's scoring log and its live-split checks.

The part of :class:`~._store.Store` over the requests, outputs and labels the service
logs: the recorder's batched writes (``_records``, on the log's own engine), run
tallies (``_run_tallies``), the retention purge (``_retention``) and the sample-ratio
checks of a live split (``_split_checks``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Connection

from . import _jobs, _records, _run_tallies
from ._engine import sqlite_write, transaction
from ._front_base import StoreFront
from ._retention import PurgeCounts, purge_and_audit, sqlite_pause
from ._split_checks import SplitWindow, latest_split_window, new_settings_since
from ._types import (
    LabelItem,
    LabelRow,
    LabelStatus,
    OutputRecord,
    RequestRecord,
    Role,
    RunTally,
)


class ScoringLogFront(StoreFront):
    """Requests, outputs, labels and run tallies; the purge; live-split checks."""

    def write_records(
        self,
        requests: Sequence[RequestRecord],
        outputs: Sequence[OutputRecord],
        shadow_outputs: Sequence[OutputRecord] = (),
        tallies: Sequence[RunTally] = (),
    ) -> list[bool]:
        """Write a batch in one transaction; per request, True if it was new.

        ``outputs`` of a request of this batch whose id was already stored are not
        written (they belong to the replay, not to the stored request); outputs of
        requests not in this batch are. An id twice in ``requests`` is stored once, the
        first copy (the others are False); ``outputs`` are not told apart by copy, so pass
        only the first copy's (the recorder does). ``shadow_outputs`` are results for requests
        recorded earlier (challengers scoring in shadow): always written, whatever
        requests ride in the same batch; one already stored is ignored. ``tallies`` are
        added to the versions' run counts (:meth:`run_tally`).
        """
        if self.dialect == "sqlite":
            with sqlite_write(self._log_engine, "write_records") as cursor:
                return _records.write_records_sqlite(
                    cursor, requests, outputs, shadow_outputs, tallies
                )
        with transaction(self._log_engine, "write_records") as conn:
            return _records.write_records(conn, requests, outputs, shadow_outputs, tallies)

    def run_tally(self, model: str, version: int, role: Role) -> RunTally | None:
        """``version``'s runs in ``role`` counted so far, with their failures (shadow runs,
        counted by the recorder: ``role="challenger"``); ``None`` before the first."""
        with self._read("run_tally") as conn:
            return _run_tallies.get_tally(conn, model, version, role)

    def get_request(self, model: str, request_id: str) -> RequestRecord | None:
        with self._read("get_request") as conn:
            return _records.get_request(conn, model, request_id)

    def get_outputs(self, model: str, request_id: str) -> list[OutputRecord]:
        with self._read("get_outputs") as conn:
            return _records.get_outputs(conn, model, request_id)

    def get_external_records(
        self, model: str, request_ids: Sequence[str]
    ) -> dict[str, _records.ExternalRecord]:
        """The stored requests among ``request_ids`` by id, each with its outputs of role
        ``external``; in one read transaction, a few statements per 500 ids."""
        with self._read("get_external_records") as conn:
            return _records.get_external_records(conn, model, request_ids)

    def count_requests(
        self, model: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> int:
        """How many requests of ``model`` are stored; received in ``[start, end)`` when
        given."""
        with self._read("count_requests") as conn:
            return _records.count_requests(conn, model, start=start, end=end)

    def count_outputs(self, model: str, version: int | None = None) -> int:
        with self._read("count_outputs") as conn:
            return _records.count_outputs(conn, model, version)

    def request_ids(self, model: str) -> set[str]:
        with self._read("request_ids") as conn:
            return _records.request_ids(conn, model)

    def add_labels(self, model: str, items: Sequence[LabelItem]) -> list[LabelStatus]:
        """Insert the new labels of ``items``; each item's status against what is (now)
        stored (:class:`~tunewatch.store._records.LabelBatch`). Classified in a read
        transaction: the write lock is taken only to insert new labels (a replay of a
        10k-item batch held SQLite's for 250-300 ms, scoring's commits waiting), at most
        :data:`~tunewatch.store._records.LABELS_PER_TRANSACTION` a transaction (10k new
        labels in one held it ~150 ms). A batch that fails part-way keeps the labels of
        the transactions that committed: sent again, they are ``duplicate``."""
        with self._read("add_labels") as conn:
            batch = _records.classify_labels(conn, model, items)
        for ids in batch.insert_chunks():
            with self._tx("add_labels") as conn:
                _records.insert_labels(conn, model, batch, ids)
        return batch.statuses()

    def get_label(self, model: str, request_id: str) -> LabelRow | None:
        with self._read("get_label") as conn:
            return _records.get_label(conn, model, request_id)

    def purge_records(
        self,
        *,
        before: datetime,
        batch: int = 2000,
        actor: str = "scheduler",
        keep_job_windows: bool = False,
        stop: threading.Event | None = None,
        committed: Callable[[PurgeCounts], object] | None = None,
    ) -> PurgeCounts:
        """Delete the requests received before ``before`` with their labels and outputs,
        and outputs created before it whose request is gone, ``batch`` requests per
        transaction (see :mod:`._retention`); on SQLite it pauses after each one, so other
        writers take the lock. With ``keep_job_windows``, each batch's cut-off is capped,
        in its transaction, by the earliest training window start of a queued or running
        job. ``stop`` ends the run between batches; ``committed`` is told the running
        total after each batch commits. Audited once a run (``purge_records``, its cut-off
        and counts), and every few batches in the batch's transaction
        (``purge_records_progress``); a run that fails after deleting rows is audited with
        what it deleted and the error, and the error raised; one stopped, with what it
        deleted and ``outcome: stopped``."""
        return purge_and_audit(
            lambda: self._tx("purge_records"),
            lambda: self._read("purge_records"),
            before=before,
            batch=batch,
            actor=actor,
            keep_from=_held_window_start if keep_job_windows else None,
            pause=sqlite_pause if self.dialect == "sqlite" else None,
            stop=stop,
            committed=committed,
        )

    # -- live-split checks --------------------------------------------------------------

    def latest_split_window(self, model: str) -> SplitWindow | None:
        """The newest sample-ratio check of ``model``'s live split, whatever split it
        checked, with the count it judged (see :class:`SplitWindow`)."""
        with self._read("latest_split_window") as conn:
            return latest_split_window(conn, model)

    def new_split_settings_since(self, model: str, now: datetime) -> datetime:
        """Where the count of ``model``'s live split starts when a check first sees its
        new challenger, salt or share at ``now`` (see :func:`new_settings_since`)."""
        with self._read("new_split_settings_since") as conn:
            return new_settings_since(conn, model, now)


def _held_window_start(conn: Connection) -> datetime | None:
    """The earliest training window start of a queued or running job (the purge keeps
    its rows), read in the purge batch's transaction."""
    held = _jobs.earliest_window_start(conn)
    return None if held is None else held[1]
