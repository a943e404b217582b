"""One look of a paired or DeLong test: the state a new test starts from, and the
labelled requests and statistics of its next look (see :mod:`._runner`).

A test's state names the objective it measures (:class:`MeasuredObjective`): its sums
are of that objective's per-request losses. Kept across a change of the model's
objective, log-loss differences were added to accuracy differences and a challenger
worse on accuracy was promoted. A test that measures another objective is closed
(:func:`objective_change`); the test that follows it reads only the requests received
after the newest one it consumed (:func:`successor_since`). A test stored before the
objective was recorded adopts the configured one: what it measured is unknown, and
closing every such test at the upgrade would throw away every running comparison."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, overload

import numpy as np

from monitor.objectives import (
    Objective,
    positive_proba,
)
from shadow.stats import (
    DELONG_MIN_PER_CLASS,
    GroupSequentialDeLong,
    GroupSequentialLook,
    PairedSequentialTest,
    paired_differences,
)
from tunewatch._errors import ConflictError
from tunewatch.comparison._config import ComparisonConfig
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
    make_result,
    needs_action,
    paired_values,
    stateless,
)
from tunewatch.store import Store, VersionRow
from tunewatch.store._comparisons import (
    ComparisonStore,
    ComparisonTestRow,
    LabelledBatch,
    LookValues,
    advanced,
    read_start,
)

logger = logging.getLogger(__name__)

#: The name of a paired or DeLong test's read by label arrival (its watermark's key in
#: the state).
READ = "labelled"
#: The names of its two watermarks with ``label_maturity_s``: the receipt of the newest
#: matured request read, and the arrival of the newest label read of a matured request
#: (see :func:`pair_bounds`). A test stored before they were kept has neither and reads
#: from its start, once.
MATURED = "matured"
MATURED_LABELS = "matured_labels"


def successor_since(comparisons: ComparisonStore, test: ComparisonTestRow) -> str | None:
    """The :data:`OBJECTIVE_SINCE` of a test that follows ``test`` (closed for a change of
    objective): just after the newest request ``test`` consumed, or where ``test`` itself
    read from when it consumed none. ISO time; ``None``: no bound."""
    newest = comparisons.newest_consumed(test)
    if newest is None:
        value = test.state.get(OBJECTIVE_SINCE)
        return None if value is None else str(value)
    return (newest + timedelta(microseconds=1)).isoformat()


@overload
def reads_from(state: Mapping[str, Any], since: datetime) -> datetime: ...
@overload
def reads_from(state: Mapping[str, Any], since: datetime | None) -> datetime | None: ...
def reads_from(state: Mapping[str, Any], since: datetime | None) -> datetime | None:
    """The earliest ``received_at`` a test with ``state`` reads: ``since``, or later after
    a change of objective (:data:`OBJECTIVE_SINCE`)."""
    value = state.get(OBJECTIVE_SINCE)
    if value is None:
        return since
    bound = datetime.fromisoformat(str(value))
    return bound if since is None else max(since, bound)


def measured_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``state`` about the objective, which every look carries over."""
    return {k: state[k] for k in (OBJECTIVE, OBJECTIVE_SINCE) if k in state}


#: What the reason a test was closed for a change of objective goes on to say.
_FOLLOWED = (
    "its evidence measured the objective it had, and a new test reads the requests "
    "received after the newest it consumed"
)


#: Why a test whose challenger left shadow was closed; it opens again on its return.
LEFT_SHADOW = "challenger left shadow"


def close_left_shadow(
    comparisons: ComparisonStore, model: str, champion: int, in_shadow: set[int]
) -> list[ComparisonResult]:
    """Close, as :data:`LEFT_SHADOW`, the open paired and DeLong tests of ``model``'s
    other champions whose challenger is no longer in shadow (``in_shadow``: the model's
    versions in that stage); what was closed. The runner closes the tests of
    ``champion`` itself as it reads them; read only through the champion, a test of a
    replaced one stood open for ever when its challenger was retired or promoted before
    the next run (the dashboard drew it running). Closed so, it opens again should its
    champion return and its challenger shadow it again.

    One whose challenger still shadows is left open: it goes on if its champion is
    restored (a rollback, a promotion back), as :func:`pairable_since` allows. A rollback
    watch's test is of another kind and never closed here. Tests another run settled
    first are left to it."""
    results: list[ComparisonResult] = []
    for kind in ("paired", "delong"):
        for test in comparisons.list_tests(model, kind=kind, status="open"):
            if test.champion_version == champion or test.challenger_version in in_shadow:
                continue
            closed = comparisons.settle_test(
                test.id, status="closed", outcome={"reason": LEFT_SHADOW}
            )
            if closed is None:  # another run settled it first
                continue
            logger.info(
                "model=%s version=%d champion=%d test=%d (%s) closed: %s (the champion "
                "changed since)",
                model,
                test.challenger_version,
                test.champion_version,
                test.id,
                test.kind,
                LEFT_SHADOW,
            )
            results.append(make_result(closed, None, 0, "closed"))
    return results


