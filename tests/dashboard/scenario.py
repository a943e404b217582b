"""The seeded dashboard scenario, shared by the tests and ``bench/dashboard.py``."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from shadow.stats import PairedSequentialTest
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._demo import MODEL, run_demo
from tunewatch.store import Store
from tunewatch.store._comparisons import ComparisonStore, LookValues
from tunewatch.store._schema import evaluations

ROLES = ("viewer", "operator", "scorer")


@dataclass
class Served:
    daemon: Daemon
    server: BackgroundServer
    tokens: dict[str, str]
    model: str = MODEL

    @property
    def url(self) -> str:
        return self.server.url

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def session_cookie(url: str, token: str) -> dict[str, str]:
    """Sign in through the dashboard's form as a browser does, and return its session
    cookie (which holds a session id, not the token)."""
    r = httpx.post(
        f"{url}/dashboard/login",
        content=f"token={token}",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Sec-Fetch-Site": "same-origin",
        },
        follow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 303, r.text
    return {"tunewatch_session": r.cookies["tunewatch_session"]}


def seeded_dir(data_dir: Path) -> Path:
    """Run the demo into ``data_dir`` (its progress lines are swallowed) and seed it."""
    with contextlib.redirect_stdout(io.StringIO()):
        code = run_demo(data_dir=data_dir)
    if code != 0:
        raise RuntimeError(f"the demo failed (exit {code}); no scenario to serve")
    return seed_sequential_test(data_dir)


def seed_sequential_test(data_dir: Path) -> Path:
    """Add :func:`add_sequential_test` to the demo's store in ``data_dir``."""
    with Store.open(build_config({"data_dir": str(data_dir)}, env={}).store_url) as store:
        add_sequential_test(store, MODEL)
    return data_dir


@contextmanager
def serve(data_dir: Path) -> Iterator[Served]:
    config = build_config(
        {"data_dir": str(data_dir), "scheduler": {"enabled": False}, "tuning": {"workers": 0}},
        env={},
    )
    daemon = Daemon(config, env={})
    tokens = {}
    for role in ROLES:
        tokens[role] = new_token()
        daemon.store.add_token(
            name=f"dash-{role}-{tokens[role][-6:]}",
            role=role,
            token_hash=hash_token(tokens[role]),
            actor="test",
        )
    try:
        with BackgroundServer(daemon.app) as server:
            yield Served(daemon=daemon, server=server, tokens=tokens)
    finally:
        daemon.close()


def add_year_of_windows(store: Store, model: str, *, hours: int = 24 * 365, seed: int = 0) -> None:
    """Hourly drift, estimate, label and telemetry evaluations for a year, ending now
    (bulk-inserted: the shape a long-running daemon leaves behind)."""
    rng = np.random.default_rng(seed)
    features = list(store.get_model(model).feature_names)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows: list[dict[str, Any]] = []
    for h in range(hours):
        at = end - timedelta(hours=hours - h)
        base = {"model": model, "window_start": at - timedelta(hours=1), "window_end": at}
        ps = rng.uniform(0, 1, len(features)) ** (1 + 3 * (h / hours))
        columns = [
            {
                "column": f,
                "method": "ks",
                "statistic": float(1 - p) / 4,
                "p_value": float(p),
                "threshold": 0.05,
                "drifted": bool(p < 0.05),
                "status": "ok",
                "n_cur": 500,
            }
            for f, p in zip(features, ps, strict=True)
        ]
        drifted = [c["column"] for c in columns if c["drifted"]]
        share = len(drifted) / len(features)
        rows += [
            {
                **base,
                "version": None,
                "kind": "drift",
                "status": "drift" if share > 0.5 else "ok",
                "payload": {
                    "alarm": share > 0.5,
                    "drifted_share": share,
                    "drifted_columns": drifted,
                    "rule": "share",
                    "columns": columns,
                },
            },
            {
                **base,
                "version": None,
                "kind": "estimate",
                "status": "ok",
                "payload": {
                    "alarm": False,
                    "estimated": 0.8 - 0.1 * h / hours,
                    "ci": [0.78 - 0.1 * h / hours, 0.82 - 0.1 * h / hours],
                    "realised": float(0.8 - 0.1 * h / hours + rng.normal(0, 0.01)),
                    "n": 500,
                    "n_labelled": 400,
                },
            },
            {
                **base,
                "version": None,
                "kind": "labels",
                "status": "ok",
                "payload": {"alarm": False, "coverage": 0.8, "median_delay_s": 3600.0, "n": 500},
            },
            {
                **base,
                "version": None,
                "kind": "telemetry",
                "status": "ok",
                "payload": {
                    "alarm": False,
                    "versions": {
                        "1": {
                            "p50": 0.001,
                            "p90": 0.002,
                            "p99": float(0.003 + rng.uniform(0, 0.001)),
                            "n": 500,
                            "hyperparameter_set": "a" * 16,
                            "memory_bytes": 2**20,
                        }
                    },
                },
            },
        ]
    for row in rows:
        row["created_at"] = row["window_end"]
    with store.engine.begin() as conn:
        conn.execute(evaluations.insert(), rows)


def add_sequential_test(store: Store, model: str, *, seed: int = 0) -> int:
    """A paired always-valid test of the current champion against its predecessor, fed
    seeded loss differences 50 at a time until it decides (the demo's own test decides
    at its first look, so it shows no narrowing); returns the test id."""
    champion = store.champion(model)
    assert champion is not None and champion.parent_version is not None
    comparisons = ComparisonStore(store)
    test, _ = comparisons.get_or_create_test(
        model=model,
        kind="paired",
        champion_version=champion.version,
        challenger_version=champion.parent_version,
        correction=None,
        state={},
    )
    rng = np.random.default_rng(seed)
    sequential = PairedSequentialTest(planned_n=4000, min_n=50, bootstrap_resamples=0, seed=seed)
    for _ in range(200):
        look = sequential.update(rng.normal(0.08, 0.6, 50))
        test = comparisons.record_look(
            test,
            consumed=[],
            look=LookValues(
                method="confidence_sequence",
                n=look.n,
                estimate=look.estimate,
                ci_low=look.ci_low,
                ci_high=look.ci_high,
                p_value=look.p_value,
                adjusted_p_value=look.p_value,
                decision=look.decision,
                fixed_t_p=look.fixed_t_p,
            ),
            state={},
            status="open" if look.decision == "continue" else "decided",
        )
        if look.decision != "continue":
            break
    return test.id
