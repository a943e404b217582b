"""Paired comparison of a challenger against the champion on the same requests.

The daemon feeds per-row loss differences ``d = loss_challenger - loss_champion``
(negative = challenger better) as labels join, with the request each row came in, and may
look after every batch. The request is the unit: a batch request's rows share its traffic
segment and its client, so they are not independent (counted as observations, five
100-row requests from shifted segments met a burn-in of 500, and an exchangeable
challenger was called better in 18 % of seeded runs). The estimate is the mean difference
per row, ``sum d / rows``, with the delta-method (cluster-robust) variance over the ``K``
requests, as the live split's test has over its units (see
:func:`~shadow.stats._two_sample.ratio_variance`); ``n`` and ``planned_n`` count
requests, and ``min_n`` Kish's effective number of requests, ``(sum rows)**2 / sum
rows**2``: counted as requests, one 4,000-row request among one-row ones met the burn-in
while it held most of the rows, and an equal challenger was decided on in 10-23 % of
seeded runs. With one row per request it is the plain mean and ``s^2 / n``, and the
effective requests are the requests.

Decisions come from an always-valid test (confidence sequence or mSPRT, see
:mod:`shadow.stats.always_valid`); a paired t-test (``K - 1`` degrees of freedom) and a
bootstrap interval are reported beside it for people used to them, and are valid only at
one planned horizon.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from monitor.objectives import MAX_LOSS, Objective, ObjectiveError
from shadow.stats._bootstrap import PoissonBootstrap
from shadow.stats._errors import StatsError
from shadow.stats._look import (
    Decision,
    Look,
    LookArrays,
    RunningInference,
    check_decision,
    decode_bound,
    encode_bound,
    evaluate_estimate,
    sample_variance,
    skewness,
)
from shadow.stats._state import FORMAT_VERSION, check_state
from shadow.stats._two_sample import (
    UnitUpdate,
    ratio_third_cumulant,
    ratio_variance,
    unit_sums,
)
from shadow.stats._validation import check_positive_int, check_sample
from shadow.stats.always_valid import MethodName, make_method

logger = logging.getLogger(__name__)

_KIND = "paired_sequential_test"


def paired_differences(
    objective: Objective,
    y_true: np.ndarray,
    champion_pred: np.ndarray,
    challenger_pred: np.ndarray,
) -> np.ndarray:
    """``loss_challenger - loss_champion`` per row for an objective that decomposes, each
    loss held to ``MAX_LOSS`` (an infinite or NaN one counting as ``MAX_LOSS``): a row
    whose label both versions can be scored on, where one's answer is so far off that its
    loss passes the bound, counts that version worse by the most a row can, rather than
    overflowing the test's sums."""
    if not objective.has_per_request_loss:
        raise StatsError(
            f"objective {objective.name!r} has no per-request loss; compare it with "
            "GroupSequentialDeLong (ROC AUC) or another whole-sample method"
        )
    try:
        challenger = objective.per_request_loss(y_true, challenger_pred)
        champion = objective.per_request_loss(y_true, champion_pred)
    except ObjectiveError as exc:
        raise StatsError(f"cannot score the paired predictions: {exc}") from exc
    return np.asarray(_bounded(challenger) - _bounded(champion), dtype=np.float64)


def _bounded(loss: np.ndarray) -> np.ndarray:
    held = np.nan_to_num(np.asarray(loss, dtype=np.float64), nan=MAX_LOSS, posinf=MAX_LOSS)
    return np.clip(held, -MAX_LOSS, MAX_LOSS)


#: Paired requests before a look may decide, however many rows each carries (effective
#: requests: a few batch requests that hold most of the rows count as few). The interval
#: plugs in the sample variance, so its guarantee is asymptotic; with skewed losses (log
#: loss hinging on rare confident mistakes) the variance of the first few hundred requests
#: is far too small, and a burn-in of 30 called a strictly worse challenger better in 22 %
#: of simulated runs (tests/shadow/test_stats_paired.py); 500 keeps that one under alpha.
#: Skewed losses need more: see :data:`SKEW_BURN_IN` and ``loss_range``.
DEFAULT_MIN_N = 500

