"""Seeded simulations of the sequential tests at the daemon's cadence: the A/A
false-positive rate (with the naive peeking rate beside it) and power.

They call the tests' own vectorised look functions (``evaluate`` of the paired and
two-sample tests, ``delong_arrays`` and ``critical_values`` of the group-sequential test),
so 1,000 experiments x 40 looks are a handful of numpy operations on the real code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from shadow.stats._delong import delong_arrays, delong_z
from shadow.stats._errors import StatsError
from shadow.stats._group_sequential import GroupSequentialDeLong, decide
from shadow.stats._paired import PairedSequentialTest
from shadow.stats._two_sample import TwoSampleSequentialTest, unit_sums
from shadow.stats._validation import check_positive_int

SequentialTest = PairedSequentialTest | TwoSampleSequentialTest | GroupSequentialDeLong
# (rng, (n_experiments, n_max)) -> null per-request loss differences.
DifferenceGenerator = Callable[[np.random.Generator, tuple[int, int]], np.ndarray]

# The DeLong scenario: binormal scores, champion separation 1 sd, 30% positives, and the
# two models' noise correlated at 0.5 as for two models scoring the same requests.
DELONG_SEPARATION = 1.0
DELONG_PREVALENCE = 0.3
DELONG_NOISE_CORRELATION = 0.5

_Z95 = float(sps.norm.isf(0.025))


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion: ``successes`` of ``trials``."""
    trials = check_positive_int(trials, field="trials")
    if not 0 <= successes <= trials:
        raise StatsError(f"`successes` must be in [0, trials] = [0, {trials}], got {successes!r}")
    p = successes / trials
    z2 = _Z95**2
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = _Z95 * np.sqrt(p * (1 - p) / trials + z2 / (4 * trials**2)) / (1 + z2 / trials)
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


@dataclass(frozen=True)
class SimulationResult:
    """A/A false-positive rate of a sequential test with its 95% Wilson interval, and the
    rate of a naive fixed-horizon test checked at every one of the same looks."""

    n_experiments: int
    looks: tuple[int, ...]
    false_positives: int
    rate: float
    ci_low: float
    ci_high: float
    naive_false_positives: int
    naive_rate: float
    naive_ci_low: float
    naive_ci_high: float


@dataclass(frozen=True)
class PowerResult:
    """How often, and how soon, a real effect is declared."""

    n_experiments: int
    looks: tuple[int, ...]
    effect: float
    declared_better: int
    declared_worse: int
    rate_better: float
    ci_low: float
    ci_high: float
    median_n_to_better: float | None
    n_for_80_percent: int | None


@dataclass(frozen=True)
class _Decisions:
    looks: np.ndarray  # (L,) sample size (per arm) at each look
    codes: np.ndarray  # (E, L) decision codes
    naive: np.ndarray  # (E, L) fixed-horizon rejections


def _look_points(look_every: int, n_max: int) -> np.ndarray:
    check_positive_int(look_every, field="look_every")
    if n_max < look_every:
        raise StatsError(f"`n_max` must be at least `look_every` ({look_every}), got {n_max}")
    return np.arange(look_every, n_max + 1, look_every)


