"""The rollback a watch decided: the champion it watched rolled back to the version it
replaced, and recorded (see :class:`~tunewatch.comparison._watch.RollbackWatch`). A
rollback committed by a run that failed before recording it is recorded by the next; one
refused because the version it restores has no artefact that reads back is retried by
each run (the version kept in shadow meanwhile), its failure recorded once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tunewatch._artefacts import ArtefactStore
from tunewatch._errors import ConflictError
from tunewatch.comparison._results import ACTOR, ComparisonResult, make_result, requested
from tunewatch.store import Store
from tunewatch.store._comparisons import ComparisonLookRow, ComparisonStore, ComparisonTestRow

logger = logging.getLogger(__name__)

#: The key of a watch's state holding the new champion's failed runs that decided it (see
#: ``RollbackWatch._failing``): its rollback names them.
FAILED_RUNS = "failed_runs"

#: The refusals a watch's rollback is retried after, by each run until it is done: the
#: version it restores has an artefact that does not read back (missing, damaged), which
#: an operator can restore. Any other refusal is final (``rollback_failed``).
RETRIED = frozenset({"artefact_unavailable"})

# How a rollback's audit reason names who asked for the run that committed it (as a
# promotion's does, in _decisions).
REQUESTED = "; the run was requested by "


def roll_back(
    store: Store,
    comparisons: ComparisonStore,
    artefacts: ArtefactStore,
    test: ComparisonTestRow,
    look: ComparisonLookRow | None,
    fed: int,
    *,
    release: Callable[[ComparisonTestRow], None],
    lineup_changed: Callable[[str], None],
    requested_by: str | None = None,
) -> ComparisonResult:
    """Roll ``test``'s watched champion back to the version it replaced, and record it;
    ``release`` retires the version the watch kept in shadow when the watch closes
    without a rollback. A refusal in :data:`RETRIED` leaves the watch decided with nothing
    done, for the next run to try again (its ``rollback_failed`` event stored once); any
    other is final. What this run records names ``requested_by``, who asked for it,
    if anyone did (in the rollback's audit reason too); a rollback an earlier run
    committed is recorded without (its audit entry names whoever asked for that run)."""
    model = test.model
    paired = bool(test.state.get("paired"))
    evidence: dict[str, Any] = {
        "test_id": test.id,
        "version": test.challenger_version,
        "previous": test.champion_version,
        "paired": paired,
        "baseline_n": test.state.get("baseline_n"),
    }
    if look is not None:
        evidence.update(
            method=look.method,
            n=look.n,
            estimate=look.estimate,
            ci=[look.ci_low, look.ci_high],
            p_value=look.p_value,
        )
    against = "on the same requests" if paired else "before the promotion"
    own = (
        f"rollback watch {test.id}: v{test.challenger_version}'s realised loss is worse than "
        f"v{test.champion_version}'s {against}"
    )
    failed = test.state.get(FAILED_RUNS)
    if isinstance(failed, dict):  # decided on its failed runs, not on its losses
        evidence["failed_runs"] = failed
        own = (
            f"rollback watch {test.id}: v{test.challenger_version} failed "
            f"{failed['failures']} of its {failed['runs']} runs as champion since its "
            f"promotion ({failed['failures'] / failed['runs']:.3g}; limit `max_error_rate` "
            f"{failed['limit']:g}), the last with `{failed['last_failure']}`"
        )
    reason = own
    if requested_by is not None:  # the audit entry names them, as a promotion's does
        reason += f"{REQUESTED}{requested_by!r}"
    from tunewatch import _governance as governance  # late, as in _decisions

    try:
        # a version whose artefact no longer reads back intact is not restored
        restored, rolled = governance.rollback(
            store,
            artefacts,
            model,
            actor=ACTOR,
            reason=reason,
            expected_champion=test.challenger_version,
        )
    except ConflictError as exc:
        if exc.code == "champion_changed" and _rolled_back_by(store, test, own):
            # this watch's own rollback, committed by a run that failed before it
            # recorded it: recorded now, not closed as "the champion changed"
            return _settle_rollback(
                store,
                comparisons,
                model,
                test,
                look,
                fed,
                evidence,
                own,
                lineup_changed=lineup_changed,
            )
        if exc.code == "champion_changed":  # another promotion replaced it meanwhile
            release(test)
            closed = comparisons.finish_test(
                test.id, status="closed", outcome={"action": "closed", "reason": exc.message}
            )
            return make_result(closed, look, fed, "closed", (exc.message,))
        retried = exc.code in RETRIED
        logger.warning(
            "model=%s version=%d test=%d rollback failed (%s)%s: %s",
            model,
            test.challenger_version,
            test.id,
            exc.code,
            "; the watch tries again on its next run" if retried else "",
            exc.message,
        )
        if not retried or not _failure_recorded(store, test):
            store.add_event(
                model=model,
                type="rollback_failed",
                payload={
                    **evidence,
                    "error": exc.message,
                    "code": exc.code,
                    **requested(requested_by),
                },
            )
        if retried:  # left decided with nothing done: the next run rolls back again
            return make_result(test, look, fed, "rollback_failed", (exc.message,))
        release(test)
        failed = comparisons.finish_test(
            test.id,
            status="decided",
            outcome={"action": "rollback_failed", "error": exc.message, "code": exc.code},
        )
        return make_result(failed, look, fed, "rollback_failed", (exc.message,))
    store.add_event(
        model=model,
        type="rollback_triggered",
        payload={
            **evidence,
            "restored": restored.version,
            "rolled_back": rolled.version,
            **requested(requested_by),
        },
    )
    # Only this run rolled back (the store's compare-and-set on the champion): its
    # outcome stands over a "champion changed" another run may have written meanwhile.
    done = comparisons.settle_test(
        test.id,
        status="decided",
        outcome={"action": "rolled_back", "restored": restored.version},
        replaces="any",
    )
    assert done is not None  # "any" replaces whatever stands
    lineup_changed(model)
    logger.warning(
        "model=%s version=%d rolled back, restored=%d: %s",
        model,
        rolled.version,
        restored.version,
        reason,
    )
    return make_result(done, look, fed, "rolled_back", (reason,))


def _failure_recorded(store: Store, test: ComparisonTestRow) -> bool:
    """Whether the model's newest ``rollback_failed`` event is ``test``'s (a retried
    rollback records its failure once)."""
    recorded = store.list_events(model=test.model, type="rollback_failed", limit=1)
    return bool(recorded) and recorded[0].payload.get("test_id") == test.id


def _rolled_back_by(store: Store, test: ComparisonTestRow, own: str) -> bool:
    """Whether the champion's newest change is ``test``'s own rollback: the previous
    champion restored, the watched version rolled back, for the watch's reason ``own``
    (followed, when a run someone asked for committed it, by who asked: any run may
    settle it)."""
    model, previous = test.model, test.champion_version
    champion = store.champion(model)
    if champion is None or champion.version != previous:
        return False
    if store.get_version(model, test.challenger_version).stage != "rolled_back":
        return False
    changes = store.list_events(model=model, types=("promoted", "rolled_back"), limit=1)
    if not changes or changes[0].type != "rolled_back":
        return False
    payload = changes[0].payload
    reason = payload.get("reason")
    if not isinstance(reason, str) or not (reason == own or reason.startswith(own + REQUESTED)):
        return False
    return (payload.get("version"), payload.get("rolled_back")) == (
        previous,
        test.challenger_version,
    )


def _settle_rollback(
    store: Store,
    comparisons: ComparisonStore,
    model: str,
    test: ComparisonTestRow,
    look: ComparisonLookRow | None,
    fed: int,
    evidence: dict[str, Any],
    reason: str,
    *,
    lineup_changed: Callable[[str], None],
) -> ComparisonResult:
    """Record a rollback of ``test`` committed by an earlier run: settled first, so of
    two runs doing it only one records the event (unless the earlier run wrote it
    before it failed)."""
    outcome = {"action": "rolled_back", "restored": test.champion_version}
    done = comparisons.settle_test(test.id, status="decided", outcome=outcome, replaces="unset")
    if done is None:  # another run recorded it
        current = comparisons.get_test(test.id)
        return make_result(current, look, fed, "none")
    recorded = store.list_events(model=model, type="rollback_triggered", limit=1)
    if not recorded or recorded[0].payload.get("test_id") != test.id:
        store.add_event(
            model=model,
            type="rollback_triggered",
            payload={
                **evidence,
                "restored": test.champion_version,
                "rolled_back": test.challenger_version,
            },
        )
    lineup_changed(model)
    logger.warning(
        "model=%s version=%d rolled back, restored=%d (recorded late): %s",
        model,
        test.challenger_version,
        test.champion_version,
        reason,
    )
    return make_result(done, look, fed, "rolled_back", (reason,))
