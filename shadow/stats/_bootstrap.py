"""Online Poisson bootstrap of a mean (Oza & Russell 2001; Chamandy et al. 2012, "Estimating
uncertainty for massive data streams").

Each replicate weighs every arriving value by an independent ``Poisson(1)`` count, so the
state is two vectors of length ``resamples`` (weighted sums and total weights) and an
update costs ``O(batch * resamples)`` without keeping the data. As the sample grows the
replicate means behave like those of the ordinary multinomial bootstrap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shadow.stats._validation import check_positive_int


class PoissonBootstrap:
    """Percentile bootstrap interval of a streaming mean, seeded and serialisable."""

    def __init__(self, *, resamples: int = 1000, seed: int | None = 0) -> None:
        self.resamples = check_positive_int(resamples, field="bootstrap_resamples", minimum=2)
        self._rng = np.random.default_rng(seed)
        self._sums = np.zeros(self.resamples)
        self._weights = np.zeros(self.resamples)

    def update(self, values: np.ndarray, *, sizes: np.ndarray | None = None) -> None:
        """Add ``values``, each resampled as one unit. With ``sizes``, each value is the
        sum over a unit of that many observations (a request's rows), and the replicates
        are of the mean per observation, ``sum(w * values) / sum(w * sizes)``: a ratio,
        as the paired test's estimate is."""
        # Chunks bound the memory of the weight matrix for large batches.
        for start in range(0, len(values), 1024):
            chunk = values[start : start + 1024]
            w = self._rng.poisson(1.0, size=(len(chunk), self.resamples)).astype(np.float64)
            self._sums += chunk @ w
            if sizes is None:
                self._weights += w.sum(axis=0)
            else:
                self._weights += sizes[start : start + 1024] @ w

    def interval(self, alpha: float) -> tuple[float, float] | None:
        """The ``(alpha/2, 1 - alpha/2)`` percentiles of the replicate means, or ``None``
        while fewer than two replicates have any weight."""
        used = self._weights > 0
        if used.sum() < 2:
            return None
        means = self._sums[used] / self._weights[used]
        low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
        return float(low), float(high)

    def to_dict(self) -> dict[str, Any]:
        return {
            "resamples": self.resamples,
            "sums": self._sums.tolist(),
            "weights": self._weights.tolist(),
            "rng": self._rng.bit_generator.state,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoissonBootstrap:
        boot = cls(resamples=int(data["resamples"]), seed=None)
        boot._sums = np.asarray(data["sums"], dtype=np.float64)
        boot._weights = np.asarray(data["weights"], dtype=np.float64)
        boot._rng.bit_generator.state = data["rng"]
        return boot
