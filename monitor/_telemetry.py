"""Resource telemetry per hyperparameter set: latency summaries, and a serving-cost model
that relates hyperparameters to p99 latency and memory so a tuner can reject
configurations predicted to break a latency or memory ceiling before training them.

:meth:`ServingCostModel.fit` reports the Spearman rank correlation of every numeric
(and boolean) hyperparameter with latency and memory, and fits two ridge regressions on
log-latency and log-memory. Features are each numeric hyperparameter and, when it is
positive throughout, its logarithm (so multiplicative effects such as
``n_estimators * max_depth`` are linear), plus one-hot categorical values; a
hyperparameter missing from a row counts as 0 / its own category.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.linear_model import RidgeCV

from monitor._errors import EstimationError

HyperparameterValue = float | int | str | bool


@dataclass(frozen=True, kw_only=True)
class LatencySummary:
    """Latency percentiles in seconds over ``n`` samples (``None`` when ``n == 0``)."""

    p50: float | None
    p90: float | None
    p99: float | None
    n: int

    @classmethod
    def from_samples(cls, latencies_s: Sequence[float] | np.ndarray) -> LatencySummary:
        """Summarise latencies (seconds); non-finite and negative samples are ignored."""
        arr = np.asarray(latencies_s, dtype=np.float64).reshape(-1)
        arr = arr[np.isfinite(arr) & (arr >= 0)]
        if arr.size == 0:
            return cls(p50=None, p90=None, p99=None, n=0)
        p50, p90, p99 = np.quantile(arr, [0.5, 0.9, 0.99])
        return cls(p50=float(p50), p90=float(p90), p99=float(p99), n=int(arr.size))


@dataclass(frozen=True, kw_only=True)
class HyperparameterTelemetry:
    """What one hyperparameter set cost in production."""

    hyperparameters: Mapping[str, HyperparameterValue]
    latency_p99_s: float
    memory_bytes: float


@dataclass(frozen=True, kw_only=True)
class HyperparameterCorrelation:
    """Spearman rank correlation of one numeric hyperparameter with latency and memory
    (``None`` when the hyperparameter or the target is constant)."""

    name: str
    latency_rho: float | None
    latency_p_value: float | None
    memory_rho: float | None
    memory_p_value: float | None
    n: int


@dataclass(frozen=True, kw_only=True)
class CorrelationReport:
    """Correlations for every numeric hyperparameter, strongest latency link first."""

    correlations: tuple[HyperparameterCorrelation, ...]

    def get(self, name: str) -> HyperparameterCorrelation:
        for item in self.correlations:
            if item.name == name:
                return item
        raise KeyError(name)


@dataclass(frozen=True, kw_only=True)
class CostPrediction:
    """Predicted serving cost of a hyperparameter set."""

    latency_p99_s: float
    memory_bytes: float


def _spearman(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    res = stats.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def _is_numeric(value: HyperparameterValue) -> bool:
    return isinstance(value, bool | int | float)


def _finite(name: str, value: HyperparameterValue, where: str = "") -> float:
    """``value`` as a float; NaN, infinities and integers past the float range are
    refused by the hyperparameter's name."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise EstimationError(
            f"hyperparameter {name!r} must be a finite number, got {value!r}{where}"
        )
    return number


