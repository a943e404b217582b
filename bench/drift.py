"""Drift benchmark: tunewatch's DriftDetector against evidently's DataDriftPreset.

For 10k and 100k rows (reference and current the same size) of 25 mixed columns —
20 numeric (normal, log-normal, exponential, uniform, Poisson counts, beta, with 2 %
missing in some) and 5 categorical — of which 7 numeric and 2 categorical drift
(shifted, scaled or re-weighted) and the rest do not, both tools check the raw current
window against the raw reference with their defaults, in the same run:

* ``tunewatch_s``: median wall time of ``DriftDetector.check`` (profile built once,
  beforehand; its build time is ``tunewatch_build_s``);
* ``evidently_s``: median wall time of ``Report([DataDriftPreset()]).run`` plus reading
  its result dict (evidently imported beforehand);
* ``speedup`` = ``evidently_s / tunewatch_s``; ``speedup_incl_build`` counts the
  profile build too; the detector samples current windows above 20k rows by default, so
  ``*_unsampled`` repeat the timing and agreement with ``sample_size=None``;
* ``agreement``: share of columns with the same per-column verdict.

Writes ``bench/results/drift.json``. Usage: ``python bench/drift.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor._evidently import evidently_verdicts  # noqa: E402
from monitor.drift import DriftDetector, ReferenceProfile  # noqa: E402

SIZES = (10_000, 100_000)
DRIFTING = {"n00", "n01", "n02", "n03", "n04", "n05", "n06", "c0", "c1"}


def _numeric(rng: np.random.Generator, n: int, j: int, drift: bool) -> np.ndarray:
    shift = 1.0 if drift else 0.0
    kind = j % 6
    if kind == 0:
        x = rng.normal(10.0 + 0.6 * shift * 3.0, 3.0, n)
    elif kind == 1:
        x = rng.lognormal(1.0 + 0.4 * shift, 0.5, n)
    elif kind == 2:
        x = rng.exponential(2.0 * (1.0 + 0.8 * shift), n)
    elif kind == 3:
        x = rng.uniform(0.0, 1.0 + 0.5 * shift, n)
    elif kind == 4:
        x = rng.poisson(20.0 + 6.0 * shift, n).astype(np.float64)
    else:
        x = rng.beta(2.0 + 2.0 * shift, 5.0, n)
    if j % 4 == 1:
        x[rng.random(n) < 0.02] = np.nan
    return x


def _categorical(rng: np.random.Generator, n: int, j: int, drift: bool) -> np.ndarray:
    levels = [f"L{k}" for k in range(3 + 2 * j)]
    weights = np.linspace(1.0, 2.0, len(levels))
    if drift:
        weights = weights[::-1] ** 2
    return rng.choice(np.array(levels, dtype=object), size=n, p=weights / weights.sum())


def make_window(n: int, *, drifted: bool, seed: int) -> pd.DataFrame:
    """25 columns; with ``drifted`` the columns in :data:`DRIFTING` change."""
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for j in range(20):
        name = f"n{j:02d}"
        data[name] = _numeric(rng, n, j, drifted and name in DRIFTING)
    for j in range(5):
        name = f"c{j}"
        data[name] = _categorical(rng, n, j, drifted and name in DRIFTING)
    return pd.DataFrame(data)


def _median_time(fn: object, rounds: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run(rounds: int) -> dict[str, object]:
    results: dict[str, object] = {}
    for n in SIZES:
        reference = make_window(n, drifted=False, seed=1)
        current = make_window(n, drifted=True, seed=2)
        types = {c: ("cat" if c.startswith("c") else "num") for c in reference.columns}
        t0 = time.perf_counter()
        profile = ReferenceProfile.build(reference, column_types=types)  # type: ignore[arg-type]
        build_s = time.perf_counter() - t0
        detector = DriftDetector(profile)
        tw_s, tw = _median_time(lambda d=detector, c=current: d.check(c), rounds)
        full = DriftDetector(profile, sample_size=None)
        full_s, full_result = _median_time(lambda d=full, c=current: d.check(c), rounds)
        ev_rounds = max(1, rounds // 2) if n >= 100_000 else rounds
        ev_s, ev = _median_time(
            lambda r=reference, c=current, t=types: evidently_verdicts(r, c, column_types=t),
            ev_rounds,
        )
        ours = {v.column: v.drifted for v in tw.columns}  # type: ignore[attr-defined]
        theirs: dict[str, bool] = ev  # type: ignore[assignment]
        agree = [ours[c] == theirs[c] for c in theirs]
        ours_full = {v.column: v.drifted for v in full_result.columns}  # type: ignore[attr-defined]
        agree_full = [ours_full[c] == theirs[c] for c in theirs]
        disagreements = sorted(c for c in theirs if ours[c] != theirs[c])
        results[str(n)] = {
            "speedup": round(ev_s / tw_s, 2),
            "speedup_incl_build": round(ev_s / (tw_s + build_s), 2),
            "agreement": sum(agree) / len(agree),
            "tunewatch_s": round(tw_s, 4),
            "tunewatch_build_s": round(build_s, 4),
            "tunewatch_unsampled_s": round(full_s, 4),
            "speedup_unsampled": round(ev_s / full_s, 2),
            "agreement_unsampled": sum(agree_full) / len(agree_full),
            "evidently_s": round(ev_s, 4),
            "n_columns": len(agree),
            "n_drifting_by_construction": len(DRIFTING),
            "tunewatch_drifted": sorted(c for c, d in ours.items() if d),
            "evidently_drifted": sorted(c for c, d in theirs.items() if d),
            "disagreements": disagreements,
            "rounds": rounds,
            "evidently_rounds": ev_rounds,
        }
        print(n, results[str(n)])
    results["versions"] = {
        "python": platform.python_version(),
        "numpy": version("numpy"),
        "pandas": version("pandas"),
        "scipy": version("scipy"),
        "evidently": version("evidently"),
        "machine": platform.machine(),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import evidently  # noqa: F401  (import cost is not part of the comparison)

    results = run(args.rounds)
    out = ROOT / "bench" / "results" / "drift.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
