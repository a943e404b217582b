"""Starting the rollback watch of a promotion (see
:class:`~tunewatch.comparison._watch.RollbackWatch`). Paired: the previous champion is
kept in shadow (moved there from retired, a move each run retries until it is recorded)
to answer the new champion's requests too; a promotion made while a paired watch is
configured keeps it there itself, in its own transaction (``kept_in_shadow`` in its event),
so the watch counts every request since the promotion. Unpaired: the previous champion's labelled
requests before the promotion are the baseline. A previous champion an operator pulled
after the promotion is neither kept in shadow nor restored."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import numpy as np

from monitor.objectives import Objective
from shadow.stats import PairedSequentialTest, TwoSampleSequentialTest
from tunewatch._errors import ConflictError
from tunewatch.comparison._config import ComparisonConfig
from tunewatch.comparison._measured_objective import (
    OBJECTIVE,
    MeasuredObjective,
)
from tunewatch.comparison._results import ACTOR, ComparisonResult, stateless
from tunewatch.comparison._watch_failures import RUNS_AT_START, runs_at_promotion
from tunewatch.comparison._watch_look import add_requests
from tunewatch.comparison._watch_release import close, moved_by_operator
from tunewatch.store import MAX_ID, Event, Store
from tunewatch.store._comparisons import ComparisonStore, ComparisonTestRow
from tunewatch.store._governance import Pull, find_pull

logger = logging.getLogger(__name__)


def start_watch(
    store: Store,
    comparisons: ComparisonStore,
    model: str,
    settings: ComparisonConfig,
    objectives: tuple[Objective, MeasuredObjective],
    version: int,
    previous: int,
    promotion: Event,
    *,
    clock: Callable[[], datetime],
    lineup_changed: Callable[[str], None],
) -> ComparisonTestRow | ComparisonResult | None:
    """The watch of ``promotion`` (of v``version``, replacing v``previous``), paired or
    not as ``settings.rollback`` says: created open, or the one another run created; a
    result when it closed at once; ``None`` when an unpaired watch cannot begin yet."""
    if settings.rollback.paired:
        return _start_paired(
            store,
            comparisons,
            model,
            settings,
            objectives,
            version,
            previous,
            promotion,
            lineup_changed=lineup_changed,
        )
    return _start_unpaired(
        store,
        comparisons,
        model,
        settings,
        objectives,
        version,
        previous,
        promotion,
        clock=clock,
        lineup_changed=lineup_changed,
    )


def _start_paired(
    store: Store,
    comparisons: ComparisonStore,
    model: str,
    settings: ComparisonConfig,
    objectives: tuple[Objective, MeasuredObjective],
    version: int,
    previous: int,
    promotion: Event,
    *,
    lineup_changed: Callable[[str], None],
) -> ComparisonTestRow | ComparisonResult | None:
    rules = settings.rollback
    objective, measured = objectives
    stage = store.get_version(model, previous).stage
    # kept there by the promotion, not since by an operator (who keeps it after the watch)
    by_promotion = (
        bool(promotion.payload.get(KEPT))
        and stage == "shadow"
        and not moved_by_operator(store, model, version, previous)
    )
    sequential = PairedSequentialTest(
        alpha=rules.alpha,
        method=rules.method,
        planned_n=max(rules.watch_requests, settings.min_n),
        min_n=settings.min_n,  # the paired burn-in (shadow.stats.DEFAULT_MIN_N)
        mixing_sd=_mixing_sd(settings),
        loss_range=objective.loss_range,
        bootstrap_resamples=0,
    )
    test, created = comparisons.get_or_create_test(
        model=model,
        kind="rollback_watch",
        champion_version=previous,
        challenger_version=version,
        correction=None,
        state={
            **stateless(sequential.to_dict()),
            "promoted_at": promotion.created_at.isoformat(),
            OBJECTIVE: measured.as_state(),
            RUNS_AT_START: runs_at_promotion(store, promotion),
            "paired": True,
            "kept_in_shadow": stage == "retired" or by_promotion,
            # until the move to shadow is done: a failure between the test's commit
            # and the move (a store error, a crash) left v{previous} retired, and the
            # next run closed the watch as "v{previous} left shadow"
            "shadow_pending": stage == "retired",
        },
        promotion_id=promotion.id,
    )
    if not created:
        return test
    if stage == "rolled_back":
        return close(
            store,
            comparisons,
            test,
            f"v{previous} was rolled back: there is nothing to compare or restore",
            lineup_changed=lineup_changed,
        )
    if stage == "retired":
        return keep_in_shadow(store, comparisons, test, lineup_changed=lineup_changed)
    # Already in shadow: it stops answering a live split's units (see watched_versions).
    lineup_changed(model)
    return test


def keep_in_shadow(
    store: Store,
    comparisons: ComparisonStore,
    test: ComparisonTestRow,
    *,
    lineup_changed: Callable[[str], None],
) -> ComparisonTestRow | ComparisonResult:
    """Move the previous champion from retired to shadow for ``test``, then record the
    move as done (until then every run tries it again). Found in shadow already (the
    move was made and its record failed), it is only recorded; anywhere else, the
    caller finds it out of shadow and closes the watch."""
    model, previous = test.model, test.champion_version
    if store.get_version(model, previous).stage == "retired":
        by = pulled(store, test)
        if by is not None:
            return close(store, comparisons, test, pulled_reason(by), lineup_changed=lineup_changed)
        try:
            store.set_stage(
                model,
                previous,
                "shadow",
                actor=ACTOR,
                reason=(
                    f"kept in shadow for rollback watch {test.id}: "
                    f"v{test.challenger_version} is compared with v{previous} on the same "
                    "requests"
                ),
            )
        except ConflictError as exc:  # promoted or rolled back meanwhile
            return close(store, comparisons, test, exc.message, lineup_changed=lineup_changed)
        lineup_changed(model)
    if store.get_version(model, previous).stage != "shadow":
        return test
    try:
        return comparisons.write_state(test, {**test.state, "shadow_pending": False})
    except ConflictError as exc:  # another run recorded it first
        logger.info("model=%s %s", model, exc.message)
        return comparisons.get_test(test.id)


#: A promotion's event payload key: it kept the champion it replaced in shadow.
KEPT = "kept_in_shadow"


def return_unwatched(
    store: Store,
    comparisons: ComparisonStore,
    model: str,
    *,
    watched: Event | None,
    lineup_changed: Callable[[str], None],
) -> None:
    """Return to retired the versions recent promotions kept in shadow (``kept_in_shadow``)
    that no paired watch keeps: none started (another promotion came first, the watch was
    switched off or made unpaired meanwhile). ``watched``: the promotion a paired watch
    is to follow, whose version is left in shadow. Its approvals stand: it was not pulled.
    One an operator moved since (:func:`~._watch_release.moved_by_operator`) stays."""
    watches = {t.promotion_id for t in comparisons.list_tests(model, kind="rollback_watch")}
    for event in store.list_events(model=model, type="promoted", limit=RECENT_PROMOTIONS):
        previous = event.payload.get("previous")
        if not event.payload.get(KEPT) or previous is None or event.id in watches:
            continue
        if watched is not None and (
            event.id == watched.id or int(previous) == watched.payload.get("previous")
        ):
            continue
        if store.get_version(model, int(previous)).stage != "shadow" or moved_by_operator(
            store, model, int(event.payload["version"]), int(previous)
        ):
            continue  # an operator's shadow is left as it is
        try:
            store.set_stage(
                model,
                int(previous),
                "retired",
                actor=ACTOR,
                reason=(
                    f"kept in shadow by promotion {event.id} for a paired rollback watch that "
                    "did not start"
                ),
                close_approvals=False,
            )
        except ConflictError as exc:  # promoted or rolled back meanwhile
            logger.info("model=%s %s", model, exc.message)
            continue
        lineup_changed(model)


#: How many of a model's newest promotions :func:`return_unwatched` reads.
RECENT_PROMOTIONS = 20


def _start_unpaired(
    store: Store,
    comparisons: ComparisonStore,
    model: str,
    settings: ComparisonConfig,
    objectives: tuple[Objective, MeasuredObjective],
    version: int,
    previous: int,
    promotion: Event,
    *,
    clock: Callable[[], datetime],
    lineup_changed: Callable[[str], None],
) -> ComparisonTestRow | ComparisonResult | None:
    # kept in shadow by a promotion made while the watch was paired: not watched so
    return_unwatched(store, comparisons, model, watched=None, lineup_changed=lineup_changed)
    rules = settings.rollback
    objective, measured = objectives
    promoted_at = promotion.created_at
    matured = settings.matured_before(clock())
    if matured is not None and matured < promoted_at:
        # Until then neither the baseline's newest requests nor any request the new
        # champion answered has every label in: nothing fair to compare yet.
        return None
    baseline = comparisons.read_labelled(
        model=model,
        answered_by=previous,
        received_before=promoted_at,
        newest_first=True,  # with a maturity: the newest requests, not labels
        limit=rules.baseline_requests,
        matured_before=matured,
        valid_rows=objective.valid_rows,
    )
    sequential = TwoSampleSequentialTest(
        alpha=rules.alpha,
        method=rules.method,
        planned_n=max(rules.watch_requests, rules.min_n),
        min_n=rules.min_n,
        mixing_sd=_mixing_sd(settings),
        # Losses on both sides: a baseline that has not shown a rare costly miss yet
        # looks better than it is, which only the objective's bound can tell.
        loss_range=objective.loss_range,
    )
    requests = int(np.unique(baseline.rows).size)  # the unit, as the watch's own
    if requests >= rules.min_n:
        losses = objective.per_request_loss(baseline.labels, baseline.answer)
        add_requests(sequential, "champion", losses, baseline.rows)
    test, created = comparisons.get_or_create_test(
        model=model,
        kind="rollback_watch",
        champion_version=previous,
        challenger_version=version,
        correction=None,
        state={
            **sequential.to_dict(),
            "promoted_at": promoted_at.isoformat(),
            "baseline_n": requests,
            OBJECTIVE: measured.as_state(),
            RUNS_AT_START: runs_at_promotion(store, promotion),
        },
        promotion_id=promotion.id,
    )
    if created and requests < rules.min_n:
        return close(
            store,
            comparisons,
            test,
            f"v{previous} recorded only {requests} labelled requests before the "
            f"promotion (need {rules.min_n}): nothing to compare with",
            lineup_changed=lineup_changed,
        )
    return test


def pulled(store: Store, test: ComparisonTestRow) -> Pull | None:
    """How an operator pulled the version ``test`` compares with after the promotion it
    follows (:func:`~tunewatch.store._governance.find_pull`): it is neither kept in
    shadow nor restored. ``None``: not pulled (the watch's own moves pull nothing)."""
    model, previous, version = test.model, test.champion_version, test.challenger_version
    entries = [
        *store.audit_log(MAX_ID, target=f"{model}/v{version}", action="promote"),
        *store.audit_log(MAX_ID, target=f"{model}/v{previous}", action="set_stage"),
    ]
    entries.sort(key=lambda e: e.id)
    return find_pull(
        ((e.actor, e.action, e.target, e.details) for e in entries), model, version, previous
    )


def pulled_reason(pull: Pull) -> str:
    """Why a watch closes when the version it compares with was pulled (``pull``)."""
    return (
        f"v{pull.version} was {pull.describe()}: the watch neither keeps it in shadow nor "
        "rolls back to it"
    )


def _mixing_sd(settings: ComparisonConfig) -> float | None:
    """The comparison's mSPRT mixing sd for the watch when the watch runs an mSPRT too (a
    confidence sequence refuses one: every run of such a watch failed before it looked)."""
    return settings.mixing_sd if settings.rollback.method == "msprt" else None
