"""``EvaluationFront``: the store's leases, evaluations and the log read as arrays.

The part of :class:`~._store.Store` the evaluation loop uses: leases and stored
evaluations (``_evaluations``), and windows of the scoring log and recorded latencies
read for it (``_windows``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from . import _evaluations, _windows
from ._evaluations import EvaluationRow, NewEvaluation
from ._front_base import StoreFront
from ._windows import Window


class EvaluationFront(StoreFront):
    """Leases and evaluations (``_evaluations``); windows and latencies (``_windows``)."""

    def acquire_lease(self, name: str, holder: str, *, ttl_s: float) -> bool:
        """Take or renew the lease ``name``; False while another holder's is unexpired."""
        with self._tx("acquire_lease") as conn:
            return _evaluations.acquire_lease(conn, name, holder, ttl_s)

    def renew_lease(self, name: str, holder: str, *, ttl_s: float) -> bool:
        """Extend the lease ``name`` while ``holder`` still holds it unexpired; False when
        it lapsed, was released or another took it (nothing changes): not taken again."""
        with self._tx("renew_lease") as conn:
            return _evaluations.renew_lease(conn, name, holder, ttl_s)

    def lease_holder(self, name: str) -> str | None:
        """Who holds the lease ``name`` as the store says (expired or not), or ``None``."""
        with self._read("lease_holder") as conn:
            return _evaluations.lease_holder(conn, name)

    def release_lease(self, name: str, holder: str) -> None:
        with self._tx("release_lease") as conn:
            _evaluations.release_lease(conn, name, holder)

    def add_evaluation(
        self,
        *,
        model: str,
        version: int | None,
        kind: str,
        status: str,
        window_start: datetime | None,
        window_end: datetime,
        payload: Mapping[str, Any],
    ) -> EvaluationRow:
        with self._tx("add_evaluation") as conn:
            return _evaluations.add_evaluation(
                conn,
                model=model,
                version=version,
                kind=kind,
                status=status,
                window_start=window_start,
                window_end=window_end,
                payload=payload,
            )

    def add_evaluations(self, new: Sequence[NewEvaluation]) -> list[EvaluationRow]:
        """Store ``new`` in one transaction (see :func:`._evaluations.add_evaluations`)."""
        with self._tx("add_evaluations") as conn:
            return _evaluations.add_evaluations(conn, new)

    def record_policy_decisions(self, decisions: Mapping[int, Mapping[str, Any]]) -> None:
        """Store what each policy decided on its kind's evaluation, keyed by evaluation id
        (see :func:`._evaluations.record_policy_decisions`)."""
        with self._tx("record_policy_decisions") as conn:
            _evaluations.record_policy_decisions(conn, decisions)

    def list_evaluations(
        self,
        model: str,
        *,
        kind: str | None = None,
        version: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_id: int | None = None,
        limit: int = 1000,
    ) -> list[EvaluationRow]:
        """Newest first; ``since`` and ``until`` bound ``window_end``, both inclusive;
        ``version`` means, per kind, what :func:`._evaluations.list_evaluations` says (a
        telemetry row is of every version it measured); ``before_id``: only the rows
        listed after that evaluation of ``model`` (``NotFoundError`` if it is none)."""
        with self._read("list_evaluations") as conn:
            return _evaluations.list_evaluations(
                conn,
                model=model,
                kind=kind,
                version=version,
                since=since,
                until=until,
                before_id=before_id,
                limit=limit,
            )

    def recent_evaluations(
        self, model: str, *, kind: str, before_id: int | None = None, limit: int
    ) -> list[EvaluationRow]:
        """``model``'s evaluations of ``kind``, the one stored last first (append order,
        not ``window_end``: see :func:`._evaluations.recent_evaluations`); ``before_id``:
        only those stored before that evaluation."""
        with self._read("recent_evaluations") as conn:
            return _evaluations.recent_evaluations(
                conn, model=model, kind=kind, before_id=before_id, limit=limit
            )

    def get_evaluation(self, model: str, evaluation_id: int) -> EvaluationRow:
        with self._read("get_evaluation") as conn:
            return _evaluations.get_evaluation(conn, model=model, evaluation_id=evaluation_id)

    def window(
        self,
        model: str,
        *,
        n_features: int,
        start: datetime | None = None,
        end: datetime | None = None,
        last_n: int | None = None,
        with_features: bool = True,
        with_ids: bool = True,
        sample: int = 1,
    ) -> Window:
        """The model's log as arrays (features, production outputs, labels) per row;
        without ``with_features`` the input blobs are not read (``features`` is empty),
        without ``with_ids`` the request ids are not (``request_ids`` is empty); with
        ``sample`` (a power of two) 1 in that many requests, chosen by a hash of their id
        (the same every read). The rows are read in chunks: the read holds the arrays and
        one chunk of rows."""
        with self._read("window") as conn:
            return _windows.read_window(
                conn,
                model,
                n_features=n_features,
                start=start,
                end=end,
                last_n=last_n,
                with_features=with_features,
                with_ids=with_ids,
                sample=sample,
            )

    def latencies(
        self,
        model: str,
        *,
        since: datetime | None = None,
        versions: Sequence[int] | None = None,
        newest: int | None = None,
        aligned_to: int | None = None,
        roles: Mapping[int, str] | None = None,
    ) -> dict[int, np.ndarray]:
        """Recorded single-request latencies (seconds) per version since ``since``; of
        ``versions`` only when given, and with ``newest`` only that many per version, the
        newest (a bounded read; ``newest`` needs ``versions``). With ``aligned_to`` (one
        of ``versions``) the others' are read over the period of its newest instead,
        weighted alike in time and at most as many. With ``roles`` a version it names is
        read in that role only (``{1: "champion"}``)."""
        with self._read("latencies") as conn:
            return _windows.read_latencies(
                conn,
                model,
                since=since,
                versions=versions,
                newest=newest,
                aligned_to=aligned_to,
                roles=roles,
            )
