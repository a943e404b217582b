"""The rollback watch that follows every promotion."""

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
from tunewatch._artefacts import ArtefactStore
from tunewatch._errors import ConflictError
from tunewatch.comparison._config import ComparisonConfig
from tunewatch.comparison._looks import (
    OBJECTIVE,
    MeasuredObjective,
    adopting,
    objective_change,
    recorded_objective,
)
from tunewatch.comparison._results import (
    ACTOR,
    ComparisonResult,
    make_result,
    paired_values,
    stateless,
    watch_values,
)
from tunewatch.comparison._watch_failures import RUNS_AT_START, failed_runs, runs_at_promotion
from tunewatch.comparison._watch_rollback import FAILED_RUNS, roll_back
from tunewatch.comparison._watched import pending_watch
from tunewatch.store import MAX_ID, Event, Store
from tunewatch.store._comparisons import (
    ComparisonLookRow,
    ComparisonStore,
    ComparisonTestRow,
    read_start,
)
from tunewatch.store._governance import Pull, find_pull

logger = logging.getLogger(__name__)

# A watch's state: its test's state and these keys (and its read's watermark).
_PAIRED_KEYS = ("promoted_at", "paired", "kept_in_shadow", "shadow_pending")
_UNPAIRED_KEYS = ("promoted_at", "baseline_n")
#: The name of a watch's read of the new champion's requests (its watermark's key).
_READ = "labelled"


