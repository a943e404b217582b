"""Scoring benchmark: tunewatch against a minimal Starlette + onnxruntime server.

Runs in one go, on the same model and the same load generator (wrk, 16 connections,
batch 1, server pinned to core 0 and wrk to core 1):

(a) HTTP throughput of tunewatch (recording on, one shadow challenger) over the bare
    server's, and the same with recording and shadow off;
(b) the champion's p99 latency with three shadow challengers over p99 with none, at
    saturation (wrk, ``shadow_p99_ratio``) and at half of the no-shadow server's
    saturated throughput (an open-loop Poisson load from ``bench/_openloop.py``,
    ``shadow_p99_ratio_open_loop``; the bare server runs at the same rate for scale);
(c) in-process scoring overhead (validation + scoring) per call over bare
    ``session.run``, at batch 1 and batch 256.

Every tunewatch run also reports ``shadow_dropped_share``: the requests its challengers
did not score (shadow queue full, or the shadow CPU share spent), read from ``/metrics``
after the run (its 2 s warm-up included).
``shedding`` is the trade a lower ``scoring.shadow_cpu_share`` (``SHED_SHARE``) buys at
saturation: the three-shadow server's p99 and throughput against the no-shadow one, and
the share of requests its challengers skipped.

Writes ``bench/results/scoring.json``. Needs Debian's ``wrk`` (``apt-get install wrk``).
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tunewatch._auth import hash_token, new_token  # noqa: E402
from tunewatch._background import _free_port  # noqa: E402
from tunewatch._config import build_config  # noqa: E402
from tunewatch._daemon import Daemon  # noqa: E402
from tunewatch._example import ExampleModel, example_data, example_models  # noqa: E402
from tunewatch._version_metadata import VersionMetadata  # noqa: E402

DURATION_S = 6
CONNECTIONS = 16
OPEN_LOOP_LOAD = 0.5  # share of the no-shadow server's saturated throughput, per round
SHED_SHARE = 0.05  # a shadow CPU share that binds at saturation, for the trade-off it buys
DEFAULT_SHARE = build_config({}, env={}).scoring.shadow_cpu_share  # what every other run has
ROUNDS = 5
MODEL = "credit"


def _extra_challengers(seed: int) -> list[ExampleModel]:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    from retune import to_onnx
    from tunewatch._example import feature_names

    x, y = example_data(4000, seed=seed)
    out = []
    for name, est in (
        ("gbm-deep", GradientBoostingClassifier(n_estimators=80, max_depth=4, random_state=seed)),
        ("forest", RandomForestClassifier(n_estimators=50, max_depth=6, random_state=seed)),
    ):
        est.fit(x, y)
        out.append(
            ExampleModel(
                name,
                to_onnx(est, 8, name=name),
                VersionMetadata(
                    task="binary",
                    feature_names=feature_names(8),
                    hyperparameters={"estimator": name},
                ),
            )
        )
    return out


def _setup(workdir: Path, n_challengers: int, models: list[ExampleModel]) -> tuple[Path, str]:
    data = workdir / f"data-{n_challengers}"
    config = build_config({"data_dir": str(data)}, env={})
    daemon = Daemon(config, env={})
    daemon.registry.register(
        MODEL, models[0].onnx, models[0].metadata, actor="bench", stage="champion"
    )
    for m in models[1 : 1 + n_challengers]:
        daemon.registry.register(MODEL, m.onnx, m.metadata, actor="bench", stage="shadow")
    token = new_token()
    daemon.store.add_token(name="bench", role="scorer", token_hash=hash_token(token), actor="bench")
    daemon.close()
    path = workdir / f"config-{n_challengers}.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(data)}))
    return path, token


def _with_scoring(config: Path, name: str, scoring: dict[str, object]) -> Path:
    """A copy of ``config`` with other ``scoring`` settings (same data and tokens)."""
    path = config.with_name(f"{name}.yaml")
    path.write_text(yaml.safe_dump(yaml.safe_load(config.read_text()) | {"scoring": scoring}))
    return path


def _infer_body() -> str:
    """The one request every load generator sends: batch 1, JSON tensors."""
    x, _ = example_data(1, seed=9)
    tensor = {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": x[0].tolist()}
    return json.dumps({"inputs": [tensor]})


def _lua(workdir: Path, token: str) -> Path:
    body = _infer_body()
    script = workdir / f"post-{hash_token(token)[:12]}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    )
    return script


def _run_server(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            str(ROOT / "bench" / "_servers.py"),
            *args,
            "--port",
            str(port),
        ],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server {args} did not start")


def _seconds(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if match is None:
        raise ValueError(f"not a wrk duration: {value!r}")
    num, unit = match.groups()
    return float(num) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]


def _wrk(port: int, script: Path) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer"
    warm = ["taskset", "-c", "1", "wrk", "-t1", f"-c{CONNECTIONS}", "-d2s", "-s", str(script), url]
    subprocess.run(warm, capture_output=True, check=True)
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{DURATION_S}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    try:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        p99 = _seconds(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
        p50 = _seconds(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    except (AttributeError, ValueError) as exc:
        raise RuntimeError(f"could not read wrk's report ({exc}):\n{out}") from exc
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} failed responses:\n{out}")
    return {"rps": rps, "p50_s": p50, "p99_s": p99}


def _open_loop(port: int, body: Path, token: str, rate: float) -> dict[str, float]:
    command = [
        "taskset",
        "-c",
        "1",
        sys.executable,
        str(ROOT / "bench" / "_openloop.py"),
        "--port",
        str(port),
        "--path",
        f"/v2/models/{MODEL}/infer",
        "--body",
        str(body),
        "--header",
        f"Authorization: Bearer {token}",
        "--rate",
        f"{rate:.0f}",
    ]
    subprocess.run([*command, "--duration", "2"], capture_output=True, check=True)  # warm-up
    out = subprocess.run(
        [*command, "--duration", str(DURATION_S)], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, float] = json.loads(out)
    if result["errors"] or result["answered"] != result["sent"]:
        raise RuntimeError(f"open-loop run lost or failed requests: {result}")
    return result


def _measure(
    args: list[str], script: Path, load: Callable[[int], dict[str, float]] | None = None
) -> dict[str, float]:
    port = _free_port()
    proc = _run_server(args, port)
    try:
        result = load(port) if load is not None else _wrk(port, script)
        if args[0] == "tunewatch":
            result["shadow_dropped_share"] = _dropped_share(port)
        return result
    finally:
        proc.terminate()
        proc.wait(30)


def _dropped_share(port: int) -> float:
    """Requests the challengers did not score (queue full or CPU share spent), over all."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text

    def total(name: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(f'{name}{{model="{MODEL}"')
        )

    rows = total("tunewatch_inference_rows_total")  # batch 1: rows are requests
    if not rows:
        raise RuntimeError(f"no scored rows in /metrics:\n{text}")
    return total("tunewatch_shadow_dropped_total") / rows


