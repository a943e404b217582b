"""Why a drift report cannot be built: every request its verdict judged was deleted since,
by retention (:class:`WindowPurgedError`, answered 410 ``window_purged``)."""

from __future__ import annotations

from datetime import UTC, datetime

from tunewatch._drift_report_rows import JUDGED_ROWS
from tunewatch._errors import TunewatchError
from tunewatch.store import EvaluationRow, Store

#: The store's audit action of a retention run (``store.purge_records``); its details
#: hold its cut-off, ``before``. The newest :data:`_PURGES_READ` are looked through.
_PURGE_ACTION, _PURGES_READ = "purge_records", 100


class WindowPurgedError(TunewatchError, LookupError):
    """Every request drift evaluation ``evaluation_id`` of ``model`` judged (``n_rows``
    rows) was deleted since: its report cannot test them. ``purged_before``: the cut-off
    of the retention run that deleted them, ``None`` when no run the audit log holds
    did. Answered 410 ``window_purged``, before the report's baseline is read."""

    code = "window_purged"

    def __init__(
        self,
        message: str,
        *,
        model: str,
        evaluation_id: int,
        n_rows: int | None,
        purged_before: datetime | None,
    ) -> None:
        super().__init__(message)
        self.model, self.evaluation_id, self.n_rows = model, evaluation_id, n_rows
        self.purged_before = purged_before

    @classmethod
    def of(cls, store: Store, target: EvaluationRow) -> WindowPurgedError:
        """The error of drift verdict ``target``, naming the retention run that deleted its
        requests: the earliest of the newest few whose cut-off is past the newest one."""
        assert target.window_start is not None
        judged = target.payload.get(JUDGED_ROWS)  # else stored before it recorded them
        first, last = (
            (judged["first"][0], judged["last"][0])
            if judged is not None
            else (target.window_start.isoformat(), target.window_end.isoformat())
        )
        purge, cut_off, newest = None, None, datetime.fromisoformat(last)
        for entry in store.audit_log(_PURGES_READ, action=_PURGE_ACTION, target="records"):
            before = entry.details.get("before")  # newest first: the last found is earliest
            at = datetime.fromisoformat(before) if isinstance(before, str) else None
            if at is not None and at.replace(tzinfo=at.tzinfo or UTC) > newest:
                purge, cut_off = entry, at
        n_rows = target.payload.get("n_current")
        judged_text = (
            f"the requests drift evaluation {target.id} judged ("
            + ("" if n_rows is None else f"{n_rows} rows, ")
            + f"received from {first} to {last})"
        )
        if purge is None or cut_off is None:
            why = "were deleted since (by no retention run of those the audit log keeps)"
        else:
            why = (
                f"were deleted by retention since: its run of {purge.at.isoformat()} "
                f"deleted the records received before {cut_off.isoformat()}"
            )
        return cls(
            f"the report of drift evaluation {target.id} cannot be built: {judged_text} {why}",
            model=target.model,
            evaluation_id=target.id,
            n_rows=n_rows,
            purged_before=cut_off,
        )
