"""The rollback watch that follows every promotion: :class:`RollbackWatch`, a front
that runs a watch's checks in order and delegates each part to its module. Starting a
watch (paired, keeping the previous champion in shadow, or unpaired) is in
:mod:`~tunewatch.comparison._watch_start`; one look at the new champion's next batch in
:mod:`~tunewatch.comparison._watch_look`; ending a watch without a rollback (the kept
version retired, the watch closed) in :mod:`~tunewatch.comparison._watch_release`; the
failed-runs check in :mod:`~tunewatch.comparison._watch_failures`; the rollback itself in
:mod:`~tunewatch.comparison._watch_rollback`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial

from monitor.objectives import Objective
from tunewatch._artefacts import ArtefactStore
from tunewatch._errors import ConflictError
from tunewatch.comparison._config import ComparisonConfig
from tunewatch.comparison._measured_objective import (
    MeasuredObjective,
    adopting,
    objective_change,
    recorded_objective,
)
from tunewatch.comparison._results import ComparisonResult
from tunewatch.comparison._watch_failures import failed_runs
from tunewatch.comparison._watch_look import look
from tunewatch.comparison._watch_release import close, close_overtaken, keeping, release_kept
from tunewatch.comparison._watch_rollback import FAILED_RUNS, roll_back
from tunewatch.comparison._watch_start import (
    KEPT,
    RECENT_PROMOTIONS,
    keep_in_shadow,
    pulled,
    pulled_reason,
    return_unwatched,
    start_watch,
)
from tunewatch.comparison._watched import pending_watch
from tunewatch.store import Event, Store
from tunewatch.store._comparisons import ComparisonLookRow, ComparisonStore, ComparisonTestRow

logger = logging.getLogger(__name__)


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
        return {t.champion_version for t in keeping(self.comparisons, model)}

    def release(self, model: str, why: str) -> None:
        """Close the pending watches, retiring a version one kept in shadow (the watch was
        switched off: nothing would ever end them, and a live split would stay paused for
        the version one compares with).

        Every scheduled run of a model whose comparison or rollback watch is off does this:
        with nothing pending it reads the open and decided watches (none) and the newest
        promotions, not every watch the model ever had nor each version they kept."""
        for status in ("open", "decided"):
            for test in self.comparisons.list_tests(model, kind="rollback_watch", status=status):
                if pending_watch(test):
                    self._close(test, why)
        if self._kept(model):
            self._return_unwatched(model, None)

    def _kept(self, model: str) -> bool:
        """Whether a version one of the newest promotions kept in shadow still is there:
        what :meth:`_return_unwatched` may retire (else it has nothing to do)."""
        promotions = self.store.list_events(model=model, type="promoted", limit=RECENT_PROMOTIONS)
        kept = {
            int(e.payload["previous"])
            for e in promotions
            if e.payload.get(KEPT) and e.payload.get("previous") is not None
        }
        return bool(kept) and any(
            v.version in kept for v in self.store.list_versions(model, stage="shadow")
        )

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
        self._return_unwatched(model, None)

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
        events = self.store.list_events(model=model, type="promoted", limit=1)
        promotion = events[0] if events else None
        if promotion is None or promotion.payload.get("previous") is None:
            close_overtaken(
                self.store, self.comparisons, model, None, lineup_changed=self._lineup_changed
            )
            self._return_unwatched(model, None)
            return None
        version = int(promotion.payload["version"])
        previous = int(promotion.payload["previous"])
        promoted_at = promotion.created_at
        close_overtaken(
            self.store, self.comparisons, model, promotion.id, lineup_changed=self._lineup_changed
        )
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
                self._return_unwatched(model, None)
                return None  # rolled back or replaced before the watch began
            if settings.rollback.paired:  # older promotions' kept versions no watch keeps
                self._return_unwatched(model, promotion)
            started = start_watch(
                self.store,
                self.comparisons,
                model,
                settings,
                (objective, measured),
                version,
                previous,
                promotion,
                clock=self.clock,
                lineup_changed=self._lineup_changed,
            )
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
            kept = keep_in_shadow(
                self.store, self.comparisons, test, lineup_changed=self._lineup_changed
            )
            if isinstance(kept, ComparisonResult):
                return kept
            test = kept
        if paired and self.store.get_version(model, previous).stage != "shadow":
            # pulled or not: a rollback by hand refuses a version an operator retired
            return self._close(test, f"v{previous} left shadow: there is nothing to compare")
        pull = pulled(self.store, test)
        if pull is not None and pull.stage == "retired":
            # unpaired, or moved to shadow by a run that read it before the pull: a
            # rolled-back version is refused by the rollback itself (rollback_failed)
            return self._close(test, pulled_reason(pull))
        failing = self._failing(test, settings, requested_by)
        if failing is not None:
            return failing
        return look(
            self.store,
            self.comparisons,
            test,
            settings,
            objective,
            promoted_at=promoted_at,
            clock=self.clock,
            lineup_changed=self._lineup_changed,
            rollback=partial(self._rollback, requested_by=requested_by),
        )

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

    def _close(self, test: ComparisonTestRow, why: str) -> ComparisonResult:
        """Close ``test`` (see :func:`~tunewatch.comparison._watch_release.close`)."""
        return close(self.store, self.comparisons, test, why, lineup_changed=self._lineup_changed)

    def _release(self, test: ComparisonTestRow) -> None:
        """Retire the version ``test`` kept in shadow (see
        :func:`~tunewatch.comparison._watch_release.release_kept`)."""
        release_kept(self.store, test, lineup_changed=self._lineup_changed)

    def _return_unwatched(self, model: str, watched: Event | None) -> None:
        """Retire the versions promotions kept in shadow for a watch that never started
        (see :func:`~tunewatch.comparison._watch_start.return_unwatched`)."""
        return_unwatched(
            self.store,
            self.comparisons,
            model,
            watched=watched,
            lineup_changed=self._lineup_changed,
        )

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