def pair_tests(
    comparisons: ComparisonStore, model: str, champion: int, kind: str, objective: MeasuredObjective
) -> tuple[dict[int, ComparisonTestRow], list[ComparisonResult]]:
    """Each challenger's paired or DeLong test of ``champion`` to go on with, and what was
    closed. A test of ``kind`` goes on, the newest; so does the newest of either kind that
    was closed for a change of objective, for a test of ``kind`` to follow it (see
    :func:`measuring`). A test of the other kind still open or to act on measures another
    objective (a DeLong test ROC AUC, a paired test a per-request loss): it is closed,
    where it stood open for ever before."""
    of_pair: dict[int, list[ComparisonTestRow]] = {}
    for test in comparisons.list_tests(model, champion_version=champion):
        if test.kind in ("paired", "delong"):
            of_pair.setdefault(test.challenger_version, []).append(test)
    tests: dict[int, ComparisonTestRow] = {}
    results: list[ComparisonResult] = []
    for version, pair in of_pair.items():
        for i, test in enumerate(pair):
            why = objective_change(test, objective, kind) if test.kind != kind else None
            if why is not None and _live(test):
                pair[i] = _close(comparisons, test, objective, why, results)
        same = [t for t in pair if t.kind == kind]
        if changed_objective(pair[-1]):
            tests[version] = pair[-1]
        elif same:
            tests[version] = same[-1]
    return tests, results


def measuring(
    comparisons: ComparisonStore,
    test: ComparisonTestRow,
    objective: MeasuredObjective,
    kind: str,
    results: list[ComparisonResult],
    follow: Callable[[ComparisonTestRow], ComparisonTestRow] | None,
) -> ComparisonTestRow:
    """The test to go on with in place of ``test``. Still open or to act on, ``test``
    records ``objective`` when it records none, or is closed when it measures another
    (added to ``results``). A test closed so is followed by the one ``follow`` starts
    (``None``: none now, the challenger is not in shadow)."""
    if _live(test):
        why = objective_change(test, objective, kind)
        if why is None:
            return _adopt(comparisons, test, objective)
        test = _close(comparisons, test, objective, why, results)
    if changed_objective(test) and follow is not None:
        return follow(test)
    return test


def _live(test: ComparisonTestRow) -> bool:
    return test.status == "open" or (test.status == "decided" and needs_action(test))


def _close(
    comparisons: ComparisonStore,
    test: ComparisonTestRow,
    objective: MeasuredObjective,
    why: str,
    results: list[ComparisonResult],
) -> ComparisonTestRow:
    why = f"{why}: {_FOLLOWED}"
    closed = comparisons.settle_test(
        test.id, status="closed", outcome=closing_outcome(test, objective, why)
    )
    if closed is None:  # another run settled it first (closed it so too, or acted on it)
        return comparisons.get_test(test.id)
    logger.info(
        "model=%s version=%d champion=%d test=%d (%s) closed: %s",
        test.model,
        test.challenger_version,
        test.champion_version,
        test.id,
        test.kind,
        why,
    )
    results.append(make_result(closed, None, 0, "closed", (why,)))
    return closed


def _adopt(
    comparisons: ComparisonStore, test: ComparisonTestRow, objective: MeasuredObjective
) -> ComparisonTestRow:
    state = adopting(test.state, objective)
    if state is None:
        return test
    try:
        return comparisons.write_state(test, state)
    except ConflictError:  # another run looked (and recorded it) first
        return comparisons.get_test(test.id)


class Incomparable(Exception):
    """The two versions' outputs cannot be compared at all (e.g. different classes)."""


