"""Seeded synthetic windows for the drift tests (kept apart from bench/)."""

from __future__ import annotations

import numpy as np
import pandas as pd

NUMERIC = ("age", "income", "balance", "tenure", "score", "txn_rate")
CATEGORICAL = ("region", "channel")
COLUMN_TYPES = {**dict.fromkeys(NUMERIC, "num"), **dict.fromkeys(CATEGORICAL, "cat")}
DRIFTING = ("age", "income", "balance", "score", "region")
"""Columns that change at the change point: 5 of 8, so the share rule (0.5) fires."""


def window(n: int, *, rng: np.random.Generator, changed: bool = False) -> pd.DataFrame:
    """One window of 8 mixed columns; with ``changed`` the :data:`DRIFTING` columns shift
    by about half a standard deviation (or re-weight their categories)."""
    s = 1.0 if changed else 0.0
    regions = np.array(["north", "south", "east", "west"], dtype=object)
    region_p = np.array([0.4, 0.3, 0.2, 0.1]) if not changed else np.array([0.1, 0.2, 0.3, 0.4])
    return pd.DataFrame(
        {
            "age": rng.normal(40 + 6 * s, 12, n),
            "income": rng.lognormal(10.5 + 0.4 * s, 0.6, n),
            "balance": rng.gamma(2.0, 1500 * (1 + 0.6 * s), n),
            "tenure": rng.exponential(4.0, n),
            "score": rng.beta(2 + 1.5 * s, 3, n),
            "txn_rate": rng.poisson(12, n).astype(float),
            "region": rng.choice(regions, n, p=region_p),
            "channel": rng.choice(np.array(["web", "app", "branch"], dtype=object), n),
        }
    )


def stream(
    n_windows: int, window_size: int, *, change_at: int | None, seed: int
) -> list[pd.DataFrame]:
    """Windows ``0 .. n_windows-1``; from ``change_at`` on (if set) the data changed."""
    rng = np.random.default_rng(seed)
    return [
        window(window_size, rng=rng, changed=change_at is not None and k >= change_at)
        for k in range(n_windows)
    ]