#: A look also waits for ``n >= SKEW_BURN_IN * g**2``, ``g`` the sample skewness of the
#: differences (in the spirit of Cochran's ``n > 25 g**2`` rule for a normal mean, and
#: Kohavi et al.'s ``355 g**2`` for A/B tests; a sequential test looks many times, so it
#: needs more than Cochran's). With equal expected losses, the model that is rarely but
#: badly wrong was called better in 12 % of simulated runs under log loss, and 59 % under
#: a cost matrix whose missed positive costs 20 false alarms; 100 brought both under 2 %
#: (50 left the second at 10 %) while a symmetric or normal difference decides as soon as
#: before (tests/shadow/test_stats_paired.py).
SKEW_BURN_IN = 100.0


def effective_requests(count: ArrayLike, rows: ArrayLike, rows_sq: ArrayLike) -> np.ndarray:
    """Kish's effective number of requests, ``(sum rows)**2 / sum rows**2``, from the
    requests' count, their rows and their squared row counts (arrays of any shape): how
    many requests of equal size would weigh in the estimate ``sum d / rows`` as these do.
    It is ``count`` exactly where every request has one row (or all have one size), and
    less the more a few requests hold of the rows; 0 without rows."""
    k, m, mm = (np.asarray(v, dtype=np.float64) for v in (count, rows, rows_sq))
    kish = m * m / np.where(mm > 0, mm, 1.0)
    return np.asarray(np.where(m == k, k, np.where(mm > 0, kish, 0.0)))


#: The request sums the test keeps (see :class:`~shadow.stats._two_sample.UnitUpdate`):
#: requests, rows, sum, sum of squared row counts, of squared sums, of count * sum; then
#: counts cubed, sums cubed, count^2 * sum, count * sum^2 (the skewness rule). Six for a
#: test stored before the third moment was kept.
_REQUEST_SUMS = 10
_REQUEST_SUMS_WITHOUT_CUBES = 6


