"""Ending a rollback watch without a rollback: the version it kept in shadow retired
again, then the watch closed (see :class:`~tunewatch.comparison._watch.RollbackWatch`).
A watch still in charge of a kept version holds it: watched, not compared as a
challenger."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tunewatch._errors import ConflictError
from tunewatch.comparison._results import ACTOR, ComparisonResult, make_result
from tunewatch.comparison._watched import pending_watch
from tunewatch.store import Store
from tunewatch.store._comparisons import ComparisonStore, ComparisonTestRow

logger = logging.getLogger(__name__)


def keeping(comparisons: ComparisonStore, model: str) -> list[ComparisonTestRow]:
    """Watches still in charge of a version they keep in shadow: open, or decided
    with the rollback not done yet."""
    return [
        t
        for t in comparisons.list_tests(model, kind="rollback_watch")
        if t.state.get("kept_in_shadow") and pending_watch(t)
    ]


def release_kept(
    store: Store, test: ComparisonTestRow, *, lineup_changed: Callable[[str], None]
) -> None:
    """Retire the version this watch kept in shadow, before the watch is closed (so
    a crash in between leaves an open watch whose version left shadow, which closes).
    It returns to the stage it had before the watch, so an operator's pending request
    to promote it (made during the watch) stands: the move keeps its approvals."""
    if not test.state.get("kept_in_shadow"):
        return
    model, previous = test.model, test.champion_version
    if store.get_version(model, previous).stage != "shadow":
        return  # restored as champion, or moved by an operator
    try:
        store.set_stage(
            model,
            previous,
            "retired",
            actor=ACTOR,
            reason=f"rollback watch {test.id} of v{test.challenger_version} ended",
            close_approvals=False,
        )
    except ConflictError as exc:  # promoted meanwhile
        logger.info("model=%s version=%d stays: %s", model, previous, exc.message)
        return
    lineup_changed(model)


def close(
    store: Store,
    comparisons: ComparisonStore,
    test: ComparisonTestRow,
    why: str,
    *,
    lineup_changed: Callable[[str], None],
) -> ComparisonResult:
    """Close ``test`` for the reason ``why``, releasing the version it kept in shadow
    first (:func:`release_kept`)."""
    release_kept(store, test, lineup_changed=lineup_changed)
    closed = comparisons.finish_test(
        test.id, status="closed", outcome={"action": "closed", "reason": why}
    )
    logger.info(
        "model=%s version=%d test=%d rollback watch: %s",
        test.model,
        test.challenger_version,
        test.id,
        why,
    )
    return make_result(closed, None, 0, "closed", (why,))


def close_overtaken(
    store: Store,
    comparisons: ComparisonStore,
    model: str,
    current: int | None,
    *,
    lineup_changed: Callable[[str], None],
) -> None:
    """Close the watches of promotions before ``current`` (the newest promotion's
    event id): a later one replaced their champion."""
    for test in comparisons.list_tests(model, kind="rollback_watch"):
        if pending_watch(test) and test.promotion_id != current:
            close(
                store,
                comparisons,
                test,
                "a later promotion replaced the watched champion",
                lineup_changed=lineup_changed,
            )
