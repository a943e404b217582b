"""The drift page's latest window holds the columns the heatmap shows, with the prediction
and the label: not every column of a wide model. With the default 50 features a 3,000-
feature model's ``latest.columns`` still carried all 3,002 (1.16 MB of JSON), and the
page's table as many rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._drift_frame import LABEL, PREDICTION

MODEL = "wide"
FEATURES = 200
DRIFTED = ("x3", "x77", "x150")  # the window's drifted features


def _column(name: str) -> dict[str, Any]:
    drifted = name in DRIFTED or name == PREDICTION
    return {
        "column": name,
        "method": "ks",
        "statistic": 0.4 if drifted else 0.05,
        "p_value": 1e-6 if drifted else 0.6,
        "threshold": 0.05,
        "drifted": drifted,
        "status": "ok",
        "reason": None,
        "n_ref": 1000,
        "n_cur": 200,
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A served daemon holding one drift window of a 200-feature model (its verdict's
    payload as the evaluation stores it: every feature, the prediction and the label)."""
    config = build_config(
        {
            "data_dir": str(tmp_path_factory.mktemp("wide") / "data"),
            "scheduler": {"enabled": False},
            "tuning": {"workers": 0},
            "models": [{"name": MODEL, "task": "binary"}],
        },
        env={},
    )
    names = [f"x{i}" for i in range(FEATURES)]
    d = Daemon(config, env={})
    try:
        token = new_token()
        d.store.add_token(name="v", role="viewer", token_hash=hash_token(token), actor="t")
        d.store.ensure_model(name=MODEL, task="binary", feature_names=names)
        end = datetime.now(UTC) - timedelta(hours=1)
        columns = [_column(n) for n in [*names, PREDICTION, LABEL]]
        d.store.add_evaluation(
            model=MODEL,
            version=None,
            kind="drift",
            status="drift",
            window_start=end - timedelta(hours=1),
            window_end=end,
            payload={
                "alarm": True,
                "rule": "share",
                "drifted_share": 4 / len(columns),
                "drifted_columns": sorted([*DRIFTED, PREDICTION]),
                "columns": columns,
            },
        )
        with BackgroundServer(d.app) as server:
            yield server.url, token
    finally:
        d.close()


def test_the_latest_window_holds_the_shown_features_the_prediction_and_the_label(
    served: tuple[str, str],
) -> None:
    url, token = served
    r = httpx.get(
        f"{url}/v1/dashboard/models/{MODEL}/drift?features=5",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    latest = body["latest"]
    assert len(body["features"]) == 5
    assert len(latest["columns"]) <= 7
    names = [c["column"] for c in latest["columns"]]
    assert set(names) == {*body["features"], PREDICTION, LABEL}
    # the drifted features are among the heatmap's five, so among the latest's columns
    assert set(DRIFTED) <= set(names)
    assert latest["columns_total"] == FEATURES + 2


def test_every_column_is_kept_when_the_heatmap_shows_every_feature(
    served: tuple[str, str],
) -> None:
    url, token = served
    r = httpx.get(
        f"{url}/v1/dashboard/models/{MODEL}/drift?features=1000",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    latest = r.json()["latest"]
    assert len(latest["columns"]) == latest["columns_total"] == FEATURES + 2
