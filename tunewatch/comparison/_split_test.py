"""The live split's own test: unpaired, always valid, on the objective's per-request
losses of each arm (requests the champion answered vs requests the split challenger
answered alone). Its decision acts like a paired test's (guardrails, governance)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import numpy as np

from monitor.objectives import Objective
from shadow.stats import TwoSampleSequentialTest
from tunewatch._errors import ConflictError
from tunewatch.comparison._config import ComparisonConfig
from tunewatch.comparison._results import ComparisonResult, make_result
from tunewatch.comparison._watch import watch_values
from tunewatch.store import Store, VersionRow
from tunewatch.store._comparisons import ComparisonStore

logger = logging.getLogger(__name__)


class SplitTest:
    def __init__(
        self, store: Store, comparisons: ComparisonStore, since: Callable[[str], datetime | None]
    ) -> None:
        self.store = store
        self.comparisons = comparisons
        self.since = since

    def run(
        self, model: str, champion: VersionRow, objective: Objective, settings: ComparisonConfig
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
        fresh = TwoSampleSequentialTest(
            alpha=settings.alpha,
            method=settings.method,
            planned_n=settings.planned_n,
            min_n=settings.min_n,
        )
        test, _ = self.comparisons.get_or_create_test(
            model=model,
            kind="split",
            champion_version=champion.version,
            challenger_version=split.challenger,
            correction=None,
            state=fresh.to_dict(),
        )
        if test.status != "open":
            return None
        since = self.since(model)
        arms = [
            self.comparisons.read_labelled(
                model=model,
                answered_by=champion.version,
                received_from=since,
                unconsumed_by=test.id,
                limit=settings.max_batch,
            ),
            self.comparisons.read_labelled(
                model=model,
                answered_by=split.challenger,
                roles=("challenger",),
                alone=True,
                received_from=since,
                unconsumed_by=test.id,
                limit=settings.max_batch,
            ),
        ]
        if arms[0].n_rows == 0 and arms[1].n_rows == 0:
            unscored = [*arms[0].request_ids, *arms[1].request_ids]
            self.comparisons.consume_unscored(test, unscored)  # not read again
            return make_result(test, None, 0, "none")
        losses = [
            np.asarray(objective.per_request_loss(a.labels, a.answer), dtype=np.float64)
            if a.n_rows
            else None
            for a in arms
        ]
        sequential = TwoSampleSequentialTest.from_dict(test.state)
        look = sequential.update(champion=losses[0], challenger=losses[1])
        consumed = [*arms[0].request_ids, *arms[1].request_ids]
        try:
            saved = self.comparisons.record_look(
                test,
                consumed=consumed,
                look=watch_values(look, settings.method),
                state={**sequential.to_dict(), "history": []},
                status="open" if look.decision == "continue" else "decided",
            )
        except ConflictError as exc:
            logger.warning("model=%s %s", model, exc.message)
            return None
        return make_result(saved, self.comparisons.latest_look(saved.id), len(consumed), "none")