class PairedSequentialTest:
    """Always-valid paired test on the mean loss difference per row, with the request as
    the unit, updated batch by batch.

    State is the sufficient statistics (the ten request sums, and the rows' count, sum,
    sum of squares and of cubes, the layout every reader before requests were the unit
    reads), the running inference, an online bootstrap and the history of looks, so
    ``update`` costs ``O(batch)``. The bootstrap resamples requests, and its replicates
    are the ratio the estimate is: their differences' sum over their rows.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        method: MethodName = "confidence_sequence",
        planned_n: int = 1000,
        min_n: int = DEFAULT_MIN_N,
        mixing_sd: float | None = None,
        loss_range: float | None = None,
        bootstrap_resamples: int = 1000,
        seed: int = 0,
    ) -> None:
        if loss_range is not None and not (np.isfinite(loss_range) and loss_range >= 0):
            raise StatsError(f"`loss_range` must be finite and >= 0, got {loss_range!r}")
        self._method = make_method(method, alpha=alpha, planned_n=planned_n, mixing_sd=mixing_sd)
        self.method: MethodName = method
        self.mixing_sd = mixing_sd
        self.loss_range = None if loss_range is None else float(loss_range)
        self.min_n = check_positive_int(min_n, field="min_n", minimum=2)
        if bootstrap_resamples != 0:
            check_positive_int(bootstrap_resamples, field="bootstrap_resamples", minimum=2)
        self.bootstrap_resamples = bootstrap_resamples
        self.seed = seed
        self._bootstrap = (
            PoissonBootstrap(resamples=bootstrap_resamples, seed=seed)
            if bootstrap_resamples
            else None
        )
        # The rows' power sums (what a reader before requests were the unit reads).
        self._rows = 0
        self._total = 0.0
        self._total_sq = 0.0
        # None for a test stored before the third moment was kept: it goes on without the
        # skewness burn-in rather than guess.
        self._total_cube: float | None = 0.0
        # The request sums the inference reads (see ``_REQUEST_SUMS``).
        self._requests = np.zeros(_REQUEST_SUMS)
        self._running = RunningInference()
        self._history: list[Look] = []

    @property
    def alpha(self) -> float:
        return self._method.alpha

    @property
    def planned_n(self) -> int:
        return self._method.planned_n

    @property
    def n(self) -> int:
        """Requests so far (the unit)."""
        return int(self._requests[0])

    @property
    def rows(self) -> int:
        """Rows (loss differences) so far."""
        return self._rows

    @property
    def decision(self) -> Decision:
        return self._running.decision

    @property
    def evidence(self) -> int | None:
        """The sign of the estimate at the look that set the running p-value (``-1``:
        the challenger's losses were lower), ``None`` for a state stored before it was
        kept; see :func:`family_decision`."""
        return self._running.evidence

    @property
    def effective_n(self) -> float:
        """Kish's effective number of requests so far (see :func:`effective_requests`),
        what the burn-in (``min_n``) and the ``loss_range`` allowance count: ``n`` with one
        row per request."""
        count, rows, rows_sq = (self._requests[i] for i in (0, 1, 3))
        return float(effective_requests(count, rows, rows_sq))

    @staticmethod
    def effective_n_in(state: Mapping[str, Any]) -> float:
        """:attr:`effective_n` of a state from :meth:`to_dict`, read without rebuilding
        the test (its bootstrap included). A state without request sums, or whose request
        sums are older than its row sums, goes on one row per request (as
        :meth:`from_dict` reads it): its effective requests are its rows."""
        try:
            rows = int(state["n"])
            stored = state.get("units")
            if stored is not None:
                sums = np.asarray(stored, dtype=np.float64)
                if sums.ndim == 1 and sums.size >= _REQUEST_SUMS_WITHOUT_CUBES and sums[1] == rows:
                    return float(effective_requests(sums[0], sums[1], sums[3]))
        except (KeyError, TypeError, ValueError) as exc:
            raise StatsError(f"{_KIND} state is malformed: {exc!r}") from exc
        return float(rows)

    @staticmethod
    def evidence_in(state: Mapping[str, Any]) -> int | None:
        """:attr:`evidence` of a state from :meth:`to_dict`, read without rebuilding the
        test (its bootstrap included)."""
        try:
            return _evidence(state.get("evidence"))
        except ValueError as exc:
            raise StatsError(f"{_KIND} state is malformed: {exc}") from exc

    @property
    def history(self) -> tuple[Look, ...]:
        """Every look so far, oldest first (how the evidence grew)."""
        return tuple(self._history)

    def evaluate(
        self,
        n: np.ndarray,
        total: np.ndarray,
        total_sq: np.ndarray,
        total_cube: np.ndarray | None = None,
    ) -> LookArrays:
        """One look's inference from sufficient statistics of ``n`` requests of one row
        each, for arrays of any shape (simulations call it with experiment x look
        matrices); see :meth:`evaluate_requests`."""
        return self.evaluate_requests(unit_sums(n, total, total_sq, total_cube))

    def evaluate_requests(self, sums: tuple[ArrayLike, ...]) -> LookArrays:
        """One look's inference from the request sums (the ten of ``_REQUEST_SUMS``, or
        the first six: the skewness rule is then off), for arrays of any shape.

        The estimate is ``sum d / rows`` with the delta-method variance over the ``K``
        requests; where every request has one row, the plain mean and sample variance
        (the arithmetic of the test before requests were its unit, so that traffic looks
        as it did). A look decides once Kish's effective number of requests
        ``(sum rows)**2 / sum rows**2`` (``K`` with one row per request, fewer the more a
        few batch requests hold of the rows; see :func:`effective_requests`) reaches
        ``min_n``, and ``K >= SKEW_BURN_IN * g**2``,
        ``g`` the sample skewness of the differences; with batch requests, that of the
        requests' linearised differences ``s_i - R m_i``, read as the split test reads it
        (the estimate's skewness at most ``1 / sqrt(SKEW_BURN_IN)``, see
        :meth:`TwoSampleSequentialTest.evaluate
        <shadow.stats.TwoSampleSequentialTest.evaluate>`). With a ``loss_range`` the
        estimate is moved towards 0 by ``loss_range * log(2/alpha) / n_eff``, what a loss
        difference in a share ``log(2/alpha) / n_eff`` of the effective requests, likely
        unseen so far, could add (the rule of three at alpha 0.05); ``n_eff`` is the rows
        with one row per request, as before requests were the unit.
        """
        count, rows, total, total_sq = (np.asarray(sums[i], dtype=np.float64) for i in (0, 1, 2, 4))
        single = rows == count  # every request one row
        effective = effective_requests(count, rows, sums[3])
        safe = np.maximum(count, 1.0)
        mean = np.asarray(total, dtype=np.float64) / safe
        var = sample_variance(count, total, total_sq)
        ratio, ratio_var = ratio_variance(sums)
        finite = np.isfinite(ratio_var)
        ratio_unit = np.where(finite, np.where(finite, ratio_var, 0.0) * count, np.inf)
        # the requests that carry the estimate: one 4,000-row request among 600 of one
        # row counted as 601 requests, and an equal challenger was decided on in 10-23 %
        # of seeded runs (tests/shadow/test_stats_paired_effective_requests.py)
        active = effective >= self.min_n
        if len(sums) == _REQUEST_SUMS:
            g = skewness(count, total, total_sq, np.asarray(sums[7], dtype=np.float64))
            spread = finite & (ratio_var > 0)
            skew = np.abs(ratio_third_cumulant(sums)) / np.where(spread, ratio_var, 1.0) ** 1.5
            settled = np.where(
                single,
                count >= SKEW_BURN_IN * g**2,
                ~spread | (skew <= 1.0 / np.sqrt(SKEW_BURN_IN)),
            )
            active = active & settled
        allowance = (
            0.0
            if self.loss_range is None
            else self.loss_range * np.log(2.0 / self.alpha) / np.maximum(effective, 1.0)
        )
        return evaluate_estimate(
            self._method,
            estimate=np.where(single, mean, ratio),
            estimate_variance=np.where(single, var / safe, ratio_var),
            unit_variance=np.where(single, var, ratio_unit),
            df=count - 1.0,
            active=active,
            greater_is_better=False,
            allowance=allowance,
        )

    def update(self, differences: np.ndarray, *, requests: ArrayLike | None = None) -> Look:
        """Add a batch of per-row loss differences and look.

        ``requests`` names the request each difference came in (any labels, one per
        difference; rows of a request need not be adjacent); without it each difference
        is a request of its own. A request is a unit once: one named again in a later
        batch counts as another request.
        """
        d = check_sample(differences, field="differences")
        values = d  # per request: their sums, which the bootstrap resamples
        counts: np.ndarray | None = None  # None: one row per request
        if requests is not None:
            labels = np.asarray(requests)
            if labels.shape != d.shape:
                raise StatsError(
                    f"`requests` must name the request of each of the {d.size} differences, "
                    f"got shape {labels.shape}"
                )
            _, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
            if sizes.size < d.size:
                counts = sizes.astype(np.float64)
                values = np.bincount(inverse, weights=d)
        row_sums = (float(d.sum()), float(np.dot(d, d)), float(np.dot(d * d, d)))
        if counts is None:  # the row sums, added as they always were
            added = np.asarray(unit_sums(d.size, *row_sums), dtype=np.float64)
        else:
            zeros = np.zeros(counts.size)
            added = UnitUpdate(zeros, zeros, counts, values).sums()
        self._rows += int(d.size)
        self._total += row_sums[0]
        self._total_sq += row_sums[1]
        if self._total_cube is not None:
            self._total_cube += row_sums[2]
        self._requests += added[: self._requests.size]
        if self._bootstrap is not None:
            self._bootstrap.update(values, sizes=counts)  # the ratio, as the estimate
        arrays = self.evaluate_requests(tuple(np.asarray(v) for v in self._requests))
        before = self._running.decision
        self._running = self._running.advance(arrays)
        look = Look(
            n=self.n,
            estimate=float(arrays.estimate),
            ci_low=self._running.ci_low,
            ci_high=self._running.ci_high,
            p_value=self._running.p_value,
            decision=self._running.decision,
            fixed_t_p=float(arrays.fixed_t_p),
            fixed_ci=(float(arrays.fixed_low), float(arrays.fixed_high)),
            bootstrap_ci=(
                self._bootstrap.interval(self.alpha) if self._bootstrap is not None else None
            ),
        )
        self._history.append(look)
        if before == "continue" and look.decision != "continue":
            logger.debug(  # the caller, who knows the model and versions, logs it
                "paired %s test decided %s at n=%d requests (%d rows; estimate=%.6g, p=%.3g)",
                self.method,
                look.decision,
                look.n,
                self._rows,
                look.estimate,
                look.p_value,
            )
        return look

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state (unbounded interval sides are ``None``)."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": _KIND,
            "config": {
                "alpha": self.alpha,
                "method": self.method,
                "planned_n": self.planned_n,
                "min_n": self.min_n,
                "mixing_sd": self.mixing_sd,
                "loss_range": self.loss_range,
                "bootstrap_resamples": self.bootstrap_resamples,
                "seed": self.seed,
            },
            # The rows' sums under the keys every reader before requests were the unit
            # reads (as rows); ``units`` the request sums (see ``_REQUEST_SUMS``).
            "n": self._rows,
            "total": self._total,
            "total_sq": self._total_sq,
            "total_cube": self._total_cube,
            "units": self._requests.tolist(),
            "p_value": self._running.p_value,
            "ci_low": encode_bound(self._running.ci_low),
            "ci_high": encode_bound(self._running.ci_high),
            "decision": self._running.decision,
            "evidence": self._running.evidence,
            "history": [_encode_look(look) for look in self._history],
            "bootstrap": None if self._bootstrap is None else self._bootstrap.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PairedSequentialTest:
        check_state(data, kind=_KIND)
        try:
            test = cls(**data["config"])
            test._rows = int(data["n"])
            test._total = float(data["total"])
            test._total_sq = float(data["total_sq"])
            cube = data.get("total_cube")  # absent from states stored before it was kept
            test._total_cube = None if cube is None else float(cube)
            test._requests = _request_sums(data.get("units"), test)
            test._running = RunningInference(
                p_value=float(data["p_value"]),
                ci_low=decode_bound(data["ci_low"], unbounded=-np.inf),
                ci_high=decode_bound(data["ci_high"], unbounded=np.inf),
                decision=check_decision(data["decision"]),
                evidence=_evidence(data.get("evidence")),  # absent from older states
            )
            test._history = [_decode_look(item) for item in data["history"]]
            if data["bootstrap"] is not None:
                test._bootstrap = PoissonBootstrap.from_dict(data["bootstrap"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StatsError(f"{_KIND} state is incomplete or malformed: {exc!r}") from exc
        return test


def _request_sums(stored: Any, test: PairedSequentialTest) -> np.ndarray:
    """The request sums of a stored state. A state stored before requests were the unit
    has none: each of its rows is a request of one row (what that test assumed). Nor do
    request sums whose rows are not the state's (updated since by code that did not keep
    them): the test goes on from its row sums alike, as that code did. Without the rows'
    sum of cubes, the skewness rule is off."""
    rows = unit_sums(test._rows, test._total, test._total_sq, test._total_cube)
    if stored is not None:
        sums = np.asarray(stored, dtype=np.float64)
        if sums.shape not in ((_REQUEST_SUMS,), (_REQUEST_SUMS_WITHOUT_CUBES,)):
            raise ValueError(
                f"`units` must hold {_REQUEST_SUMS} or {_REQUEST_SUMS_WITHOUT_CUBES} sums, "
                f"got shape {sums.shape}"
            )
        if sums[1] == test._rows:
            return sums[: len(rows)]
        logger.info(
            "paired test state: its request sums (%d rows) are older than its row sums "
            "(%d rows; updated by code that did not keep them); going on one row per request",
            int(sums[1]),
            test._rows,
        )
    return np.asarray(rows, dtype=np.float64)


def _encode_look(look: Look) -> dict[str, Any]:
    item = asdict(look)
    item["ci_low"] = encode_bound(look.ci_low)
    item["ci_high"] = encode_bound(look.ci_high)
    item["fixed_ci"] = [encode_bound(look.fixed_ci[0]), encode_bound(look.fixed_ci[1])]
    item["bootstrap_ci"] = None if look.bootstrap_ci is None else list(look.bootstrap_ci)
    return item


def _decode_look(item: Mapping[str, Any]) -> Look:
    boot = item["bootstrap_ci"]
    return Look(
        n=int(item["n"]),
        estimate=float(item["estimate"]),
        ci_low=decode_bound(item["ci_low"], unbounded=-np.inf),
        ci_high=decode_bound(item["ci_high"], unbounded=np.inf),
        p_value=float(item["p_value"]),
        decision=check_decision(item["decision"]),
        fixed_t_p=float(item["fixed_t_p"]),
        fixed_ci=(
            decode_bound(item["fixed_ci"][0], unbounded=-np.inf),
            decode_bound(item["fixed_ci"][1], unbounded=np.inf),
        ),
        bootstrap_ci=None if boot is None else (float(boot[0]), float(boot[1])),
    )


def _evidence(value: Any) -> int | None:
    if value is None:
        return None
    if value not in (-1, 0, 1) or isinstance(value, bool):
        raise ValueError(f"`evidence` must be -1, 0, 1 or null, got {value!r}")
    return int(value)
