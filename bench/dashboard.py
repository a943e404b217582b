"""Dashboard benchmark: server-side time of every page and its JSON endpoint.

Serves the seeded scenario the browser tests use (the demo's store plus a decided
sequential test) with a fresh daemon, then the same store with a year of hourly drift,
estimate, label and telemetry windows added (8,760 each). Each page and each
``/v1/dashboard`` endpoint is requested 20 times by a viewer; the time from the request
reaching the ASGI app to the last byte of its answer is recorded in-process (so client
overhead is excluded). Target: median < 300 ms each.

Writes ``bench/results/dashboard.json``:
``{"pages": {name: {"median_ms", "p90_ms", "bytes"}}, "year": {...}, ...}``.
Usage: ``python bench/dashboard.py [--rounds N] [--data-dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.dashboard.scenario import (  # noqa: E402
    Served,
    add_year_of_windows,
    seeded_dir,
    serve,
)
from tunewatch._config import build_config  # noqa: E402
from tunewatch.store import Store  # noqa: E402

TABS = ("ab", "drift", "decay", "telemetry", "tuning", "events")
TARGET_MS = 300.0


class Timer:
    """ASGI wrapper recording, per path, seconds from request start to the last body chunk."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.samples: dict[str, list[float]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.samples.setdefault(scope["path"], []).append(time.perf_counter() - started)

        await self.app(scope, receive, timed)


@contextmanager
def timed_serve(data_dir: Path) -> Iterator[tuple[Served, Timer]]:
    with serve(data_dir) as served:
        timer = Timer(served.daemon.app.app)
        served.daemon.app.app = timer
        yield served, timer


def _targets(model: str) -> dict[str, str]:
    out = {"overview": "/dashboard/", "overview.json": "/v1/dashboard/overview"}
    for tab in TABS:
        out[tab] = f"/dashboard/models/{model}/{tab}"
        out[f"{tab}.json"] = f"/v1/dashboard/models/{model}/{tab}"
    return out


def measure(data_dir: Path, rounds: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with timed_serve(data_dir) as (served, timer):
        cookies = {"tunewatch_session": served.tokens["viewer"]}
        with httpx.Client(base_url=served.url, cookies=cookies, timeout=120) as client:
            for name, path in _targets(served.model).items():
                client.get(path).raise_for_status()  # warm-up (caches, first query plans)
                timer.samples.pop(path, None)
                size = 0
                for _ in range(rounds):
                    r = client.get(path)
                    r.raise_for_status()
                    size = len(r.content)
                ms = np.array(timer.samples[path]) * 1000
                results[name] = {
                    "median_ms": round(float(statistics.median(ms)), 2),
                    "p90_ms": round(float(np.quantile(ms, 0.9)), 2),
                    "bytes": size,
                }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--data-dir", type=Path, default=None, help="reuse a seeded store")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tw-dash-bench-"))
    try:
        started = time.perf_counter()
        demo = args.data_dir or seeded_dir(work / "demo")
        seed_s = time.perf_counter() - started
        pages = measure(demo, args.rounds)
        year_dir = work / "year"
        shutil.copytree(demo, year_dir)
        with Store.open(build_config({"data_dir": str(year_dir)}, env={}).store_url) as store:
            add_year_of_windows(store, "credit")
        year = measure(year_dir, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    slowest = max((*pages.values(), *year.values()), key=lambda r: r["median_ms"])
    result = {
        "pages": pages,
        "year": year,
        "rounds": args.rounds,
        "target_median_ms": TARGET_MS,
        "all_under_target": slowest["median_ms"] < TARGET_MS,
        "slowest_median_ms": slowest["median_ms"],
        "scenario": "tunewatch demo store + a decided sequential test; 'year' adds 8760 "
        "hourly drift/estimate/labels/telemetry windows to the same store",
        "seed_s": round(seed_s, 1),
        "timing": "server-side: ASGI request start to last body byte, viewer cookie",
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    out = ROOT / "bench" / "results" / "dashboard.json"
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2, sort_keys=True))  # noqa: T201


if __name__ == "__main__":
    main()