def _moments(values: np.ndarray, looks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.cumsum(values, axis=1)[:, looks - 1], np.cumsum(values**2, axis=1)[:, looks - 1]


def _simulate(
    test: SequentialTest,
    rng: np.random.Generator,
    *,
    effect: float,
    sigma: float,
    n_experiments: int,
    look_every: int,
    n_max: int,
    differences: DifferenceGenerator | None,
) -> _Decisions:
    shape = (n_experiments, n_max)
    if isinstance(test, PairedSequentialTest):
        looks = _look_points(look_every, n_max)
        d = rng.normal(effect, sigma, shape) if differences is None else differences(rng, shape)
        d = np.asarray(d, dtype=np.float64)
        total, total_sq = _moments(d, looks)
        total_cube = np.cumsum(d**3, axis=1)[:, looks - 1]
        arrays = test.evaluate(np.broadcast_to(looks, total.shape), total, total_sq, total_cube)
        return _Decisions(looks, arrays.decision, arrays.fixed_t_p <= test.alpha)
    if isinstance(test, TwoSampleSequentialTest):
        looks = _look_points(look_every, n_max)
        n = np.broadcast_to(looks, (n_experiments, looks.size))
        a = _moments(rng.normal(0.0, sigma, shape), looks)
        b = _moments(rng.normal(effect, sigma, shape), looks)
        arrays = test.evaluate(unit_sums(n, *a), unit_sums(n, *b))
        return _Decisions(looks, arrays.decision, arrays.fixed_t_p <= test.alpha)
    # Group-sequential DeLong: planned, equally spaced looks up to n_max.
    looks = np.linspace(0, n_max, test.planned_looks + 1)[1:].round().astype(np.int64)
    labels = (rng.random(n_max) < DELONG_PREVALENCE).astype(np.int64)
    noise = rng.multivariate_normal(
        [0.0, 0.0], [[1.0, DELONG_NOISE_CORRELATION], [DELONG_NOISE_CORRELATION, 1.0]], shape
    )
    champion = DELONG_SEPARATION * labels + noise[..., 0]
    challenger = (DELONG_SEPARATION + effect) * labels + noise[..., 1]
    critical = test.critical_values()
    codes = np.zeros((n_experiments, looks.size), dtype=np.int8)
    naive = np.zeros((n_experiments, looks.size), dtype=bool)
    for k, n in enumerate(looks):
        z = delong_z(*delong_arrays(labels[:n], champion[:, :n], challenger[:, :n]))
        codes[:, k] = decide(z, critical[k])
        naive[:, k] = np.abs(z) >= sps.norm.isf(test.alpha / 2.0)
    return _Decisions(looks, codes, naive)


def _first_decisions(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per experiment: the first nonzero code (0 if none) and its look index."""
    decided = codes != 0
    index = decided.argmax(axis=1)
    first = np.where(decided.any(axis=1), codes[np.arange(codes.shape[0]), index], 0)
    return first, index


def aa_false_positive_rate(
    test_factory: Callable[[], SequentialTest],
    *,
    n_experiments: int = 1000,
    look_every: int = 50,
    n_max: int = 2000,
    sigma: float = 1.0,
    seed: int = 0,
    null_differences: DifferenceGenerator | None = None,
) -> SimulationResult:
    """Share of A/A experiments (challenger equal to champion in distribution) in which
    the test declares a difference at any look. Paired and two-sample tests look every
    ``look_every`` labelled units up to ``n_max``; group-sequential tests at their planned
    looks spread evenly up to ``n_max``. ``null_differences`` replaces the normal paired
    differences (e.g. log-loss differences of two equally good models)."""
    check_positive_int(n_experiments, field="n_experiments")
    test = test_factory()
    result = _simulate(
        test,
        np.random.default_rng(seed),
        effect=0.0,
        sigma=sigma,
        n_experiments=n_experiments,
        look_every=look_every,
        n_max=n_max,
        differences=null_differences,
    )
    fp = int((result.codes != 0).any(axis=1).sum())
    naive = int(result.naive.any(axis=1).sum())
    return SimulationResult(
        n_experiments=n_experiments,
        looks=tuple(int(n) for n in result.looks),
        false_positives=fp,
        rate=fp / n_experiments,
        ci_low=wilson_interval(fp, n_experiments)[0],
        ci_high=wilson_interval(fp, n_experiments)[1],
        naive_false_positives=naive,
        naive_rate=naive / n_experiments,
        naive_ci_low=wilson_interval(naive, n_experiments)[0],
        naive_ci_high=wilson_interval(naive, n_experiments)[1],
    )


def power_simulation(
    test_factory: Callable[[], SequentialTest],
    *,
    effect: float,
    sigma: float = 1.0,
    n_experiments: int = 200,
    look_every: int = 50,
    n_max: int = 10_000,
    seed: int = 0,
) -> PowerResult:
    """Seeded runs with a true effect (mean loss difference ``effect``, or AUC separation
    gain for DeLong); reports how often and at which ``n`` the challenger is declared
    better. For losses a negative effect is an improvement; for DeLong a positive one."""
    check_positive_int(n_experiments, field="n_experiments")
    test = test_factory()
    result = _simulate(
        test,
        np.random.default_rng(seed),
        effect=effect,
        sigma=sigma,
        n_experiments=n_experiments,
        look_every=look_every,
        n_max=n_max,
        differences=None,
    )
    first, index = _first_decisions(result.codes)
    better = first == 1
    n_at = np.where(better, result.looks[index], np.iinfo(np.int64).max)
    n_better = int(better.sum())
    n80 = int(np.sort(n_at)[int(np.ceil(0.8 * n_experiments)) - 1])
    low, high = wilson_interval(n_better, n_experiments)
    return PowerResult(
        n_experiments=n_experiments,
        looks=tuple(int(n) for n in result.looks),
        effect=float(effect),
        declared_better=n_better,
        declared_worse=int((first == -1).sum()),
        rate_better=n_better / n_experiments,
        ci_low=low,
        ci_high=high,
        median_n_to_better=float(np.median(n_at[better])) if n_better else None,
        n_for_80_percent=n80 if n80 != np.iinfo(np.int64).max else None,
    )
