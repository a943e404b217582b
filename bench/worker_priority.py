"""Worker priority benchmark: scoring latency while tuning workers share the server's core.

The default deployment is one machine: the daemon and its ``tuning.workers`` worker
processes on the same cores. Workers used to run at the daemon's priority, and a retune
took the cores from scoring; ``tuning.worker_nice`` (default 19) has each worker lower
its own priority when it starts. In one run, in ``ROUNDS`` interleaved rounds (the
conditions' order rotated each round, so drift in the host's load hits all alike):

* the tunewatch server (recording on, no shadow) pinned to core 0 and an open-loop
  Poisson load of ``RATE`` requests/s from core 1 — ``bench/scoring.py``'s server and
  ``bench/_openloop.py``, a load the server alone holds easily;
* ``no_workers``: nothing else, the baseline;
* ``nice_0``: two real tuning workers (``tunewatch worker --job ID``, each on a queued
  retune job of its own whose budget outlasts the run), started as the launcher starts
  them but pinned to core 0 with the server (``taskset``), so they compete for its core,
  with ``tuning.worker_nice: 0``: the priority workers had before the setting;
* ``nice_default``: the same with the default ``tuning.worker_nice``.

Workers are stopped after each run (SIGTERM: they end after their running trial, their
job queued again; killed, their job queued again as the launcher does, past
``STOP_GRACE_S``), and the next run's resume the same studies. Reports per condition the median
over rounds of p50 and p99 latency, the p99 ratios over the baseline (of the medians, and
per round), the trials the workers trained per second while the load ran and the share
of a core they used (the tuning cost of the lower priority), and the server's mean
group-commit time (store lock waits included: a niced worker preempted while it holds
the write lock would show there).

Writes ``bench/results/worker_priority.json``. Run: ``.venv/bin/python
bench/worker_priority.py`` (``--rate``, ``--rounds``); about 3 minutes on a quiet 2-core
host, 8 on one loaded with other work (the workers' start and stop take longest).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import scoring  # noqa: E402
from retune import study_progress  # noqa: E402
from tunewatch._auth import hash_token, new_token  # noqa: E402
from tunewatch._background import _free_port  # noqa: E402
from tunewatch._config import Config, build_config  # noqa: E402
from tunewatch._daemon import Daemon  # noqa: E402
from tunewatch._example import example_models  # noqa: E402
from tunewatch._launcher_worker import (  # noqa: E402
    stderr_tail,
    worker_command,
    worker_environment,
    worker_id,
)
from tunewatch._open_store import open_store  # noqa: E402
from tunewatch._shipped_spaces import shipped_search_space  # noqa: E402
from tunewatch._tuning_results import study_name  # noqa: E402
from tunewatch.store import Store  # noqa: E402

MODEL = scoring.MODEL
#: Requests/s: about a quarter of what the no-shadow server scores saturated on a slow
#: host of ours (3.9k-11k requests/s across runs of bench/scoring.py), a sixth on a fast one.
RATE = 1000.0
ROUNDS = 3
WORKERS = 2
SERVER_CORE = "0"  # bench/scoring.py pins its server there, and its load to core 1
#: The conditions: each one's ``tuning.worker_nice`` (None: no workers; "default": unset).
CONDITIONS: dict[str, int | str | None] = {
    "no_workers": None,
    "nice_0": 0,
    "nice_default": "default",
}
DEFAULT_NICE = build_config({}, env={}).tuning.worker_nice
#: A budget no run comes near: the workers tune from start to stop in every run.
BUDGET: dict[str, Any] = {"max_trials": 100_000, "wall_time_s": 86_400, "patience": None}
CLAIM_TIMEOUT_S = 120
#: How long a stopped worker may take to end its running trial; past it, it is killed and
#: its job queued again, as the launcher does at shutdown (a niced trial on a busy host
#: may take long: the load is over, not the host's other work).
STOP_GRACE_S = 20


def _raw(data_dir: Path) -> dict[str, Any]:
    return {
        "data_dir": str(data_dir),
        # no leader: the server starts no worker, evaluation or purge of its own
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0, "max_concurrent_jobs": WORKERS},
        "models": [
            {
                "name": MODEL,
                "task": "binary",
                # the demo's space (logistic or shallow boosting), on the champion's
                # labelled reference (4,000 rows), 3-fold
                "tuning": {"search_space": str(shipped_search_space("demo.yaml")), **BUDGET},
                "triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 0}],
            }
        ],
    }


def _setup(workdir: Path) -> tuple[dict[str, Path], str, list[int]]:
    """The store (champion, scorer token, ``WORKERS`` queued retune jobs) and a config
    file per condition; ``(configs, token, job ids)``."""
    raw = _raw(workdir / "data")
    daemon = Daemon(build_config(raw, env={}), env={})
    try:
        champion = example_models(seed=0)[0]
        daemon.registry.register(
            MODEL,
            champion.onnx,
            champion.metadata,
            actor="bench",
            stage="champion",
            reference=champion.reference,
        )
        token = new_token()
        daemon.store.add_token(
            name="bench", role="scorer", token_hash=hash_token(token), actor="bench"
        )
        jobs = []
        for _ in range(WORKERS):
            outcome = daemon.dispatcher.handle(MODEL, "manual", {"reason": "bench"}, actor="bench")
            if outcome.job_id is None:
                raise RuntimeError(f"no retune job queued: {outcome.describe()}")
            jobs.append(outcome.job_id)
    finally:
        daemon.close()
    configs = {}
    for name, nice in CONDITIONS.items():
        tuning = raw["tuning"] | ({"worker_nice": nice} if isinstance(nice, int) else {})
        path = workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw | {"tuning": tuning}))
        configs[name] = path
    return configs, token, jobs


class _Workers:
    """``tunewatch worker --job ID`` for each job, as the launcher starts them (its
    command line and environment) but pinned to the server's core."""

    def __init__(self, config: Path, jobs: list[int]) -> None:
        self._stderr: list[IO[bytes]] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        for job in jobs:
            stderr = tempfile.TemporaryFile()
            self._stderr.append(stderr)
            self.procs.append(
                subprocess.Popen(
                    ["taskset", "-c", SERVER_CORE, *worker_command(config), str(job)],
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env=worker_environment(),
                )
            )

    def wait_claimed(self, store: Store, jobs: list[int]) -> None:
        """Until each worker has claimed its job (it lowered its priority first)."""
        deadline = time.monotonic() + CLAIM_TIMEOUT_S
        for job, proc, stderr in zip(jobs, self.procs, self._stderr, strict=True):
            while store.get_job(job).worker != worker_id(proc.pid):
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"the worker of job {job} exited ({proc.returncode}):\n"
                        f"{stderr_tail(stderr)}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the worker of job {job} did not claim it")
                time.sleep(0.1)

    def cpu_s(self) -> float:
        """CPU seconds the workers have used so far, every thread of them."""
        total = 0
        for proc in self.procs:
            stat = Path(f"/proc/{proc.pid}/stat").read_text()
            utime, stime = stat.rpartition(")")[2].split()[11:13]  # fields 14 and 15
            total += int(utime) + int(stime)
        return total / os.sysconf("SC_CLK_TCK")

    def niceness(self) -> list[int]:
        return [os.getpriority(os.PRIO_PROCESS, proc.pid) for proc in self.procs]

    def stop(self, store: Store, jobs: list[int]) -> int:
        """SIGTERM: each ends after its running trial, its job queued again; one still
        running ``STOP_GRACE_S`` later is killed and its job queued again here. Returns
        how many were killed."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        killed = 0
        for job, proc in zip(jobs, self.procs, strict=True):
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                store.requeue_job(job, worker_id(proc.pid))
                killed += 1
        for stderr in self._stderr:
            stderr.close()
        return killed


def _trained(config: Config, store: Store, jobs: list[int]) -> int:
    """Trials the jobs' studies have trained so far (cost rejections are not trained)."""
    total = 0
    for job in jobs:
        progress = study_progress(config.tuning_storage_url, study_name(store.get_job(job)))
        if progress is not None:
            total += progress.n_trials - progress.n_cost_rejected
    return total