class EvidencePurged(Exception):
    """Requests a DeLong test consumed are no longer stored: its earlier looks cannot be
    replayed, so it can never look again. The retention purge keeps an open test's; a
    store purged by an older version, a test closed while its challenger was out of
    shadow (reopened on its return), or a look whose requests a purge batch deleted
    between its read and its record may miss some."""


#: How long before the later of two versions' registrations (or of the champion's taking
#: its role) the label of a request carrying both their outputs may have arrived: a
#: label's ``received_at`` is stamped by the replica that takes it, ``created_at`` and
#: ``stage_changed_at`` by the registering or promoting process's clock (a worker's, the
#: CLI's), which may run minutes apart.
CLOCK_MARGIN = timedelta(hours=1)


def pairable_since(
    champion: VersionRow, challenger: VersionRow, test: ComparisonTestRow
) -> datetime:
    """The earliest label arrival (the label's ``received_at``) of a request ``champion``
    answered as champion and ``challenger`` scored, in ``test`` of the two: neither scores
    a request posted before it is registered, the champion answers none before it took
    its role (``stage_changed_at``: its promotion, its restoration by a rollback, or its
    registration as champion), and a request's label arrives after it was posted. A look
    reads the labels from there, not the model's whole labelled history: a read went from
    20 ms to 480 ms as 320k requests answered before the challenger existed piled up on
    SQLite, and a challenger promoted after 31 days in shadow had its tests walk every
    label of those days (443k on PostgreSQL, 6.2 s) each run, to find none.

    A test begun before the champion's current term (it was replaced, then restored by a
    rollback or promoted again) goes on with that term's pairs, whose labels may have
    arrived after its last look: it reads from its own start (``test.created_at``), which
    the run that made it stamped within minutes of that term's start.

    Not the request's ``received_at``: a mirror record's is its ``scored_at``, which may
    lie hours before the challenger existed though the challenger scored the record when
    it was posted, and such backfills were never fed to any test. A record's label
    arrives after the record was posted, whatever its ``scored_at``; one naming
    ``champion`` posted while it still shadowed here (a stack serving it early) is not
    read when its label arrived before the promotion, less the margin."""
    took_role = min(champion.stage_changed_at, test.created_at)
    latest = max(champion.created_at, challenger.created_at, took_role)
    return latest - CLOCK_MARGIN


@dataclass(frozen=True, slots=True)
class PairBounds:
    """The bounds of a paired or DeLong test's read: ``read_labelled``'s ``order_from``,
    ``received_from`` and ``arrived_from``."""

    order_from: datetime | None
    received_from: datetime | None
    arrived_from: datetime | None = None


def pair_bounds(
    state: Mapping[str, Any], labelled_from: datetime, matured_before: datetime | None
) -> PairBounds:
    """The bounds of a paired or DeLong test's read with ``state``, of labels that arrived
    from ``labelled_from`` (:func:`pairable_since`) on. Read by label arrival, from the
    test's watermark (less its margin) or from ``labelled_from``, whichever is later: the
    labels' time index walks the labels since, each request found by key. The requests'
    ``received_at`` bounds the read only after a change of objective
    (:data:`OBJECTIVE_SINCE`).

    Read by request receipt (``label_maturity_s``), the read keeps ``labelled_from`` as a
    bound on the requests' ``received_at`` (a backfill stamped before it is not read
    there) and takes two parts: the requests newly matured, from the receipt watermark
    (:data:`MATURED`, less its margin), with labels of any arrival; and the matured
    requests whose label arrived since the label-arrival watermark (:data:`MATURED_LABELS`,
    less its margin; from ``labelled_from`` without one), whenever they were received. A
    receipt watermark alone never read a label that arrived after newer requests were
    consumed (a skewed sample); no watermark walked every matured request since the
    test began at each look (3.1 s a look at 100k consumed, quadratic over a test)."""
    if matured_before is not None:
        arrived = read_start(state, MATURED_LABELS, "label")
        return PairBounds(
            read_start(state, MATURED, "request", late_labels=True),
            reads_from(state, labelled_from),
            labelled_from if arrived is None else max(arrived, labelled_from),
        )
    start = read_start(state, READ, "label")
    return PairBounds(
        labelled_from if start is None else max(start, labelled_from), reads_from(state, None)
    )


def pair_marks(batch: LabelledBatch, matured_before: datetime | None) -> dict[str, Any]:
    """The watermarks ``batch``, read within :func:`pair_bounds`, moves on."""
    if matured_before is not None:
        return {MATURED: batch.last, MATURED_LABELS: batch.arrived}
    return {READ: batch.last}