class RollbackWatch:
    """After a promotion: is the new champion worse than the one it replaced?

    Paired (the default): the previous champion is kept in shadow, and the new champion's
    realised per-request losses are compared with the previous champion's on the same
    requests. Unpaired: with the previous champion's recorded losses before the
    promotion, which traffic that grew harder meanwhile makes look like a worse model.
    Either test is always valid; degradation rolls back, and a version the watch kept in
    shadow is retired again when the watch ends. A watch follows one promotion: the same
    pair promoted again (after a rollback or a flip back) is watched again. A previous
    champion an operator pulled after the promotion (retired it: see
    :func:`~tunewatch.store._governance.find_pull`) is neither kept in shadow nor restored:
    the watch closes, naming who pulled it and why. So does a change of the model's
    objective: the watch's sums are of the objective it started with (a new watch of the
    same promotion cannot start, and the version kept in shadow is retired as ever).

    The version a paired watch compares with only shadows, live split or not (see
    :func:`watched_versions`). Each step that can fail alone is retried by the next run:
    moving that version to shadow (until the move is recorded), and recording a rollback
    the watch committed.
    """

    def __init__(
        self,
        store: Store,
        comparisons: ComparisonStore,
        *,
        artefacts: ArtefactStore,
        clock: Callable[[], datetime],
        on_lineup_change: Callable[[str], object] | None,
    ) -> None:
        self.store = store
        self.comparisons = comparisons
        self.artefacts = artefacts
        self.clock = clock
        self.on_lineup_change = on_lineup_change

    def held(self, model: str) -> set[int]:
        """Versions watches keep in shadow: watched, not compared as challengers."""
        return {t.champion_version for t in self._keeping(model)}

    def release(self, model: str, why: str) -> None:
        """Close the pending watches, retiring a version one kept in shadow (the watch was
        switched off: nothing would ever end them, and a live split would stay paused for
        the version one compares with)."""
        for test in self.comparisons.list_tests(model, kind="rollback_watch"):
            if pending_watch(test):
                self._close(test, why)

    def release_without_loss(self, model: str, objective: MeasuredObjective) -> None:
        """Close the pending watches as :meth:`release` does: the model's objective
        changed to ``objective``, which has no per-request loss to compare."""
        for test in self.comparisons.list_tests(model, kind="rollback_watch"):
            if pending_watch(test):
                was = recorded_objective(test.state)
                changed = "to" if was is None else f"from {was} to"
                self._close(
                    test,
                    f"objective changed {changed} {objective}, which has no per-request loss: "
                    "the watch cannot compare the two versions",
                )

    def _keeping(self, model: str) -> list[ComparisonTestRow]:
        """Watches still in charge of a version they keep in shadow: open, or decided
        with the rollback not done yet."""
        return [
            t
            for t in self.comparisons.list_tests(model, kind="rollback_watch")
            if t.state.get("kept_in_shadow") and pending_watch(t)
        ]

    def run(
        self,
        model: str,
        settings: ComparisonConfig,
        objective: Objective,
        measured: MeasuredObjective,
        requested_by: str | None = None,
    ) -> ComparisonResult | None:
        """Watch the newest promotion one more batch; a rollback it causes names
        ``requested_by``, who asked for the run, if anyone did."""
        rules, max_batch = settings.rollback, settings.max_batch
        events = self.store.list_events(model=model, type="promoted", limit=1)
        promotion = events[0] if events else None
        if promotion is None or promotion.payload.get("previous") is None:
            self._close_overtaken(model, None)
            return None
        version = int(promotion.payload["version"])
        previous = int(promotion.payload["previous"])
        promoted_at = promotion.created_at
        self._close_overtaken(model, promotion.id)
        existing = [
            t
            for t in self.comparisons.list_tests(model, kind="rollback_watch")
            if t.promotion_id == promotion.id
        ]
        if existing:
            test = existing[0]
        else:
            champion = self.store.champion(model)
            if champion is None or champion.version != version:
                return None  # rolled back or replaced before the watch began
            start = self._start_paired if rules.paired else self._start_unpaired
            started = start(model, settings, (objective, measured), version, previous, promotion)
            if started is None or isinstance(started, ComparisonResult):
                return started
            test = started
        if test.status == "decided" and test.outcome is None:  # the rollback did not happen
            return self._rollback(test, self.comparisons.latest_look(test.id), 0, requested_by)
        if test.status != "open":
            return None
        changed = objective_change(test, measured, "rollback_watch")
        if changed is not None:
            return self._close(
                test, f"{changed}: the watch's evidence measured the objective it had"
            )
        adopted = adopting(test.state, measured)  # stored before the objective was recorded
        if adopted is not None:
            try:
                test = self.comparisons.write_state(test, adopted)
            except ConflictError as exc:  # another run looked meanwhile
                logger.info("model=%s %s", model, exc.message)
                return None
        paired = bool(test.state.get("paired"))
        champion = self.store.champion(model)
        if champion is None or champion.version != version:
            return self._close(test, "the champion changed during the watch")
        if paired and test.state.get("shadow_pending"):
            kept = self._keep_in_shadow(test)
            if isinstance(kept, ComparisonResult):
                return kept
            test = kept
        if paired and self.store.get_version(model, previous).stage != "shadow":
            # pulled or not: a rollback by hand refuses a version an operator retired
            return self._close(test, f"v{previous} left shadow: there is nothing to compare")
        pulled = self._pulled(test)
        if pulled is not None and pulled.stage == "retired":
            # unpaired, or moved to shadow by a run that read it before the pull: a
            # rolled-back version is refused by the rollback itself (rollback_failed)
            return self._close(test, _pulled_reason(pulled))
        failing = self._failing(test, settings, requested_by)
        if failing is not None:
            return failing
        state = test.state
        sequential: PairedSequentialTest | TwoSampleSequentialTest
        if paired:
            sequential = PairedSequentialTest.from_dict(_without(state, _PAIRED_KEYS))
            watched = sequential.n
        else:
            sequential = TwoSampleSequentialTest.from_dict(_without(state, _UNPAIRED_KEYS))
            history = sequential.history
            watched = history[-1].n_challenger if history else 0
        over = rules.watch_s is not None and self.clock() - promoted_at >= timedelta(
            seconds=rules.watch_s
        )
        if watched >= rules.watch_requests or over:
            self._release(test)
            passed = self.comparisons.finish_test(
                test.id,
                status="closed",
                outcome={"action": "watch_passed", "n": watched},
            )
            return make_result(passed, None, 0, "watch_passed")
        matured = settings.matured_before(self.clock())
        batch = self.comparisons.read_labelled(
            model=model,
            answered_by=version,
            paired_with=previous if paired else None,
            received_from=promoted_at,
            unconsumed_by=test.id,
            limit=min(max_batch, rules.watch_requests - watched),
            matured_before=matured,
            order_from=read_start(state, _READ, "label" if matured is None else "request"),
            valid_rows=objective.valid_rows,
        )
        if batch.n_rows == 0:
            if batch.paired is not None and batch.request_ids:
                k, k2 = batch.answer.shape[1], batch.paired.shape[1]
                if k != k2 and self.store.get_model(model).task == "multiclass":
                    # no request of theirs ever scores: watched, it would never end
                    return self._close(
                        test,
                        f"v{version} answers {k} classes, v{previous} {k2}: "
                        "their losses cannot be compared",
                    )
            # not read again
            self.comparisons.consume_unscored(test, batch.request_ids, {_READ: batch.last})
            return make_result(test, None, 0, "none")
        if isinstance(sequential, PairedSequentialTest):
            assert batch.paired is not None
            # loss(new champion) - loss(previous champion): positive is worse
            d = paired_differences(objective, batch.labels, batch.paired, batch.answer)
            look = paired_values(sequential.update(d, requests=batch.rows), sequential.method)
            new_state = {**state, **stateless(sequential.to_dict())}
        else:
            losses = objective.per_request_loss(batch.labels, batch.answer)
            look = watch_values(
                _add_requests(sequential, "challenger", losses, batch.rows), sequential.method
            )
            new_state = {**state, **sequential.to_dict()}
        status: Literal["open", "decided", "closed"] = "open"
        if look.decision == "challenger_worse":
            status = "decided"
        elif look.decision == "challenger_better":
            status = "closed"
        if status == "closed":
            self._release(test)
        try:
            saved = self.comparisons.record_look(
                test,
                consumed=list(batch.request_ids),
                look=look,
                state=new_state,
                status=status,
                watermarks={_READ: batch.last},
            )
        except ConflictError as exc:
            logger.warning("model=%s %s", model, exc.message)
            return None
        look_row = self.comparisons.latest_look(saved.id)
        if status == "closed":
            saved = self.comparisons.finish_test(
                saved.id,
                status="closed",
                outcome={"action": "watch_passed", "n": look.n},
            )
            return make_result(saved, look_row, len(batch.request_ids), "watch_passed")
        if status == "open":
            return make_result(saved, look_row, len(batch.request_ids), "none")
        return self._rollback(saved, look_row, len(batch.request_ids), requested_by)

    def _start_paired(
        self,
        model: str,
        settings: ComparisonConfig,
        objectives: tuple[Objective, MeasuredObjective],
        version: int,
        previous: int,
        promotion: Event,
    ) -> ComparisonTestRow | ComparisonResult | None:
        rules = settings.rollback
        objective, measured = objectives
        stage = self.store.get_version(model, previous).stage
        sequential = PairedSequentialTest(
            alpha=rules.alpha,
            method=rules.method,
            planned_n=max(rules.watch_requests, settings.min_n),
            min_n=settings.min_n,  # the paired burn-in (shadow.stats.DEFAULT_MIN_N)
            mixing_sd=_mixing_sd(settings),
            loss_range=objective.loss_range,
            bootstrap_resamples=0,
        )
        test, created = self.comparisons.get_or_create_test(
            model=model,
            kind="rollback_watch",
            champion_version=previous,
            challenger_version=version,
            correction=None,
            state={
                **stateless(sequential.to_dict()),
                "promoted_at": promotion.created_at.isoformat(),
                OBJECTIVE: measured.as_state(),
                RUNS_AT_START: runs_at_promotion(self.store, promotion),
                "paired": True,
                "kept_in_shadow": stage == "retired",
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
            return self._close(
                test, f"v{previous} was rolled back: there is nothing to compare or restore"
            )
        if stage == "retired":
            return self._keep_in_shadow(test)
        # Already in shadow: it stops answering a live split's units (see watched_versions).
        self._lineup_changed(model)
        return test

    def _keep_in_shadow(self, test: ComparisonTestRow) -> ComparisonTestRow | ComparisonResult:
        """Move the previous champion from retired to shadow for ``test``, then record the
        move as done (until then every run tries it again). Found in shadow already (the
        move was made and its record failed), it is only recorded; anywhere else, the
        caller finds it out of shadow and closes the watch."""
        model, previous = test.model, test.champion_version
        if self.store.get_version(model, previous).stage == "retired":
            pulled = self._pulled(test)
            if pulled is not None:
                return self._close(test, _pulled_reason(pulled))
            try:
                self.store.set_stage(
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
                return self._close(test, exc.message)
            self._lineup_changed(model)
        if self.store.get_version(model, previous).stage != "shadow":
            return test
        try:
            return self.comparisons.write_state(test, {**test.state, "shadow_pending": False})
        except ConflictError as exc:  # another run recorded it first
            logger.info("model=%s %s", model, exc.message)
            return self.comparisons.get_test(test.id)

    def _start_unpaired(
        self,
        model: str,
        settings: ComparisonConfig,
        objectives: tuple[Objective, MeasuredObjective],
        version: int,
        previous: int,
        promotion: Event,
    ) -> ComparisonTestRow | ComparisonResult | None:
        rules = settings.rollback
        objective, measured = objectives
        promoted_at = promotion.created_at
        matured = settings.matured_before(self.clock())
        if matured is not None and matured < promoted_at:
            # Until then neither the baseline's newest requests nor any request the new
            # champion answered has every label in: nothing fair to compare yet.
            return None
        baseline = self.comparisons.read_labelled(
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
            _add_requests(sequential, "champion", losses, baseline.rows)
        test, created = self.comparisons.get_or_create_test(
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
                RUNS_AT_START: runs_at_promotion(self.store, promotion),
            },
            promotion_id=promotion.id,
        )
        if created and requests < rules.min_n:
            return self._close(
                test,
                f"v{previous} recorded only {requests} labelled requests before the "
                f"promotion (need {rules.min_n}): nothing to compare with",
            )
        return test

    def _failing(
        self, test: ComparisonTestRow, settings: ComparisonConfig, requested_by: str | None
    ) -> ComparisonResult | None:
        """Roll back a new champion failing on too many of its runs since its promotion
        (:func:`failed_runs`); ``None`` when it does not."""
        failed = failed_runs(self.store, test, settings)
        if failed is None:
            return None
        try:
            test = self.comparisons.write_state(test, {**test.state, FAILED_RUNS: failed})
        except ConflictError as exc:  # another run looked meanwhile: it decides
            logger.info("model=%s %s", test.model, exc.message)
            return None
        decided = self.comparisons.settle_test(
            test.id, status="decided", decision="challenger_worse", replaces="unset"
        )
        if decided is None:  # another run settled it first
            return None
        return self._rollback(decided, None, 0, requested_by)

    def _pulled(self, test: ComparisonTestRow) -> Pull | None:
        """How an operator pulled the version ``test`` compares with after the promotion it
        follows (:func:`~tunewatch.store._governance.find_pull`): it is neither kept in
        shadow nor restored. ``None``: not pulled (the watch's own moves pull nothing)."""
        model, previous, version = test.model, test.champion_version, test.challenger_version
        entries = [
            *self.store.audit_log(MAX_ID, target=f"{model}/v{version}", action="promote"),
            *self.store.audit_log(MAX_ID, target=f"{model}/v{previous}", action="set_stage"),
        ]
        entries.sort(key=lambda e: e.id)
        return find_pull(
            ((e.actor, e.action, e.target, e.details) for e in entries), model, version, previous
        )

    def _close(self, test: ComparisonTestRow, why: str) -> ComparisonResult:
        self._release(test)
        closed = self.comparisons.finish_test(
            test.id, status="closed", outcome={"action": "closed", "reason": why}
        )
        logger.info("model=%s rollback watch of v%d: %s", test.model, test.challenger_version, why)
        return make_result(closed, None, 0, "closed", (why,))

    def _close_overtaken(self, model: str, current: int | None) -> None:
        """Close the watches of promotions before ``current`` (the newest promotion's
        event id): a later one replaced their champion."""
        for test in self.comparisons.list_tests(model, kind="rollback_watch"):
            if pending_watch(test) and test.promotion_id != current:
                self._close(test, "a later promotion replaced the watched champion")

    def _release(self, test: ComparisonTestRow) -> None:
        """Retire the version this watch kept in shadow, before the watch is closed (so
        a crash in between leaves an open watch whose version left shadow, which closes).
        It returns to the stage it had before the watch, so an operator's pending request
        to promote it (made during the watch) stands: the move keeps its approvals."""
        if not test.state.get("kept_in_shadow"):
            return
        model, previous = test.model, test.champion_version
        if self.store.get_version(model, previous).stage != "shadow":
            return  # restored as champion, or moved by an operator
        try:
            self.store.set_stage(
                model,
                previous,
                "retired",
                actor=ACTOR,
                reason=f"rollback watch {test.id} of v{test.challenger_version} ended",
                close_approvals=False,
            )
        except ConflictError as exc:  # promoted meanwhile
            logger.info("model=%s v%d stays: %s", model, previous, exc.message)
            return
        self._lineup_changed(model)

    def _lineup_changed(self, model: str) -> None:
        if self.on_lineup_change is not None:
            self.on_lineup_change(model)

    def _rollback(
        self,
        test: ComparisonTestRow,
        look: ComparisonLookRow | None,
        fed: int,
        requested_by: str | None,
    ) -> ComparisonResult:
        return roll_back(
            self.store,
            self.comparisons,
            self.artefacts,
            test,
            look,
            fed,
            release=self._release,
            lineup_changed=self._lineup_changed,
            requested_by=requested_by,
        )


def _add_requests(
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


def _pulled_reason(pulled: Pull) -> str:
    return (
        f"v{pulled.version} was {pulled.describe()}: the watch neither keeps it in shadow nor "
        "rolls back to it"
    )


def _without(state: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in keys}


def _mixing_sd(settings: ComparisonConfig) -> float | None:
    """The comparison's mSPRT mixing sd for the watch when the watch runs an mSPRT too (a
    confidence sequence refuses one: every run of such a watch failed before it looked)."""
    return settings.mixing_sd if settings.rollback.method == "msprt" else None