class ServingCostModel:
    """Predicts p99 latency and memory from hyperparameters; build with :meth:`fit`."""

    def __init__(
        self,
        *,
        numeric: tuple[str, ...],
        logged: tuple[str, ...],
        categorical: Mapping[str, tuple[str, ...]],
        latency_model: RidgeCV,
        memory_model: RidgeCV,
        mean: np.ndarray,
        scale: np.ndarray,
        report: CorrelationReport,
        exponent: np.ndarray | None = None,
    ) -> None:
        self._numeric = numeric
        self._logged = logged
        self._categorical = dict(categorical)
        self._latency = latency_model
        self._memory = memory_model
        self._mean = mean
        self._scale = scale
        # ``mean`` and ``scale`` are in units of 2**exponent per feature (0: no scaling)
        self._exponent = np.zeros(mean.shape, dtype=np.int32) if exponent is None else exponent
        self.report = report
        """Spearman correlations computed at fit time."""

    @classmethod
    def fit(cls, rows: Sequence[HyperparameterTelemetry], *, min_rows: int = 5) -> ServingCostModel:
        """Fit on telemetry of at least ``min_rows`` hyperparameter sets."""
        if len(rows) < min_rows:
            raise EstimationError(
                f"need telemetry of at least min_rows={min_rows} hyperparameter sets, "
                f"got {len(rows)}"
            )
        latency = np.array([r.latency_p99_s for r in rows], dtype=np.float64)
        memory = np.array([r.memory_bytes for r in rows], dtype=np.float64)
        if not (np.all(np.isfinite(latency)) and np.all(latency > 0)):
            raise EstimationError("`latency_p99_s` must be positive and finite in every row")
        if not (np.all(np.isfinite(memory)) and np.all(memory > 0)):
            raise EstimationError("`memory_bytes` must be positive and finite in every row")
        names = sorted({k for r in rows for k in r.hyperparameters})
        numeric, categorical = [], {}
        for name in names:
            values = [r.hyperparameters[name] for r in rows if name in r.hyperparameters]
            if all(_is_numeric(v) for v in values):
                numeric.append(name)
            else:
                categorical[name] = tuple(sorted({str(v) for v in values}))
        columns = {
            name: np.array(
                [
                    _finite(name, r.hyperparameters.get(name, 0), f" in telemetry row {i}")
                    for i, r in enumerate(rows)
                ]
            )
            for name in numeric
        }
        logged = tuple(name for name in numeric if np.all(columns[name] > 0))
        correlations = []
        for name in numeric:
            lat_rho, lat_p = _spearman(columns[name], latency)
            mem_rho, mem_p = _spearman(columns[name], memory)
            correlations.append(
                HyperparameterCorrelation(
                    name=name,
                    latency_rho=lat_rho,
                    latency_p_value=lat_p,
                    memory_rho=mem_rho,
                    memory_p_value=mem_p,
                    n=len(rows),
                )
            )
        correlations.sort(key=lambda c: -abs(c.latency_rho or 0.0))
        model = cls(
            numeric=tuple(numeric),
            logged=logged,
            categorical=categorical,
            latency_model=RidgeCV(alphas=np.logspace(-3, 3, 13)),
            memory_model=RidgeCV(alphas=np.logspace(-3, 3, 13)),
            mean=np.zeros(0),
            scale=np.ones(0),
            report=CorrelationReport(correlations=tuple(correlations)),
        )
        raw = np.vstack([model._features(r.hyperparameters) for r in rows])
        # standardise in units of a power of two near each feature's largest magnitude:
        # exact, and values near the float limit do not overflow the mean and spread
        _, model._exponent = np.frexp(np.abs(raw).max(axis=0, initial=0.0))
        units = np.ldexp(raw, -model._exponent)
        model._mean = units.mean(axis=0)
        spread = units.std(axis=0)
        model._scale = np.where(spread > 0, spread, 1.0)
        x = (units - model._mean) / model._scale
        model._latency.fit(x, np.log(latency))
        model._memory.fit(x, np.log(memory))
        return model

    def _features(self, hyperparameters: Mapping[str, HyperparameterValue]) -> np.ndarray:
        out: list[float] = []
        for name in self._numeric:
            value = hyperparameters.get(name, 0)
            if not _is_numeric(value):
                raise EstimationError(f"hyperparameter {name!r} must be numeric, got {value!r}")
            number = _finite(name, value)
            out.append(number)
            if name in self._logged:
                out.append(math.log(max(number, 1e-12)))
        for name, levels in self._categorical.items():
            value = str(hyperparameters.get(name, ""))
            out.extend(1.0 if value == level else 0.0 for level in levels)
        return np.asarray(out, dtype=np.float64)

    def predict(self, hyperparameters: Mapping[str, HyperparameterValue]) -> CostPrediction:
        """Predicted p99 latency (seconds) and memory (bytes); unknown hyperparameters
        are ignored, unseen categorical values get no category effect."""
        units = np.ldexp(self._features(hyperparameters), -self._exponent)
        x = ((units - self._mean) / self._scale).reshape(1, -1)
        return CostPrediction(
            latency_p99_s=float(np.exp(self._latency.predict(x)[0])),
            memory_bytes=float(np.exp(self._memory.predict(x)[0])),
        )

    def within_limits(
        self,
        hyperparameters: Mapping[str, HyperparameterValue],
        *,
        latency_ceiling_s: float | None = None,
        memory_ceiling_bytes: float | None = None,
    ) -> bool:
        """Whether the predicted cost stays at or under the given ceilings."""
        cost = self.predict(hyperparameters)
        if latency_ceiling_s is not None and cost.latency_p99_s > latency_ceiling_s:
            return False
        return memory_ceiling_bytes is None or cost.memory_bytes <= memory_ceiling_bytes
