"""The A/B page shows the live split's newest sample-ratio check whatever comparison tests
the current champion has: it was read from the tests' summary, so a model whose objective
no test fits (PR AUC), or a champion just promoted, showed "no split configured or
checked" while the stored check said the split was broken and promotions were blocked."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import update

from tests.dashboard.scenario import session_cookie
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch.store import OutputRecord, RequestRecord
from tunewatch.store._schema import model_versions

MODEL = "m"


@dataclass
class Split:
    daemon: Daemon
    url: str
    token: str


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Split]:
    """A PR AUC model (no comparison test fits it) with a 50 % live split to v2 whose
    units all landed in the champion arm, checked by a real comparison run."""
    config = build_config(
        {
            "data_dir": str(Path(tmp_path_factory.mktemp("ab-split"))),
            "scheduler": {"enabled": False},
            "tuning": {"workers": 0},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "objective": {"name": "pr_auc"},
                    "comparison": {
                        "split": {"challenger": 2, "percent": 50, "salt": "s"},
                        "srm_min_requests": 100,
                    },
                }
            ],
        },
        env={},
    )
    d = Daemon(config, env={})
    try:
        token = new_token()
        d.store.add_token(name="v", role="viewer", token_hash=hash_token(token), actor="t")
        d.store.ensure_model(name=MODEL, task="binary", feature_names=["a"])
        for stage in ("champion", "shadow"):
            d.store.add_version(
                model=MODEL,
                artefact_sha256="0" * 64,
                hyperparameters={},
                size_bytes=1,
                actor="t",
                details={"parity_error": 0.0},
                load_memory_bytes=1,
                stage=stage,
            )
        start = datetime.now(UTC) - timedelta(hours=5)
        with d.store.engine.begin() as conn:
            conn.execute(update(model_versions).values(created_at=start, stage_changed_at=start))
        x = np.zeros((1, 1), np.float32).tobytes()
        y = np.zeros((1, 1), np.float32).tobytes()
        reqs, outs = [], []
        for i in range(400):  # one unit in ten answered by v2 at a 50 % split: a mismatch
            at = start + timedelta(seconds=10 * i + 60)
            version = 2 if i % 10 == 0 else 1
            reqs.append(RequestRecord(MODEL, f"r{i}", at, "infer", 1, 1, x, unit_key=f"u{i}"))
            outs.append(OutputRecord(MODEL, f"r{i}", version, "champion", 0.001, 1, 1, y, at))
        d.store.write_records(reqs, outs)
        assert d.comparisons.run(MODEL) == []  # no test fits PR AUC; the split is checked
        with BackgroundServer(d.app) as server:
            yield Split(d, server.url, token)
    finally:
        d.close()


def test_the_comparison_run_stored_a_mismatch_and_no_test(split: Split) -> None:
    check = split.daemon.comparisons.comparisons.latest_split_check(MODEL, salt="s")
    assert check is not None and check.mismatch
    assert split.daemon.comparisons.summary(MODEL) == []


def test_ab_json_shows_the_stored_split_check_of_a_champion_without_tests(split: Split) -> None:
    r = httpx.get(
        f"{split.url}/v1/dashboard/models/{MODEL}/ab",
        headers={"Authorization": f"Bearer {split.token}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["tests_total"] == 0
    check = split.daemon.comparisons.comparisons.latest_split_check(MODEL, salt="s")
    assert check is not None
    assert body["srm"] == {
        "champion_version": 1,
        "challenger_version": 2,
        "percent": 50.0,
        "n_champion": check.n_champion,
        "n_challenger": check.n_challenger,
        "chi2": check.chi2,
        "p_value": check.p_value,
        "mismatch": True,
        "created_at": check.created_at.isoformat(),
    }


def test_ab_page_shows_the_mismatch_of_a_champion_without_tests(split: Split) -> None:
    r = httpx.get(
        f"{split.url}/dashboard/models/{MODEL}/ab",
        cookies=session_cookie(split.url, split.token),
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert "Live split (SRM): " in r.text and "MISMATCH" in r.text
    assert "no split configured or checked" not in r.text
