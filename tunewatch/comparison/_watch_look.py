"""One look of an open rollback watch (see
:class:`~tunewatch.comparison._watch.RollbackWatch`): the new champion's next batch of
labelled requests fed to the watch's sequential test (paired: its loss minus the previous
champion's on each request; unpaired: its losses against the baseline's), the look
recorded, and the watch passed, kept open, or decided and rolled back. A watch that has
watched its requests passes without reading; one whose time (``watch_s``) is up reads
what it has not yet read of the requests received within it, with the labels known by
then, and passes once that last look decides nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np

from monitor.objectives import Objective
from shadow.stats import (
    PairedSequentialTest,
    TwoSampleLook,
    TwoSampleSequentialTest,
    UnitUpdate,
    paired_differences,
)
from tunewatch._errors import ConflictError
from tunewatch.comparison._config import ComparisonConfig
from tunewatch.comparison._results import (
    ComparisonResult,
    make_result,
    paired_values,
    stateless,
    watch_values,
)
from tunewatch.comparison._watch_release import close, release_kept
from tunewatch.store import Store
from tunewatch.store._comparisons import (
    ComparisonLookRow,
    ComparisonStore,
    ComparisonTestRow,
    read_start,
)

logger = logging.getLogger(__name__)

# A watch's state: its test's state and these keys (and its read's watermark).
_PAIRED_KEYS = ("promoted_at", "paired", "kept_in_shadow", "shadow_pending")
_UNPAIRED_KEYS = ("promoted_at", "baseline_n")
#: The name of a watch's read of the new champion's requests (its watermark's key).
_READ = "labelled"


def look(
    store: Store,
    comparisons: ComparisonStore,
    test: ComparisonTestRow,
    settings: ComparisonConfig,
    objective: Objective,
    *,
    promoted_at: datetime,
    clock: Callable[[], datetime],
    lineup_changed: Callable[[str], None],
    rollback: Callable[[ComparisonTestRow, ComparisonLookRow | None, int], ComparisonResult],
) -> ComparisonResult | None:
    """Look once at the open watch ``test`` of the promotion made at ``promoted_at``
    (its versions are the promotion's): a worse new champion is handed to ``rollback``
    with the look and the requests fed. ``None``: another run recorded a look first."""
    model, version, previous = test.model, test.challenger_version, test.champion_version
    rules, max_batch = settings.rollback, settings.max_batch
    paired = bool(test.state.get("paired"))
    state = test.state
    sequential: PairedSequentialTest | TwoSampleSequentialTest
    if paired:
        sequential = PairedSequentialTest.from_dict(_without(state, _PAIRED_KEYS))
        watched = sequential.n
    else:
        sequential = TwoSampleSequentialTest.from_dict(_without(state, _UNPAIRED_KEYS))
        history = sequential.history
        watched = history[-1].n_challenger if history else 0
    if watched >= rules.watch_requests:
        return _pass(store, comparisons, test, watched, lineup_changed=lineup_changed)
    # its time up, the watch reads the requests received within it (labels known now)
    until = None if rules.watch_s is None else promoted_at + timedelta(seconds=rules.watch_s)
    over = until is not None and clock() >= until
    matured = settings.matured_before(clock())
    limit = min(max_batch, rules.watch_requests - watched)
    batch = comparisons.read_labelled(
        model=model,
        answered_by=version,
        paired_with=previous if paired else None,
        received_from=promoted_at,
        received_before=until if over else None,
        unconsumed_by=test.id,
        limit=limit,
        matured_before=matured,
        order_from=read_start(state, _READ, "label" if matured is None else "request"),
        valid_rows=objective.valid_rows,
    )
    # nothing of the watch's is left unread after this look: it passes unless it decides
    last = over and len(batch.request_ids) < limit
    if batch.n_rows == 0 and last:
        return _pass(store, comparisons, test, watched, lineup_changed=lineup_changed)
    if batch.n_rows == 0:
        if batch.paired is not None and batch.request_ids:
            k, k2 = batch.answer.shape[1], batch.paired.shape[1]
            if k != k2 and store.get_model(model).task == "multiclass":
                # no request of theirs ever scores: watched, it would never end
                return close(
                    store,
                    comparisons,
                    test,
                    f"v{version} answers {k} classes, v{previous} {k2}: "
                    "their losses cannot be compared",
                    lineup_changed=lineup_changed,
                )
        # not read again
        comparisons.consume_unscored(test, batch.request_ids, {_READ: batch.last})
        return make_result(test, None, 0, "none")
    if isinstance(sequential, PairedSequentialTest):
        assert batch.paired is not None
        # loss(new champion) - loss(previous champion): positive is worse
        d = paired_differences(objective, batch.labels, batch.paired, batch.answer)
        values = paired_values(sequential.update(d, requests=batch.rows), sequential.method)
        new_state = {**state, **stateless(sequential.to_dict())}
    else:
        losses = objective.per_request_loss(batch.labels, batch.answer)
        values = watch_values(
            add_requests(sequential, "challenger", losses, batch.rows), sequential.method
        )
        new_state = {**state, **sequential.to_dict()}
    status: Literal["open", "decided", "closed"] = "open"
    if values.decision == "challenger_worse":
        status = "decided"
    elif values.decision == "challenger_better" or last:
        status = "closed"  # better, or the watch's last look: it passes
    if status == "closed":
        release_kept(store, test, lineup_changed=lineup_changed)
    try:
        saved = comparisons.record_look(
            test,
            consumed=list(batch.request_ids),
            look=values,
            state=new_state,
            status=status,
            watermarks={_READ: batch.last},
        )
    except ConflictError as exc:
        logger.warning("model=%s %s", model, exc.message)
        return None
    look_row = comparisons.latest_look(saved.id)
    if status == "closed":
        saved = comparisons.finish_test(
            saved.id,
            status="closed",
            outcome={"action": "watch_passed", "n": values.n},
        )
        return make_result(saved, look_row, len(batch.request_ids), "watch_passed")
    if status == "open":
        return make_result(saved, look_row, len(batch.request_ids), "none")
    return rollback(saved, look_row, len(batch.request_ids))


def add_requests(
    sequential: TwoSampleSequentialTest,
    arm: Literal["champion", "challenger"],
    losses: np.ndarray,
    rows: np.ndarray,
) -> TwoSampleLook:
    """Add one arm's per-row ``losses`` to the unpaired watch with the request as the unit
    (``rows``: each loss's request, as :class:`~tunewatch.store.LabelledBatch` maps them):
    its mean loss per row, with a variance over requests. A request is read once, so each
    is a unit new to the test; with one row per request, the losses are the units."""
    values = np.asarray(losses, dtype=np.float64)
    _, inverse, sizes = np.unique(rows, return_inverse=True, return_counts=True)
    if sizes.size == values.size:
        return sequential.update(**{arm: values})
    zeros = np.zeros(sizes.size)
    units = UnitUpdate(zeros, zeros, sizes.astype(np.float64), np.bincount(inverse, weights=values))
    return sequential.update_units(**{arm: units})


def _pass(
    store: Store,
    comparisons: ComparisonStore,
    test: ComparisonTestRow,
    watched: int,
    *,
    lineup_changed: Callable[[str], None],
) -> ComparisonResult:
    """Pass ``test`` without reading: the version it kept in shadow released first."""
    release_kept(store, test, lineup_changed=lineup_changed)
    passed = comparisons.finish_test(
        test.id,
        status="closed",
        outcome={"action": "watch_passed", "n": watched},
    )
    return make_result(passed, None, 0, "watch_passed")


def _without(state: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in keys}
