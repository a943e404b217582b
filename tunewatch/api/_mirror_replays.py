"""Mirror records whose id is already recorded: a ``duplicate`` when the stored record
is the same mirror record (:func:`is_replay`), a ``conflict`` otherwise (a serving stack
whose id counter restarted had its new traffic dropped as replays)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tunewatch.api._mirror_body import MirrorRecord
from tunewatch.store import OutputRecord, RequestRecord, Store


def conflicts(store: Store, records: Sequence[MirrorRecord]) -> set[str]:
    """The ids among ``records``, each already recorded, whose stored record is not the
    same mirror record (see :func:`is_replay`). The stored records are read in chunks
    of ids, a model at a time: a re-sent batch of thousands of records is a few reads."""
    by_model: dict[str, list[MirrorRecord]] = {}
    for r in records:
        by_model.setdefault(r.request.model, []).append(r)
    found: set[str] = set()
    for model, batch in by_model.items():
        stored = store.get_external_records(model, [r.request.request_id for r in batch])
        found.update(
            r.request.request_id
            for r in batch
            if not is_replay(r, stored.get(r.request.request_id))
        )
    return found


def is_replay(
    record: MirrorRecord, stored: tuple[RequestRecord, list[OutputRecord]] | None
) -> bool:
    """Whether ``stored`` (the stored request of ``record``'s id with its ``external``
    outputs) is this mirror record: a mirror record (not a request scored here) of the
    same inputs with the same outputs, compared as stored (float32; ``-0.0`` equals
    ``0.0``), answered by the same version when ``record`` named one. A record naming
    none took the champion of its time, which a promotion since may have changed; nor is
    its ``scored_at`` compared."""
    if stored is None:
        return False
    request, output, named_version = record
    stored_request, answers = stored
    if (
        stored_request.source != "mirror"
        or not same_matrix(stored_request, request, "inputs")
        or len(answers) != 1
    ):
        return False
    (answer,) = answers
    if named_version and answer.version != output.version:
        return False
    return same_matrix(answer, output, "values")


def same_matrix(stored: Any, new: Any, field: str) -> bool:
    """Whether two float32 matrices recorded in ``field`` hold the same numbers."""
    if (stored.n_rows, stored.n_cols) != (new.n_rows, new.n_cols):
        return False
    return bool(
        np.array_equal(
            np.frombuffer(getattr(stored, field), np.float32),
            np.frombuffer(getattr(new, field), np.float32),
            equal_nan=True,
        )
    )
