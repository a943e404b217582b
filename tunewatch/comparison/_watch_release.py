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
from tunewatch.store import MAX_ID, Store
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
    to promote it (made during the watch) stands: the move keeps its approvals. One an
    operator moved since the promotion (:func:`moved_by_operator`: to shadow, during the
    watch) stays where the operator put it."""
    if not test.state.get("kept_in_shadow"):
        return
    model, previous = test.model, test.champion_version
    if store.get_version(model, previous).stage != "shadow":
        return  # restored as champion, or moved by an operator
    if moved_by_operator(store, model, test.challenger_version, previous):
        logger.info(
            "model=%s version=%d stays in shadow after rollback watch %d: an operator "
            "moved it there after v%d's promotion",
            model,
            previous,
            test.id,
            test.challenger_version,
        )
        return
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


def moved_by_operator(store: Store, model: str, version: int, previous: int) -> bool:
    """Whether anyone but the comparison loop (:data:`ACTOR`) moved ``previous`` with
    ``set_stage`` after the newest promotion of ``version`` that replaced it: an operator
    keeping in shadow a version the promotion kept there, whom the rollback watch leaves
    it to. Read from the audit log (its events do not name who moved it), oldest first; a
    promotion of the pair again starts over, as
    :func:`~tunewatch.store._champion_rollback.find_pull` reads it. The loop's own moves
    (lending it to shadow for the watch, returning it to retired) count for nothing."""
    promoted, moved = f"{model}/v{version}", f"{model}/v{previous}"
    entries = [
        *store.audit_log(MAX_ID, target=promoted, action="promote"),
        *store.audit_log(MAX_ID, target=moved, action="set_stage"),
    ]
    entries.sort(key=lambda e: e.id)
    replaced = by_operator = False
    for entry in entries:
        if entry.target == promoted:
            replaced, by_operator = entry.details.get("previous") == previous, False
        elif replaced and entry.actor != ACTOR:
            by_operator = True
    return by_operator


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
