"""The live split's own test: unpaired, always valid, on the objective's losses of each
arm's units (units whose requests the champion answered vs units the split challenger
answered alone). Assignment is per unit, so the analysis is too: each arm's estimate is its
mean loss per outcome with a delta-method variance over units, and the store keeps each
unit's running totals. Requests without a unit key were never split and are not read.
Its decision acts like a paired test's (guardrails, governance).

A change of the split's challenger, salt or share is a new split, as for its sample-ratio
check (:func:`tunewatch._split.check_split`). Fed to the same test, a unit the change
moved counted in both arms of a test that takes them for independent (95 of 600 units
after a new salt), and a decision a mismatch of the old settings blocked was acted on
once the new settings' count, untested, lifted the block. So the test of the old
settings is closed, never acted on, and a new one reads the requests received from when
the first check saw the new settings (the check's ``settings_since``). A change of the
model's objective closes it alike, and the new one reads only the requests received after
the newest it consumed (see :mod:`~tunewatch.comparison._looks`).

A test whose challenger left shadow (retired, rolled back, promoted by hand), or that the
configured split no longer names (removed, or naming another challenger), can look no
more: :meth:`SplitTest.close_gone` closes it, as a paired test whose challenger left
shadow is closed. One still open then opens again where it stopped when the split splits
with its challenger again (always valid: the pause added no unit); one decided and not
acted on is closed for good, never acted on. A rollback watch that keeps the challenger
shadowing only pauses it (it is in shadow, and named): it is left open."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal

import numpy as np

from monitor.objectives import Objective
from shadow.stats import TwoSampleSequentialTest, UnitUpdate
from tunewatch._errors import ConflictError
from tunewatch._split import SplitConfig
from tunewatch.comparison._config import ComparisonConfig
from tunewatch.comparison._looks import (
    measured_keys,
    reads_from,
    successor_since,
)
from tunewatch.comparison._measured_objective import (
    OBJECTIVE,
    OBJECTIVE_SINCE,
    MeasuredObjective,
    adopting,
    changed_objective,
    closing_outcome,
    objective_change,
)
from tunewatch.comparison._results import (
    ComparisonResult,
    log_decision,
    make_result,
    needs_action,
    watch_values,
)
from tunewatch.comparison._watched import watched_versions
from tunewatch.store import Store, VersionRow
from tunewatch.store._comparisons import (
    ComparisonStore,
    ComparisonTestRow,
    LabelledBatch,
    OrderKey,
    UnitTotal,
    Watermark,
    read_start,
)

Arm = Literal["champion", "challenger"]

logger = logging.getLogger(__name__)

#: The key of a split test's state (and of the outcome of one closed for a change of the
#: split's settings) that says from when the split's settings applied: the ISO time the
#: first check saw them, or ``None`` (from the split's start; tests started before it was
#: kept have none either).
SETTINGS_SINCE = "split_settings_since"

#: The key of the outcome of a split test closed while open because the split no longer
#: splits with its challenger (see :meth:`SplitTest.close_gone`): it opens again when it
#: does.
PAUSED = "split_paused"


class SplitTest:
    def __init__(
        self,
        store: Store,
        comparisons: ComparisonStore,
        since: Callable[[str], datetime | None],
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.comparisons = comparisons
        self.since = since
        self.clock = clock

    def run(
        self,
        model: str,
        champion: VersionRow,
        objective: Objective,
        settings: ComparisonConfig,
        *,
        measured: MeasuredObjective,
    ) -> ComparisonResult | None:
        split = settings.split
        if split is None or not objective.has_per_request_loss:
            return None
        try:
            challenger = self.store.get_version(model, split.challenger)
        except LookupError:
            return None
        if challenger.stage != "shadow":
            return None
        if split.challenger in watched_versions(self.comparisons, model):
            return None  # it shadows the champion for a rollback watch: it splits nothing
        window = self.store.latest_split_window(model)
        if window is None or (
            window.check.challenger_version,
            window.check.salt,
            window.check.percent,
        ) != (split.challenger, split.salt, split.percent):
            return None  # no sample-ratio check dated these settings yet
        settings_since = window.settings_since
        fresh = TwoSampleSequentialTest(
            alpha=settings.alpha,
            method=settings.method,
            planned_n=settings.planned_n,
            min_n=settings.min_n,
            mixing_sd=settings.mixing_sd,  # an effect on the losses' scale, as paired
            # Both arms' outcomes are the objective's per-request losses (lower is better),
            # so its bound allows for a costly loss neither arm has shown yet; the skewness
            # rule is the test's own (shadow.stats._paired.SKEW_BURN_IN).
            loss_range=objective.loss_range,
        )
        state = {
            **fresh.to_dict(),
            SETTINGS_SINCE: _iso(settings_since),
            OBJECTIVE: measured.as_state(),
        }
        test = self._test(model, champion, split, state, settings_since, measured)
        if test.status == "decided" and needs_action(test):  # e.g. blocked by a mismatch
            return make_result(test, self.comparisons.latest_look(test.id), 0, "none")
        if test.status != "open":
            return None
        since = self.since(model)
        if settings_since is not None and (since is None or settings_since > since):
            since = settings_since
        since = reads_from(test.state, since)
        matured = settings.matured_before(self.clock())
        order: OrderKey = "label" if matured is None else "request"
        read = functools.partial(
            self.comparisons.read_labelled,
            model=model,
            received_from=since,
            unconsumed_by=test.id,
            limit=settings.max_batch,
            keyed=True,
            matured_before=matured,
            valid_rows=objective.valid_rows,
        )
        # each arm reads from its own watermark (named after the arm)
        arms: dict[Arm, LabelledBatch] = {
            "champion": read(
                answered_by=champion.version,
                order_from=read_start(test.state, "champion", order),
            ),
            "challenger": read(
                answered_by=split.challenger,
                roles=("challenger",),
                alone=True,
                order_from=read_start(test.state, "challenger", order),
            ),
        }
        marks: dict[str, Watermark | None] = {arm: b.last for arm, b in arms.items()}
        consumed = [rid for batch in arms.values() for rid in batch.request_ids]
        if all(batch.n_rows == 0 for batch in arms.values()):
            self.comparisons.consume_unscored(test, consumed, marks)  # not read again
            return make_result(test, None, 0, "none")
        updates: dict[Arm, UnitUpdate] = {}
        totals: list[UnitTotal] = []
        for arm, batch in arms.items():
            if batch.n_rows:
                updates[arm] = self._unit_update(test.id, arm, batch, objective, totals)
        sequential = TwoSampleSequentialTest.from_dict(test.state)
        look = sequential.update_units(**updates)
        values = watch_values(look, settings.method)
        try:
            saved = self.comparisons.record_look(
                test,
                consumed=consumed,
                look=values,
                state={
                    **sequential.to_dict(),
                    "history": [],
                    SETTINGS_SINCE: test.state.get(SETTINGS_SINCE),
                    **measured_keys(test.state),
                },
                status="open" if look.decision == "continue" else "decided",
                units=totals,
                watermarks=marks,
            )
        except ConflictError as exc:
            logger.warning("model=%s %s", model, exc.message)
            return None
        if saved.status == "decided":
            log_decision(logger, saved, values)
        return make_result(saved, self.comparisons.latest_look(saved.id), len(consumed), "none")

    def close_gone(self, model: str, split: SplitConfig | None) -> list[ComparisonResult]:
        """Close ``model``'s split tests still open or to act on whose challenger left
        shadow, or that ``split`` (the configured one) no longer names; what was closed.
        An open one is closed :data:`PAUSED`: :meth:`run` opens it again when the split
        splits with its challenger again. Tests another run settled first are left to
        it."""
        live = [
            t
            for status in ("open", "decided")
            for t in self.comparisons.list_tests(model, kind="split", status=status)
            if t.status == "open" or needs_action(t)
        ]
        results: list[ComparisonResult] = []
        for test in sorted(live, key=lambda t: t.id):
            why = self._gone(test, split)
            if why is None:
                continue
            outcome: dict[str, object] = {"action": "closed", "reason": why}
            if test.status == "open":
                outcome[PAUSED] = True
            closed = self.comparisons.settle_test(test.id, status="closed", outcome=outcome)
            if closed is None:
                continue  # another run settled it first
            logger.info(
                "model=%s version=%d champion=%d test=%d (split) closed: %s",
                model,
                test.challenger_version,
                test.champion_version,
                test.id,
                why,
            )
            results.append(make_result(closed, None, 0, "closed", (why,)))
        return results

    def _gone(self, test: ComparisonTestRow, split: SplitConfig | None) -> str | None:
        """Why split test ``test`` can look no more under ``split``; ``None`` if it can."""
        if split is None:
            return "the live split was removed from the configuration"
        if split.challenger != test.challenger_version:
            return f"the live split names another challenger (v{split.challenger})"
        stage = self.store.get_version(test.model, test.challenger_version).stage
        if stage != "shadow":
            return f"the split's challenger v{test.challenger_version} left shadow ({stage})"
        return None

    def _test(
        self,
        model: str,
        champion: VersionRow,
        split: SplitConfig,
        state: dict[str, object],
        settings_since: datetime | None,
        measured: MeasuredObjective,
    ) -> ComparisonTestRow:
        """The split test of ``champion`` and the split's challenger under the split's
        current settings (applying from ``settings_since``) and the model's objective
        (``measured``), created with ``state`` when there is none. One still open or to
        act on (its action not taken, or blocked by a mismatch) under other settings or
        another objective is closed first, and the new one follows it: its
        ``promotion_id`` is the id of the test it replaces (0 for the pair's first), so
        that of two runs restarting it at once both find the same; after a change of
        objective it reads only requests received after the newest the old one consumed.
        A settled test stands (a pair is tested once per champion). One stored before
        the objective was recorded adopts ``measured``."""
        tests = [
            t
            for t in self.comparisons.list_tests(
                model, kind="split", champion_version=champion.version
            )
            if t.challenger_version == split.challenger
        ]
        current = tests[-1] if tests else None  # the newest: each follows the one before
        if current is not None and _paused(current):  # the split splits with it again
            current = self._resume(current)
        if current is not None and not _restarted(current):
            live = current.status == "open" or (
                current.status == "decided" and needs_action(current)
            )
            changed = objective_change(current, measured, "split") if live else None
            if changed is not None:
                current = self._close_for_objective(current, measured, changed)
                if not changed_objective(current):
                    return current  # another run settled it otherwise first
            elif not live or _started(current) == settings_since:
                return self._adopt(current, measured) if live else current
            else:
                current = self._close_for_settings(current, split, settings_since)
                if not _restarted(current):
                    return current  # another run settled it otherwise first
        if current is not None and changed_objective(current):
            since = successor_since(self.comparisons, current)
            if since is not None:
                state = {**state, OBJECTIVE_SINCE: since}
        test, _ = self.comparisons.get_or_create_test(
            model=model,
            kind="split",
            champion_version=champion.version,
            challenger_version=split.challenger,
            correction=None,
            state=state,
            promotion_id=0 if current is None else current.id,
        )
        return test

    def _resume(self, test: ComparisonTestRow) -> ComparisonTestRow:
        """``test`` (closed :data:`PAUSED`) open again where it stopped."""
        reason = str((test.outcome or {}).get("reason"))
        reopened = self.comparisons.reopen_test(test.id, reason=reason)
        if reopened is None:  # another run reopened it first
            return self.comparisons.get_test(test.id)
        logger.info(
            "model=%s version=%d champion=%d test=%d (split) open again (it was closed: %s)",
            test.model,
            test.challenger_version,
            test.champion_version,
            test.id,
            reason,
        )
        return reopened

    def _close_for_settings(
        self, test: ComparisonTestRow, split: SplitConfig, settings_since: datetime | None
    ) -> ComparisonTestRow:
        at = "" if settings_since is None else f" at {settings_since.isoformat()}"
        why = (
            f"the live split's challenger, salt or share changed{at} (now v"
            f"{split.challenger}, salt {split.salt!r}, {split.percent:g} %): its "
            "evidence was collected under other settings"
        )
        closed = self.comparisons.finish_test(
            test.id,
            status="closed",
            outcome={"action": "closed", "reason": why, SETTINGS_SINCE: _iso(settings_since)},
        )
        if _restarted(closed):
            _log_closed(test, why)
        return closed

    def _close_for_objective(
        self, test: ComparisonTestRow, measured: MeasuredObjective, changed: str
    ) -> ComparisonTestRow:
        why = (
            f"{changed}: its evidence measured the objective it had, and a new test reads "
            "the requests received after the newest it consumed"
        )
        closed = self.comparisons.finish_test(
            test.id, status="closed", outcome=closing_outcome(test, measured, why)
        )
        if changed_objective(closed):
            _log_closed(test, why)
        return closed

    def _adopt(self, test: ComparisonTestRow, measured: MeasuredObjective) -> ComparisonTestRow:
        """``test``, recording ``measured`` if it records no objective (stored before)."""
        state = adopting(test.state, measured)
        if state is None:
            return test
        try:
            return self.comparisons.write_state(test, state)
        except ConflictError:  # another run looked (and recorded it) first
            return self.comparisons.get_test(test.id)

    def _unit_update(
        self,
        test_id: int,
        arm: Arm,
        batch: LabelledBatch,
        objective: Objective,
        totals: list[UnitTotal],
    ) -> UnitUpdate:
        """What ``batch`` adds to each of its units in ``arm``; appends the units' new
        totals to ``totals``."""
        losses = np.asarray(objective.per_request_loss(batch.labels, batch.answer), np.float64)
        keys, unit_of_row = np.unique(
            np.asarray([batch.units[i] for i in batch.rows], dtype=object), return_inverse=True
        )
        added_n = np.bincount(unit_of_row, minlength=keys.size).astype(np.float64)
        added_total = np.bincount(unit_of_row, weights=losses, minlength=keys.size)
        known = self.comparisons.unit_totals(test_id, arm, keys.tolist())
        before = np.asarray([known.get(k, (0, 0.0)) for k in keys], dtype=np.float64)
        after = before + np.stack([added_n, added_total], axis=1)
        totals.extend(
            UnitTotal(arm, str(k), int(n), float(t)) for k, (n, t) in zip(keys, after, strict=True)
        )
        return UnitUpdate(before[:, 0], before[:, 1], added_n, added_total)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _started(test: ComparisonTestRow) -> datetime | None:
    """From when the split's settings of ``test`` applied (see :data:`SETTINGS_SINCE`)."""
    value = test.state.get(SETTINGS_SINCE)
    return None if value is None else datetime.fromisoformat(str(value))


def _paused(test: ComparisonTestRow) -> bool:
    """Whether ``test`` was closed while open because the split stopped splitting with its
    challenger (see :meth:`SplitTest.close_gone`)."""
    return test.status == "closed" and test.outcome is not None and bool(test.outcome.get(PAUSED))


def _restarted(test: ComparisonTestRow) -> bool:
    """Whether ``test`` was closed because the split's settings or the model's objective
    changed (its successor may be still to start, if the run that closed it stopped
    there)."""
    return changed_objective(test) or (
        test.status == "closed" and test.outcome is not None and SETTINGS_SINCE in test.outcome
    )


def _log_closed(test: ComparisonTestRow, why: str) -> None:
    logger.info(
        "model=%s version=%d champion=%d test=%d (split) closed: %s",
        test.model,
        test.challenger_version,
        test.champion_version,
        test.id,
        why,
    )