def new_state(
    kind: str,
    settings: ComparisonConfig,
    objective: Objective,
    k: int,
    version: int,
    *,
    measures: MeasuredObjective | None = None,
) -> dict[str, Any]:
    """The state a test of ``kind`` starts from, recording the objective it ``measures``."""
    recorded = {} if measures is None else {OBJECTIVE: measures.as_state()}
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
        return {**stateless(test.to_dict()), **recorded}
    return {
        "format_version": 1,
        "kind": "group_sequential_delong",
        "alpha": settings.alpha / k,
        "planned_looks": settings.delong_looks,
        "look_every": settings.delong_look_every,
        **recorded,
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
    labelled_from: datetime,
) -> tuple[list[str], LookValues, dict[str, Any]] | None:
    matured = settings.matured_before(now)
    bounds = pair_bounds(test.state, labelled_from, matured)
    batch = comparisons.read_labelled(
        model=model,
        answered_by=champion.version,
        paired_with=test.challenger_version,
        unconsumed_by=test.id,
        limit=settings.max_batch,
        matured_before=matured,
        received_from=bounds.received_from,
        order_from=bounds.order_from,
        arrived_from=bounds.arrived_from,
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
        comparisons.consume_unscored(test, batch.request_ids, pair_marks(batch, matured))
        return None
    d = paired_differences(objective, batch.labels, batch.answer, batch.paired)
    # the request is the unit: a batch request's rows are one observation, not many
    look = sequential.update(d, requests=batch.rows)
    values = paired_values(look, sequential.method, test.correction)
    state = advanced(
        {**stateless(sequential.to_dict()), **measured_keys(test.state)},
        test.state,
        pair_marks(batch, matured),
    )
    return list(batch.request_ids), values, state


def delong_update(
    comparisons: ComparisonStore,
    now: datetime,
    model: str,
    champion: VersionRow,
    test: ComparisonTestRow,
    settings: ComparisonConfig,
    k: int,
    labelled_from: datetime,
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
    # A look replays the earlier ones and stores n = test.n + its new requests: it must
    # read every request they consumed. Fewer are stored only when some were purged (a
    # look on the rest stored n = 400 for 300 requests, and none at all never looked
    # again); more, when another run looked since ``test`` was read (its record of this
    # look would be refused).
    if len(seen.request_ids) > test.n:
        return None
    if len(seen.request_ids) < test.n:
        missing = test.n - len(seen.request_ids)
        raise EvidencePurged(
            f"{missing} of the {test.n} requests its {test.looks} looks consumed are no "
            "longer stored (deleted by the retention purge, `recording.retention_days`): "
            "its earlier looks cannot be replayed, and a look on the rest would not be the "
            "evidence it recorded"
        )
    limit = wanted
    matured = settings.matured_before(now)
    bounds = pair_bounds(state, labelled_from, matured)
    while True:
        fresh = comparisons.read_labelled(
            model=model,
            answered_by=champion.version,
            paired_with=test.challenger_version,
            unconsumed_by=test.id,
            limit=limit,
            received_from=bounds.received_from,
            matured_before=matured,
            order_from=bounds.order_from,
            arrived_from=bounds.arrived_from,
        )
        if len(fresh.request_ids) < wanted:
            return None  # the next planned look is not due yet
        labels = np.concatenate([seen.labels, fresh.labels])
        # the request is the unit: a batch request's rows are one observation, not many
        clusters = np.concatenate([seen.rows, fresh.rows + len(seen.request_ids)])
        holding = (np.unique(clusters[labels == 1]).size, np.unique(clusters[labels != 1]).size)
        if min(holding) >= DELONG_MIN_PER_CLASS:
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
            clusters=seen.rows[mask],
        )
    result: GroupSequentialLook = gsd.look(
        labels,
        positive_proba(_rows(seen.answer, fresh.answer)),
        positive_proba(_rows(seen.paired, fresh.paired)),
        clusters=clusters,
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
        advanced({**state, "alpha": alpha}, state, pair_marks(fresh, matured)),
    )


def _rows(seen: np.ndarray, fresh: np.ndarray) -> np.ndarray:
    """Stack output rows; an empty read has no reliable column count, so it is skipped."""
    return fresh if seen.shape[0] == 0 else np.concatenate([seen, fresh])
