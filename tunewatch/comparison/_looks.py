"""One look of a paired or DeLong test: the state a new test starts from, and the
labelled requests and statistics of its next look (see :mod:`._runner`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np

from monitor.objectives import Objective, positive_proba
from shadow.stats import (
    DELONG_MIN_PER_CLASS,
    GroupSequentialDeLong,
    GroupSequentialLook,
    PairedSequentialTest,
    paired_differences,
)
from tunewatch.comparison._config import ComparisonConfig
from tunewatch.comparison._results import paired_values, stateless
from tunewatch.store import Store, VersionRow
from tunewatch.store._comparisons import (
    ComparisonStore,
    ComparisonTestRow,
    LookValues,
    advanced,
    read_start,
)

#: The name of a paired or DeLong test's one read (its watermark's key in the state).
READ = "labelled"


class Incomparable(Exception):
    """The two versions' outputs cannot be compared at all (e.g. different classes)."""


#: How long before the later of two versions' registrations a request may have been
#: received and still carry both their outputs: ``received_at`` is stamped after the
#: lineup is read, by the serving replica's clock, ``created_at`` by the registering
#: process's (a worker's, the CLI's), which may run minutes apart.
CLOCK_MARGIN = timedelta(hours=1)


def pairable_since(champion: VersionRow, challenger: VersionRow) -> datetime:
    """The earliest ``received_at`` of a request ``champion`` answered and ``challenger``
    scored: neither scores before it is registered. A look reads from there, not the
    model's whole labelled history (a read went from 20 ms to 480 ms as 320k requests
    answered before the challenger existed piled up on SQLite)."""
    return max(champion.created_at, challenger.created_at) - CLOCK_MARGIN


def new_state(
    kind: str, settings: ComparisonConfig, objective: Objective, k: int, version: int
) -> dict[str, Any]:
    if kind == "paired":
        test = PairedSequentialTest(
            alpha=settings.alpha / k,
            method=settings.method,
            planned_n=settings.planned_n,
            min_n=settings.min_n,
            mixing_sd=settings.mixing_sd,
            loss_range=objective.loss_range,
            bootstrap_resamples=settings.bootstrap_resamples,
            seed=settings.seed + version,
        )
        return stateless(test.to_dict())
    return {
        "format_version": 1,
        "kind": "group_sequential_delong",
        "alpha": settings.alpha / k,
        "planned_looks": settings.delong_looks,
        "look_every": settings.delong_look_every,
    }


def paired_update(
    comparisons: ComparisonStore,
    store: Store,
    now: datetime,
    model: str,
    champion: VersionRow,
    test: ComparisonTestRow,
    objective: Objective,
    settings: ComparisonConfig,
    since: datetime,
) -> tuple[list[str], LookValues, dict[str, Any]] | None:
    matured = settings.matured_before(now)
    batch = comparisons.read_labelled(
        model=model,
        answered_by=champion.version,
        paired_with=test.challenger_version,
        received_from=since,
        unconsumed_by=test.id,
        limit=settings.max_batch,
        matured_before=matured,
        order_from=read_start(test.state, READ, "label" if matured is None else "request"),
        valid_rows=objective.valid_rows,
    )
    if not batch.request_ids:
        return None
    sequential = PairedSequentialTest.from_dict(test.state)
    assert batch.paired is not None
    if batch.n_rows == 0:
        k, k2 = batch.answer.shape[1], batch.paired.shape[1]
        if k != k2 and store.get_model(model).task == "multiclass":
            raise Incomparable(f"the champion answers {k} classes, the challenger {k2}")
        # not read again
        comparisons.consume_unscored(test, batch.request_ids, {READ: batch.last})
        return None
    d = paired_differences(objective, batch.labels, batch.answer, batch.paired)
    # the request is the unit: a batch request's rows are one observation, not many
    look = sequential.update(d, requests=batch.rows)
    values = paired_values(look, sequential.method, test.correction)
    state = advanced(stateless(sequential.to_dict()), test.state, {READ: batch.last})
    return list(batch.request_ids), values, state


def delong_update(
    comparisons: ComparisonStore,
    now: datetime,
    model: str,
    champion: VersionRow,
    test: ComparisonTestRow,
    settings: ComparisonConfig,
    k: int,
    since: datetime,
) -> tuple[list[str], LookValues, dict[str, Any]] | None:
    state = test.state
    every = int(state["look_every"])
    # a look that waited for a second class took more rows: the next still needs
    # `look_every` new ones (never a count of zero or less)
    wanted = max(every * (test.looks + 1) - test.n, every)
    seen = comparisons.read_labelled(  # every row the test consumed: no bound
        model=model,
        answered_by=champion.version,
        paired_with=test.challenger_version,
        consumed_by=test.id,
    )
    limit = wanted
    matured = settings.matured_before(now)
    order_from = read_start(state, READ, "label" if matured is None else "request")
    while True:
        fresh = comparisons.read_labelled(
            model=model,
            answered_by=champion.version,
            paired_with=test.challenger_version,
            received_from=since,
            unconsumed_by=test.id,
            limit=limit,
            matured_before=matured,
            order_from=order_from,
        )
        if len(fresh.request_ids) < wanted:
            return None  # the next planned look is not due yet
        labels = np.concatenate([seen.labels, fresh.labels])
        positives = int(np.count_nonzero(labels == 1))
        if min(positives, labels.size - positives) >= DELONG_MIN_PER_CLASS:
            break
        if len(fresh.request_ids) < limit:
            return None  # too few of a class so far: the look waits for more
        limit *= 2  # a look needs both classes: take it later, on more requests
    # At the Bonferroni share of the challengers compared now (k), never above the one
    # the test had: a test started alone kept alpha while later challengers took alpha/k
    # each, and v2 was promoted at p = 0.0375 of a family of three. Its earlier looks are
    # replayed at the lower alpha too (higher bounds: none of them decides there), and any
    # look's nominal alpha is at most alpha/k, so a decision's adjusted p is <= alpha.
    alpha = min(float(state["alpha"]), settings.alpha / k)
    gsd = GroupSequentialDeLong(alpha=alpha, planned_looks=int(state["planned_looks"]))
    assert seen.paired is not None and fresh.paired is not None
    looks_of_rows = seen.looks[seen.rows] if seen.looks is not None else np.empty(0, int)
    for j in range(1, test.looks + 1):  # replay the looks already taken
        mask = looks_of_rows <= j
        gsd.look(
            seen.labels[mask],
            positive_proba(seen.answer[mask]),
            positive_proba(seen.paired[mask]),
        )
    result: GroupSequentialLook = gsd.look(
        np.concatenate([seen.labels, fresh.labels]),
        positive_proba(_rows(seen.answer, fresh.answer)),
        positive_proba(_rows(seen.paired, fresh.paired)),
    )
    values = LookValues(
        method="group_sequential_delong",
        n=test.n + len(fresh.request_ids),
        estimate=result.estimate,
        ci_low=None,
        ci_high=None,
        p_value=result.p_value,
        adjusted_p_value=min(1.0, result.p_value * k),
        decision=result.decision,
        correction="bonferroni",
        family_size=k,
    )
    return (
        list(fresh.request_ids),
        values,
        advanced({**state, "alpha": alpha}, state, {READ: fresh.last}),
    )


def _rows(seen: np.ndarray, fresh: np.ndarray) -> np.ndarray:
    """Stack output rows; an empty read has no reliable column count, so it is skipped."""
    return fresh if seen.shape[0] == 0 else np.concatenate([seen, fresh])