def _commits(port: int) -> dict[str, float]:
    """The server's group commits so far (warm-up included): their mean time, lock waits
    included, and the share over 100 ms. A worker holds the store's write lock for its
    heartbeats and progress: preempted inside such a transaction (a niced one waits long
    for the core), it would hold up the server's commits, and its answers with them."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    name = "tunewatch_record_commit_seconds"

    def value(prefix: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        if not lines:
            raise RuntimeError(f"no {prefix} in /metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

    count = value(f"{name}_count")
    if not count:
        raise RuntimeError(f"no group commit in /metrics:\n{text}")
    return {
        "commit_mean_s": value(f"{name}_sum") / count,
        "commits_over_100ms_share": 1 - value(f'{name}_bucket{{le="0.1"}}') / count,
    }


def _measure(
    name: str, configs: dict[str, Path], jobs: list[int], body: Path, token: str, rate: float
) -> dict[str, Any]:
    """One run of condition ``name``: its server (and workers), the open-loop load."""
    config_path = configs[name]
    config = build_config(yaml.safe_load(config_path.read_text()), env={})
    store = open_store(config, create=False)
    try:
        port = _free_port()
        server = scoring._run_server(
            ["tunewatch", "--config", str(config_path), "--no-shadow"], port
        )
        workers = None
        phases: dict[str, float] = {}
        try:
            if CONDITIONS[name] is not None:
                t0 = time.monotonic()
                workers = _Workers(config_path, jobs)
                workers.wait_claimed(store, jobs)
                phases["claim_s"] = time.monotonic() - t0
            before = _trained(config, store, jobs) if workers is not None else 0
            cpu_before = workers.cpu_s() if workers is not None else 0.0
            started = time.monotonic()
            result: dict[str, Any] = dict(scoring._open_loop(port, body, token, rate))
            elapsed = time.monotonic() - started
            result |= _commits(port)
            if workers is not None:
                trained = _trained(config, store, jobs) - before
                result |= {
                    # of one core: what the workers got of the server's
                    "workers_cpu_share": (workers.cpu_s() - cpu_before) / elapsed,
                    "worker_niceness": workers.niceness(),
                    "trials": trained,
                    "trials_per_s": trained / elapsed,
                    "trials_window_s": elapsed,
                }
        finally:
            server.terminate()
            if workers is not None:
                t0 = time.monotonic()
                phases["killed_at_stop"] = workers.stop(store, jobs)
                phases["stop_s"] = time.monotonic() - t0
            server.wait(30)
    finally:
        store.close()
    return result | phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=RATE, help="requests/s (open loop)")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    started = time.time()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONDITIONS}
    with tempfile.TemporaryDirectory(prefix="tunewatch-bench-") as tmp:
        workdir = Path(tmp)
        configs, token, jobs = _setup(workdir)
        body = workdir / "body.json"
        body.write_text(scoring._infer_body())
        names = list(CONDITIONS)
        for i in range(args.rounds):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                runs[name].append(_measure(name, configs, jobs, body, token, args.rate))
                shown = {
                    k: v
                    for k, v in runs[name][-1].items()
                    if k in ("p50_s", "p99_s", "commit_mean_s", "trials_per_s", "workers_cpu_share")
                }
                print(f"round {i} {name}: {shown}", flush=True)

    def med(name: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[name]))

    def per_round(name: str) -> list[float]:
        return [
            r["p99_s"] / b["p99_s"] for r, b in zip(runs[name], runs["no_workers"], strict=True)
        ]

    with_workers = [n for n in CONDITIONS if CONDITIONS[n] is not None]
    p99_ratio = {n: med(n, "p99_s") / med("no_workers", "p99_s") for n in with_workers}
    result = {
        "benchmark": "worker_priority",
        "p99_ratio": p99_ratio,
        "p99_ratio_paired": {n: statistics.median(per_round(n)) for n in with_workers},
        "p99_ratio_paired_range": {n: [min(per_round(n)), max(per_round(n))] for n in with_workers},
        "trials_per_s": {n: med(n, "trials_per_s") for n in with_workers},
        "workers_cpu_share": {n: med(n, "workers_cpu_share") for n in with_workers},
        "conditions": {
            name: {
                "worker_nice": DEFAULT_NICE if nice == "default" else nice,
                **{
                    k: med(name, k)
                    for k in ("p50_s", "p99_s", "p999_s", "achieved_rps", "commit_mean_s")
                },
                **(
                    {k: med(name, k) for k in ("trials_per_s", "workers_cpu_share")}
                    if nice is not None
                    else {}
                ),
                "runs": runs[name],
            }
            for name, nice in CONDITIONS.items()
        },
        "settings": {
            "rate_rps": args.rate,
            "duration_s": scoring.DURATION_S,
            "warm_up_s": 2,
            "rounds": args.rounds,
            "workers": WORKERS,
            "server_core": int(SERVER_CORE),
            "workers_core": int(SERVER_CORE),
            "load_core": 1,
            "server": "tunewatch, recording on, no shadow (bench/_servers.py)",
            "load_generator": "bench/_openloop.py: Poisson arrivals, a fixed pool of 32 "
            "connections, latency from each request's scheduled time",
            "model": "example logistic pipeline (8 features), batch 1",
            "tuning": "the shipped binary_tabular space on the champion's 4,000 labelled "
            "reference rows, 3-fold; trials_per_s: trials trained (all jobs) from the "
            "workers' claims to the end of the load, warm-up included",
            "budget": BUDGET,
        },
        "host": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "load_average_at_end": list(os.getloadavg()),
        },
        "versions": {
            p: version(p) for p in ("tunewatch", "onnxruntime", "scikit-learn", "optuna", "uvicorn")
        }
        | {"python": platform.python_version()},
        "wall_time_s": time.time() - started,
    }
    out = ROOT / "bench" / "results" / "worker_priority.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {
        name: {
            "p50_ms": round(1e3 * med(name, "p50_s"), 2),
            "p99_ms": round(1e3 * med(name, "p99_s"), 2),
            **(
                {
                    "p99_ratio": round(p99_ratio[name], 2),
                    "trials_per_s": round(med(name, "trials_per_s"), 3),
                    "workers_cpu_share": round(med(name, "workers_cpu_share"), 3),
                }
                if name in with_workers
                else {}
            ),
        }
        for name in CONDITIONS
    }
    print(json.dumps(summary, indent=2))
    print(f"wrote {out} in {result['wall_time_s']:.0f} s")


if __name__ == "__main__":
    main()
