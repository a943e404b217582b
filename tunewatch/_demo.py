"""``tunewatch demo``: the example loop on a fresh embedded SQLite store.

Trains the example champion and challenger, registers them, starts the daemon on a
loopback port, scores traffic through the Open Inference Protocol, sends delayed labels,
and prints what was recorded. Later stages of the loop (drift, re-tuning, promotion) join
this script as they land.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Literal

import httpx
import numpy as np

from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import example_data, example_models

MODEL = "credit"


def _step(message: str) -> None:
    print(f"[demo] {message}", flush=True)


async def _traffic(url: str, token: str, x: np.ndarray, concurrency: int) -> list[float]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:

        async def one(i: int) -> None:
            body = {
                "id": f"req-{i}",
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, x.shape[1]],
                        "datatype": "FP32",
                        "data": x[i].tolist(),
                    }
                ],
            }
            async with sem:
                started = time.perf_counter()
                r = await client.post(f"/v2/models/{MODEL}/infer", json=body)
                latencies.append(time.perf_counter() - started)
            r.raise_for_status()

        await asyncio.gather(*(one(i) for i in range(len(x))))
    return latencies


def run_demo(*, data_dir: Path, requests: int = 2000, seed: int = 0) -> int:
    started = time.perf_counter()
    if data_dir.exists():
        shutil.rmtree(data_dir)
    admin = new_token()
    config = build_config({"data_dir": str(data_dir)}, env={})
    daemon = Daemon(config, env={"TUNEWATCH_ADMIN_TOKEN": admin})
    _step(f"fresh store at {config.store_url}")

    _step("training the example champion (logistic) and challenger (gradient boosting)")
    champion, challenger = example_models(seed=seed)
    stages: tuple[Literal["champion", "shadow"], ...] = ("champion", "shadow")
    for model, stage in zip((champion, challenger), stages, strict=True):
        row = daemon.registry.register(
            MODEL, model.onnx, model.metadata, actor="demo", stage=stage, reference=model.reference
        )
        _step(
            f"registered {MODEL} v{row.version} ({model.name}) as {row.stage}; "
            f"loaded in a sandboxed subprocess first, {row.size_bytes} bytes"
        )
    scorer, labeller = new_token(), new_token()
    daemon.store.add_token(name="demo-scorer", role="scorer", token_hash=hash_token(scorer))
    daemon.store.add_token(name="demo-labeller", role="labeller", token_hash=hash_token(labeller))

    x, y = example_data(requests, seed=seed + 1)
    with BackgroundServer(daemon.app) as server:
        _step(f"daemon listening on {server.url} (OpenAPI at {server.url}/docs)")
        _step(f"scoring {requests} requests, 16 at a time, champion answers, challenger shadows")
        t0 = time.perf_counter()
        latencies = asyncio.run(_traffic(server.url, scorer, x, 16))
        elapsed = time.perf_counter() - t0
        lat = np.array(latencies) * 1000
        _step(
            f"{requests} requests in {elapsed:.1f}s ({requests / elapsed:.0f} req/s), "
            f"p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms "
            "(each answer waited for its durable commit)"
        )

        _step("labels arrive late: sending ground truth for the first half")
        half = requests // 2
        items = [{"request_id": f"req-{i}", "label": int(y[i])} for i in range(half)]
        r = httpx.post(
            f"{server.url}/v1/models/{MODEL}/feedback",
            json={"items": items},
            headers={"Authorization": f"Bearer {labeller}"},
            timeout=60,
        )
        r.raise_for_status()
        statuses = [item["status"] for item in r.json()["results"]]
        deadline = time.monotonic() + 30
        while daemon.runtime.queue.depth and time.monotonic() < deadline:
            time.sleep(0.05)
        metrics = httpx.get(f"{server.url}/metrics").text

    store = daemon.store
    recorded = store.count_requests(MODEL)
    champion_outputs = store.count_outputs(MODEL, 1)
    shadow_outputs = store.count_outputs(MODEL, 2)
    drops = daemon.runtime.queue.dropped
    daemon.close()
    shadow_lines = [
        m for m in metrics.splitlines() if m.startswith("tunewatch_shadow_dropped_total")
    ]
    print()
    print("tunewatch demo summary")
    print(f"  requests acknowledged and recorded : {recorded}/{requests}")
    print(f"  champion outputs recorded          : {champion_outputs}")
    print(f"  challenger outputs (shadow)        : {shadow_outputs} (dropped: {drops})")
    print(f"  labels attached                    : {statuses.count('created')}")
    print(f"  store                              : {config.store_url}")
    print(f"  metrics sample                     : {shadow_lines[:1] or ['(no drops)']}")
    print(f"  finished in {time.perf_counter() - started:.1f}s")
    ok = recorded == requests and champion_outputs == requests
    return 0 if ok else 1
