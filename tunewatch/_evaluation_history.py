"""A model's verdicts of one kind in the order they were stored: what the policies decide on.

"The newest verdict" is the one stored last, and a policy's streak runs back from it in
the order the runs stored theirs (the evaluations' ids). Not by ``window_end``: that is
the evaluating host's clock, and after it stepped back (NTP correcting a clock that ran
an hour fast, a failover to a leader whose clock is behind) every new verdict sorted
below the ones stored before the step. For as long as the step the policies decided on
stale verdicts: a real drift raised no event and ``tunewatch_alarm`` stayed 0.

The rows are read with :meth:`tunewatch.store.Store.recent_evaluations`.
"""

from __future__ import annotations

from collections.abc import Iterator

from tunewatch.store import EvaluationRow, Store

_HISTORY_PAGE = 200  # evaluations read at a time past the first page


def stored_last(
    store: Store, name: str, kind: str, *, before_id: int | None = None, limit: int
) -> list[EvaluationRow]:
    """``name``'s evaluations of ``kind``, ``limit`` at most, the one stored last first;
    with ``before_id``, only those stored before that evaluation."""
    return store.recent_evaluations(name, kind=kind, before_id=before_id, limit=limit)


def latest(store: Store, name: str, kind: str) -> EvaluationRow | None:
    """``name``'s evaluation of ``kind`` stored last, ``None`` before its first."""
    rows = stored_last(store, name, kind, limit=1)
    return rows[0] if rows else None


def verdicts(
    store: Store, name: str, kind: str, version: int | None, *, first: int, most: int
) -> Iterator[EvaluationRow]:
    """The champion's evaluations of ``kind``, ``most`` at most, the one stored last first,
    read from the store a page at a time as the policy reads on (``first`` rows, then
    more): a streak of windows sharing no request may lie behind many runs that re-read
    them. It ends at another version's: no streak carries over a promotion or a
    rollback."""
    read = 0
    before: int | None = None
    limit = min(first, most)
    while limit > 0:
        page = stored_last(store, name, kind, before_id=before, limit=limit)
        for row in page:
            if row.version != version:
                return
            yield row
        read += len(page)
        if len(page) < limit:
            return
        before = page[-1].id
        limit = min(_HISTORY_PAGE, most - read)
