"""The comparison loop: paired shadow tests, promotion with guardrails, rollback watches.

Each run of :meth:`ComparisonRunner.run` for one model

1. watches the newest promotion: the new champion's realised per-request losses against
   the previous champion's, kept in shadow on the same requests (paired, always valid;
   or unpaired, against its labelled requests before the promotion); significant
   degradation rolls back;
2. checks the live split's sample ratio (when a split is configured and its challenger
   is still in shadow: a promoted or retired one splits nothing, nor one a paired
   rollback watch compares with, which only shadows); a mismatch raises
   ``srm_detected`` and blocks promotions until it clears. A new challenger, salt or
   share is a new split: the check counts afresh, and the split's test of the old
   settings is closed, never acted on, for a new one (see
   :mod:`~tunewatch.comparison._split_test`). The split's test closes, as a paired
   test does, once its challenger left shadow or the configured split no longer names it
   (removed, or naming another), and opens again where it stopped when the split splits
   with it again;
3. feeds every shadow challenger's newly labelled requests — those with the champion's
   output, the challenger's output and a label, each fed once whatever order they arrive
   in — to a paired always-valid test whose state is persisted, so a restart continues
   the same test. A challenger that leaves shadow closes its test (a replaced champion's
   too, whoever is champion now), which opens again where it stopped when the challenger
   returns to shadow that champion. A test measures one objective: after a change of
   the model's objective the test is closed, and a new one reads only the requests
   received after the newest it consumed (see :mod:`._looks`). Objectives
   without a per-request loss (ROC AUC …) use a group-sequential DeLong test at the looks
   it planned as it started instead. Several challengers share the error rate (Holm on
   the always-valid p-values, or Bonferroni). The split's challenger, while it splits,
   never shadows: it has no paired test and no share of the family (the split test
   compares it);
4. acts on decided tests once (each test's outcome is settled in the store by a
   compare-and-set, a refusal or closing before its events, a promotion's
   ``challenger_better`` event recorded once before it is tried, so of two runs acting at
   once only one records anything, notices excepted: ``Decisions._notify``): ``challenger_better``
   closes the test when its challenger left shadow, checks the guardrails, goes through
   the dispatcher and — when the trigger says promote and the guardrails pass —
   promotes through the governance gate (which may open an approval instead);
   ``challenger_worse`` goes through the dispatcher (notify).

Every look is stored (``comparison_looks``) so dashboards can draw how the evidence grew.

This module holds the runner, its settings and the run; the parts live beside it:
sharing the error rate, recording the looks and acting on decided tests in
:mod:`._runner_family`, the A/B view (:meth:`ComparisonRunner.summary`) in
:mod:`._runner_summary`, the decisions and guardrails in :mod:`._decisions` and
:mod:`._guardrails`, a test's looks in :mod:`._looks`, the live-split test in
:mod:`._split_test` and the rollback watch in :mod:`._watch`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from monitor import ServingMetrics
from monitor.objectives import Objective, ObjectiveError, make_objective
from shadow.stats import StatsError
from tunewatch._artefacts import ArtefactStore
from tunewatch._errors import InvalidValueError
from tunewatch._split import check_split
from tunewatch.store import Store, VersionRow
from tunewatch.store._comparisons import (
    ComparisonLookRow,
    ComparisonStore,
    ComparisonTestRow,
    SplitCheckRow,
)

if TYPE_CHECKING:  # _config nests ComparisonConfig: import nothing that imports _config
    from tunewatch._actions import Dispatcher
    from tunewatch._config import Config


from tunewatch.comparison._config import ComparisonConfig, comparison_of
from tunewatch.comparison._decisions import Decisions
from tunewatch.comparison._looks import (
    LEFT_SHADOW,
    EvidencePurged,
    Incomparable,
    close_left_shadow,
    delong_update,
    measuring,
    new_state,
    pair_tests,
    pairable_since,
    paired_update,
    successor_since,
)
from tunewatch.comparison._measured_objective import (
    OBJECTIVE_SINCE,
    MeasuredObjective,
    changed_objective,
)
from tunewatch.comparison._results import (
    ChallengerSummary,
    CheckedGuardrails,
    ComparisonResult,
    make_result,
)
from tunewatch.comparison._runner_family import Pending, act_on_decided, record_family
from tunewatch.comparison._runner_summary import latest_split_check, summarise
from tunewatch.comparison._split_test import SplitTest
from tunewatch.comparison._split_window import split_since, split_start, splitting
from tunewatch.comparison._watch import RollbackWatch

logger = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ComparisonRunner:
    """Runs the comparison loop of one model at a time (see the module docstring).

    ``on_lineup_change`` is called with the model after a promotion or rollback (the
    daemon passes ``runtime.try_load``); ``settings`` overrides a model's
    ``ComparisonConfig`` (default: its config's ``comparison`` section, else defaults).
    """

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        dispatcher: Dispatcher,
        metrics: ServingMetrics | None = None,
        clock: Callable[[], datetime] = _utcnow,
        on_lineup_change: Callable[[str], object] | None = None,
        settings: Mapping[str, ComparisonConfig] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.clock = clock
        self.on_lineup_change = on_lineup_change
        self.comparisons = ComparisonStore(store)
        self._decisions = Decisions(
            store,
            config,
            self.comparisons,
            dispatcher=dispatcher,
            on_lineup_change=on_lineup_change,
        )
        self._split_test = SplitTest(
            store,
            self.comparisons,
            lambda m: split_since(self.store, self.comparisons, m, self.settings(m).split),  # type: ignore[arg-type]
            clock,
        )
        self._rollback_watch = RollbackWatch(
            store,
            self.comparisons,
            artefacts=ArtefactStore(config.artefact_dir, store=store),
            clock=clock,
            on_lineup_change=on_lineup_change,
        )
        self._settings = dict(settings or {})
        self._running: dict[str, threading.Lock] = {}  # one run of a model at a time
        self._running_guard = threading.Lock()
        self._unwatched: set[str] = set()  # models told their promotions are not watched

    # -- configuration ----------------------------------------------------------------------
    def settings(self, model: str) -> ComparisonConfig:
        if model in self._settings:
            return self._settings[model]
        return comparison_of(self.config.model(model))

    def _objective(self, model: str) -> tuple[Objective, MeasuredObjective]:
        """The model's configured objective, and what a test of it records it measures
        (compared by what it builds for the model's task, not by how it is spelt)."""
        row = self.store.get_model(model)
        cfg = self.config.model_or_default(model, row.task)
        made = make_objective(cfg.objective.name, task=row.task, **cfg.objective.params)
        return made, MeasuredObjective(cfg.objective.name, dict(cfg.objective.params), row.task)

    # -- the run ----------------------------------------------------------------------------
    def run(self, model: str, *, requested_by: str | None = None) -> list[ComparisonResult]:
        """One pass of the loop for ``model``; returns what happened per test.
        ``requested_by`` names who asked for the run (an operator's ``POST /compare``,
        ``tunewatch compare``): the events of a promotion or rollback it causes name them
        as ``requested_by``, the deciding actor staying ``tunewatch``; a scheduled run has
        none.

        Runs of one model take turns in this process: the scheduled run and a ``POST
        /compare`` at once both acted on one decided test (two challenger_better events,
        and the promoting test closed as "the champion changed"). Another process comparing
        the same model meanwhile (the CLI on another host) is met by the store: each test
        is settled once, and only the run that settled it (or, for a promotion's event,
        the first to record it) records anything."""
        self.store.get_model(model)  # an unknown name gets no lock
        with self._running_guard:
            running = self._running.setdefault(model, threading.Lock())
        with running:
            return self._run(model, requested_by)

    def _run(self, model: str, requested_by: str | None) -> list[ComparisonResult]:
        settings = self.settings(model)
        objective, measured = self._objective(model)
        if not (settings.enabled and settings.rollback.enabled):
            self._rollback_watch.release(model, "the rollback watch was switched off")
        elif not objective.has_per_request_loss:
            self._rollback_watch.release_without_loss(model, measured)
            if model not in self._unwatched:  # once a process, not every run
                self._unwatched.add(model)
                logger.warning(
                    "model=%s: objective %s has no per-request loss, so a promotion is not "
                    "watched for a rollback (rollback.enabled has no effect): roll back by "
                    "hand (tunewatch rollback)",
                    model,
                    objective.name,
                )
        if not settings.enabled:
            return []
        results: list[ComparisonResult] = []
        if settings.rollback.enabled and objective.has_per_request_loss:
            try:
                watch = self._rollback_watch.run(model, settings, objective, measured, requested_by)
            except (StatsError, ObjectiveError, InvalidValueError) as exc:  # others still look
                logger.warning("model=%s rollback watch cannot look: %s", model, exc)
                watch = None
            if watch is not None:
                results.append(watch)
        champion = self.store.champion(model)
        if champion is None:
            return results
        blocked = False
        if settings.split is not None and splitting(
            self.store, self.comparisons, model, settings.split, config=self.config
        ):
            check = check_split(
                self.comparisons,
                self.dispatcher,
                model,
                champion_version=champion.version,
                split=settings.split,
                since=split_start(self.store, self.comparisons, model, settings.split),
                now=self.clock(),
                alpha=settings.srm_alpha,
                min_requests=settings.srm_min_requests,
            )
            blocked = check is not None and check.mismatch
        results += self._compare(
            model,
            champion,
            (objective, measured),
            settings,
            blocked=blocked,
            requested_by=requested_by,
        )
        results += self._split_test.close_gone(model, settings.split)
        if settings.split is not None:
            try:
                split_result = self._split_test.run(
                    model, champion, objective, settings, measured=measured
                )
            except (StatsError, ObjectiveError, InvalidValueError) as exc:
                logger.warning("model=%s live-split test cannot look: %s", model, exc)
                split_result = None
            if split_result is not None:
                results += act_on_decided(
                    self._decisions,
                    self.comparisons,
                    model,
                    [split_result],
                    (),
                    settings,
                    blocked=blocked,
                    requested_by=requested_by,
                )
        if self.metrics is not None:
            self.metrics.evaluations.labels(model, "comparison").inc()
        return results

    def history(
        self, model: str, challenger: int, *, limit: int = 10_000
    ) -> list[ComparisonLookRow]:
        """Every look of ``challenger``'s tests, oldest first (how the evidence grew)."""
        self.store.get_version(model, challenger)
        return self.comparisons.history(model, challenger, limit=limit)

    def summary(self, model: str) -> list[ChallengerSummary]:
        """The tests of the current champion (and the newest rollback watch) with their
        latest look, the newest split check (:meth:`split_check`) and guardrails: an open
        test's as they stand now (the latency ratio, decided on a replay, not checked), a
        decided test's as recorded when it was acted on
        (:class:`RecordedGuardrails`; None when none was).

        A decided test's guardrails are not checked again: each check reads up to
        ``latency_samples`` latencies of two versions (every A/B page view paid it for
        every challenger the champion ever had), and what they say now is not what the
        decision saw."""
        return summarise(self.store, self.comparisons, self._decisions, model, self.settings(model))

    def split_check(self, model: str) -> SplitCheckRow | None:
        """The newest sample-ratio check of the model's configured live split (its salt
        and challenger), whatever comparison tests the champion has: none when no test
        fits the objective (PR AUC …) or just after a promotion, while the check may hold
        a mismatch that blocks promotions. ``None`` without a split or before its first
        check."""
        return latest_split_check(self.comparisons, model, self.settings(model).split)

    # -- paired / DeLong comparisons ------------------------------------------------------------
    def _compare(
        self,
        model: str,
        champion: VersionRow,
        objectives: tuple[Objective, MeasuredObjective],
        settings: ComparisonConfig,
        *,
        blocked: bool,
        requested_by: str | None,
    ) -> list[ComparisonResult]:
        objective, measured = objectives
        paired = objective.has_per_request_loss
        if not paired and (
            objective.name != "roc_auc" or self.store.get_model(model).task != "binary"
        ):
            # DeLong tests ROC AUC: deciding PR AUC or a recall at a precision floor on it
            # promoted a challenger whose recall at precision 0.9 fell from 0.41 to 0.03.
            logger.warning(
                "model=%s objective %s has no per-request loss and is not a binary model's "
                "roc_auc: no comparison method fits, challengers are not compared",
                model,
                objective.name,
            )
            return []
        kind: Literal["paired", "delong"] = "paired" if paired else "delong"
        held = self._rollback_watch.held(model)  # the previous champion, watched
        # The live split's challenger never shadows while it splits (the runtime routes its
        # units to it alone): a paired test of it would get no pair, yet take a share of
        # alpha from the challengers that do. The split test compares it.
        split = settings.split
        splits = (
            split.challenger
            if split is not None
            and splitting(self.store, self.comparisons, model, split, config=self.config)
            else None
        )
        staged = self.store.list_versions(model, stage="shadow")
        shadow = {v.version: v for v in staged if v.version not in held and v.version != splits}
        # a replaced champion's tests are not read below: close those whose challenger left
        results = close_left_shadow(
            self.comparisons, model, champion.version, {v.version for v in staged}
        )
        # a test of another objective closed (and its successor still to start) goes on too
        existing, by_objective = pair_tests(
            self.comparisons, model, champion.version, kind, measured
        )
        results += by_objective
        k = max(len((set(shadow) | set(existing)) - {splits}), 1)
        correction = settings.correction if paired else "bonferroni"
        tests = dict(existing)

        def follow(closed: ComparisonTestRow) -> ComparisonTestRow:
            """The test that follows ``closed`` (closed for a change of objective)."""
            state = new_state(
                kind, settings, objective, k, closed.challenger_version, measures=measured
            )
            since = successor_since(self.comparisons, closed)
            if since is not None:
                state[OBJECTIVE_SINCE] = since
            test, _ = self.comparisons.get_or_create_test(
                model=model,
                kind=kind,
                champion_version=champion.version,
                challenger_version=closed.challenger_version,
                correction=correction,
                state=state,
                promotion_id=closed.id,
            )
            return test

        for version in sorted(set(shadow) - set(existing)):
            state = new_state(kind, settings, objective, k, version, measures=measured)
            tests[version], _ = self.comparisons.get_or_create_test(
                model=model,
                kind=kind,
                champion_version=champion.version,
                challenger_version=version,
                correction=correction,
                state=state,
            )
        pending: dict[int, Pending] = {}
        p_values: dict[int, float] = {}
        for version, test in sorted(tests.items()):
            if test.status == "open" and version not in shadow:
                closed = self.comparisons.finish_test(
                    test.id, status="closed", outcome={"reason": LEFT_SHADOW}
                )
                results.append(make_result(closed, None, 0, "closed"))
                continue
            if test.status == "closed" and version in shadow and _left_shadow(test):
                # Back in shadow: the test goes on where it stopped (always valid, and
                # its time out of shadow added no pair). Closed for good, the challenger
                # was never compared with this champion again.
                reopened = self.comparisons.reopen_test(test.id, reason=LEFT_SHADOW)
                test = tests[version] = reopened or self.comparisons.get_test(test.id)
            test = tests[version] = measuring(
                self.comparisons,
                test,
                measured,
                kind,
                results,
                follow if version in shadow else None,
            )
            if changed_objective(test):
                continue  # its evidence is of another objective: no p-value of the family
            last = self.comparisons.latest_look(test.id)
            p_values[version] = last.p_value if last is not None else 1.0
            if test.status != "open":
                continue
            labelled_from = pairable_since(champion, shadow[version], test)
            try:
                if kind == "paired":
                    update = paired_update(
                        self.comparisons,
                        self.store,
                        self.clock(),
                        model,
                        champion,
                        test,
                        objective,
                        settings,
                        labelled_from,
                    )
                else:
                    update = delong_update(
                        self.comparisons,
                        self.clock(),
                        model,
                        champion,
                        test,
                        settings,
                        k,
                        labelled_from,
                    )
            except (Incomparable, EvidencePurged) as exc:
                logger.warning(
                    "model=%s version=%d champion=%d test=%d (%s) closed: %s",
                    model,
                    version,
                    champion.version,
                    test.id,
                    test.kind,
                    exc,
                )
                closed = self.comparisons.finish_test(
                    test.id, status="closed", outcome={"action": "closed", "reason": str(exc)}
                )
                results.append(make_result(closed, None, 0, "closed", (str(exc),)))
                continue
            except (StatsError, ObjectiveError) as exc:
                logger.warning(
                    "model=%s version=%d champion=%d test=%d (%s) cannot look: %s",
                    model,
                    version,
                    champion.version,
                    test.id,
                    test.kind,
                    exc,
                )
                results.append(make_result(test, None, 0, "none", (str(exc),)))
                continue
            if update is None:
                results.append(make_result(test, None, 0, "none"))
                continue
            pending[version] = (test, *update)
            p_values[version] = update[1].p_value
        results += record_family(
            self.comparisons,
            model,
            champion.version,
            kind,
            settings,
            correction=correction,
            k=k,
            pending=pending,
            p_values=p_values,
        )
        # Act on decided tests (new ones, and ones whose action did not happen yet).
        return act_on_decided(
            self._decisions,
            self.comparisons,
            model,
            results,
            tests.values(),
            settings,
            blocked=blocked,
            requested_by=requested_by,
        )

    # -- acting on decisions --------------------------------------------------------------------

    def guardrails(
        self, model: str, champion: VersionRow, challenger: int, settings: ComparisonConfig
    ) -> CheckedGuardrails:
        """The serving guardrails of ``challenger`` against ``champion`` as recorded now."""
        return self._decisions.guardrails(model, champion, challenger, settings)


def _left_shadow(test: ComparisonTestRow) -> bool:
    """Whether ``test`` was closed because its challenger left shadow."""
    return test.outcome is not None and test.outcome.get("reason") == LEFT_SHADOW