def _in_process(models: list[ExampleModel], workdir: Path) -> dict[str, dict[str, float]]:
    config = build_config({"data_dir": str(workdir / "inproc")}, env={})
    daemon = Daemon(config, env={})
    daemon.registry.register(
        MODEL, models[0].onnx, models[0].metadata, actor="bench", stage="champion"
    )
    daemon.runtime.load(MODEL)
    served = daemon.runtime.model(MODEL)
    session = served.deployment.lineup.champion.model  # type: ignore[union-attr]
    out = {}
    for batch in (1, 256):
        x, _ = example_data(batch, seed=5)
        x = np.clip(x, -9, 9)
        n = 20000 if batch == 1 else 2000

        def bare(x: np.ndarray = x, n: int = n) -> None:
            for _ in range(n):
                session.run(x)

        def full(x: np.ndarray = x, n: int = n) -> None:
            for _ in range(n):
                daemon.runtime.score(served, daemon.runtime.validate(served, x))

        timings: dict[str, list[float]] = {"bare": [], "tunewatch": []}
        for _ in range(5):
            for name, fn in (("bare", bare), ("tunewatch", full)):
                t0 = time.perf_counter()
                fn()
                timings[name].append((time.perf_counter() - t0) / n)
        b, t = min(timings["bare"]), min(timings["tunewatch"])
        out[str(batch)] = {
            "bare_us": b * 1e6,
            "tunewatch_us": t * 1e6,
            "overhead_us": (t - b) * 1e6,
            "ratio": t / b,
        }
    daemon.close()
    return out


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench/scoring.py needs wrk: apt-get install -y wrk")
    started = time.time()
    models = example_models(seed=0) + _extra_challengers(seed=1)
    with tempfile.TemporaryDirectory(prefix="tunewatch-bench-") as tmp:
        workdir = Path(tmp)
        model_path = workdir / "champion.onnx"
        model_path.write_bytes(models[0].onnx)
        cfg0, token0 = _setup(workdir, 0, models)
        cfg1, token1 = _setup(workdir, 1, models)
        cfg3, token3 = _setup(workdir, 3, models)
        runs: dict[str, list[dict[str, float]]] = {}
        plan = {
            "baseline": (["baseline", "--model", str(model_path)], _lua(workdir, "none")),
            "tunewatch_full": (["tunewatch", "--config", str(cfg1)], _lua(workdir, token1)),
            "tunewatch_bare": (
                ["tunewatch", "--config", str(cfg1), "--no-recording", "--no-shadow"],
                _lua(workdir, token1),
            ),
            "shadows_0": (["tunewatch", "--config", str(cfg0)], _lua(workdir, token0)),
            "shadows_3": (["tunewatch", "--config", str(cfg3)], _lua(workdir, token3)),
            "shadows_3_shed": (
                [
                    "tunewatch",
                    "--config",
                    str(_with_scoring(cfg3, "shed", {"shadow_cpu_share": SHED_SHARE})),
                ],
                _lua(workdir, token3),
            ),
        }
        body = workdir / "body.json"
        body.write_text(_infer_body())
        tokens = [("baseline", "none"), ("shadows_0", token0), ("shadows_3", token3)]
        open_runs: dict[str, list[dict[str, float]]] = {}
        names = list(plan)
        for i in range(ROUNDS):  # interleaved rounds, so drift in machine load hits all alike
            # Rotated per round, as the open-loop runs below: servers sharing a store
            # (three shadows, shed or not) take turns at running on the fuller store.
            for name in names[i % len(names) :] + names[: i % len(names)]:
                args, script = plan[name]
                runs.setdefault(name, []).append(_measure(args, script))
                print(f"{name}: {runs[name][-1]}", flush=True)
            rate = OPEN_LOOP_LOAD * runs["shadows_0"][-1]["rps"]
            # Rotated per round: none of the three always runs last, on the fullest store.
            for name, token in tokens[i % 3 :] + tokens[: i % 3]:

                def load(port: int, token: str = token, rate: float = rate) -> dict[str, float]:
                    return _open_loop(port, body, token, rate)

                open_runs.setdefault(name, []).append(_measure(plan[name][0], Path(), load))
                print(f"{name} open loop at {rate:.0f}/s: {open_runs[name][-1]}", flush=True)
        inproc = _in_process(models, workdir)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    def paired(name: str) -> float:
        # Per round, over the baseline of the same round: the host's speed drifts between
        # rounds (±20 % here), and a ratio within a round cancels most of it.
        return statistics.median(
            r["rps"] / b["rps"] for r, b in zip(runs[name], runs["baseline"], strict=True)
        )

    def against_no_shadows(name: str) -> dict[str, float]:
        return {
            "shadow_p99_ratio": med(name, "p99_s") / med("shadows_0", "p99_s"),
            "throughput_over_no_shadows": med(name, "rps") / med("shadows_0", "rps"),
            "shadow_dropped_share": med(name, "shadow_dropped_share"),
        }

    open_ratios = [
        s3["p99_s"] / s0["p99_s"]
        for s3, s0 in zip(open_runs["shadows_3"], open_runs["shadows_0"], strict=True)
    ]
    result = {
        "throughput_ratio": med("tunewatch_full", "rps") / med("baseline", "rps"),
        "throughput_ratio_bare": med("tunewatch_bare", "rps") / med("baseline", "rps"),
        "shadow_p99_ratio": against_no_shadows("shadows_3")["shadow_p99_ratio"],
        "shadow_p99_ratio_open_loop": statistics.median(r["p99_s"] for r in open_runs["shadows_3"])
        / statistics.median(r["p99_s"] for r in open_runs["shadows_0"]),
        "shedding": {
            "shadow_cpu_share": SHED_SHARE,
            **against_no_shadows("shadows_3_shed"),
            "at_default_share": {
                "shadow_cpu_share": DEFAULT_SHARE,
                **against_no_shadows("shadows_3"),
            },
        },
        "open_loop": {
            "load": f"{OPEN_LOOP_LOAD:g} x the no-shadow server's saturated throughput of the "
            "round, Poisson arrivals, latency from each request's scheduled time",
            **{
                name: {
                    key: statistics.median(r[key] for r in rs)
                    for key in ("offered_rps", "p50_s", "p99_s", "p999_s", "p99_from_send_s")
                    + (("shadow_dropped_share",) if name != "baseline" else ())
                }
                | {"runs": rs}
                for name, rs in open_runs.items()
            },
        },
        "paired_round_ratios": {
            "throughput_ratio": paired("tunewatch_full"),
            "throughput_ratio_bare": paired("tunewatch_bare"),
            # per round (same offered rate), then the median; and the rounds' range
            "shadow_p99_ratio_open_loop": statistics.median(open_ratios),
            "shadow_p99_ratio_open_loop_range": [min(open_ratios), max(open_ratios)],
        },
        "in_process": inproc,
        "raw": {
            name: {
                "rps": med(name, "rps"),
                "p50_s": med(name, "p50_s"),
                "p99_s": med(name, "p99_s"),
                **(
                    {"shadow_dropped_share": med(name, "shadow_dropped_share")}
                    if name != "baseline"
                    else {}
                ),
                "runs": r,
            }
            for name, r in runs.items()
        },
        "setup": {
            "connections": CONNECTIONS,
            "batch": 1,
            "duration_s": DURATION_S,
            "rounds": ROUNDS,
            "server_core": 0,
            "load_core": 1,
            "load_generator": "wrk (closed loop); bench/_openloop.py (open loop, a fixed "
            "pool of 32 connections: a request due while all are busy waits for one, and "
            "the wait counts in its latency, as in wrk2)",
            "model": "example logistic pipeline (8 features)",
            "challenger_full": "gradient boosting, 60 trees",
            "challengers_3": "gradient boosting 60 + 80 trees, random forest 50",
            "shadow_cpu_share": DEFAULT_SHARE,
        },
        "versions": {
            p: version(p)
            for p in (
                "onnxruntime",
                "numpy",
                "fastapi",
                "starlette",
                "uvicorn",
                "sqlalchemy",
                "scikit-learn",
            )
        }
        | {"python": platform.python_version()},
        "wall_time_s": time.time() - started,
    }
    out = ROOT / "bench" / "results" / "scoring.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "throughput_ratio",
                    "throughput_ratio_bare",
                    "shadow_p99_ratio",
                    "shadow_p99_ratio_open_loop",
                )
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
