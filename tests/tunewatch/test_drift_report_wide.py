"""A wide model's drift report is bounded by the columns it shows: the prediction and the
label, then the columns the verdict drifted, then the most drifted by the verdict's scores,
up to ``?features=`` features (50 by default, at most 1,000 as the dashboard's heatmap),
and it says how many columns it left out.

evidently's report was built over every column the verdict tested: 200 features took 40 s
and 17.9 MB of HTML, 1,000 features 149-312 s and 800 MB more, and scoring's p99 went from
7.8 to 129 ms meanwhile; 3,000 never finished in 15 minutes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from retune import to_onnx
from shadow import OnnxModel
from tests.tunewatch.conftest import MODEL, Clock, champion_answered
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._drift_frame import LABEL, PREDICTION
from tunewatch._example import example_data, feature_names
from tunewatch._reference import Reference
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import LabelItem

FEATURES = 300
SHIFTED = 8  # the first features, moved in the window: the verdict drifts them
WINDOW = 100  # drift.min_rows: few rows, evidently's build stays quick
WAIT_S = 300  # a safety net for a broken build, never the thing a test measures
DEFAULT_CAP = 50
# evidently's column table holds one row per column it shows
_SECTION = re.compile(r'"column_name": "([^"]*)"')


@dataclass
class Wide:
    daemon: Daemon
    url: str
    token: str
    drift_id: int
    drifted: list[str]  # the columns the verdict drifted
    tested: int  # the columns the verdict tested

    def report(self, query: str = "") -> httpx.Response:
        return httpx.get(
            f"{self.url}/v1/models/{MODEL}/evaluations/{self.drift_id}/report{query}",
            headers={"Authorization": f"Bearer {self.token}", "Accept-Encoding": "identity"},
            timeout=WAIT_S,
        )


def _sections(page: str) -> list[str]:
    return _SECTION.findall(page)


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wide]:
    """A served daemon of a 300-feature logistic champion, with one stored drift verdict of
    a window whose first features moved, its report unbuilt."""
    x, y = example_data(600, n_features=FEATURES, seed=0)
    estimator = LogisticRegression(max_iter=300).fit(x, y)
    config = build_config(
        {
            "data_dir": str(tmp_path_factory.mktemp("wide")),
            "scheduler": {"enabled": False},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "evaluation": {
                        "window_rows": WINDOW,
                        "decay": {"window_s": 3600, "maturity_s": 0},
                    },
                }
            ],
        },
        env={},
    )
    d = Daemon(config, env={})
    try:
        d.registry.register(
            MODEL,
            to_onnx(estimator, FEATURES, name="wide"),
            VersionMetadata(
                task="binary",
                feature_names=feature_names(FEATURES),
                hyperparameters={"estimator": "logistic", "C": 1.0},
                dataset_version="wide-300",
            ),
            actor="test",
            stage="champion",
            reference=Reference(features=x, labels=y.astype(np.float64)),
        )
        token = new_token()
        d.store.add_token(name="viewer", role="viewer", token_hash=hash_token(token), actor="t")
        clock = Clock()
        d.evaluator.clock = clock
        window, labels = example_data(WINDOW, n_features=FEATURES, seed=5)
        window[:, :SHIFTED] += 2.0
        champion = d.store.champion(MODEL)
        assert champion is not None
        session = OnnxModel.from_bytes(d.artefacts.get(champion.artefact_sha256))
        scores = session.primary(session.run(window))
        requests, outputs = [], []
        for i in range(WINDOW):
            clock.now += timedelta(seconds=1)
            request, output = champion_answered(
                f"r{i}", clock.now, window[i : i + 1], scores[i : i + 1], version=champion.version
            )
            requests.append(request)
            outputs.append(output)
        d.store.write_records(requests, outputs)
        d.store.add_labels(
            MODEL, [LabelItem(request_id=f"r{i}", value=float(labels[i])) for i in range(WINDOW)]
        )
        clock.now += timedelta(seconds=1)
        (drift,) = [r for r in d.evaluator.evaluate(MODEL) if r.kind == "drift"]
        assert drift.status == "ok"
        tested = [c for c in drift.payload["columns"] if c.get("status") != "insufficient_data"]
        with BackgroundServer(d.app) as server:
            yield Wide(
                d, server.url, token, drift.id, list(drift.payload["drifted_columns"]), len(tested)
            )
    finally:
        d.close()


def test_a_wide_models_report_shows_at_most_the_cap_and_says_how_many_it_left_out(
    wide: Wide,
) -> None:
    assert {f"x{i}" for i in range(SHIFTED)} <= set(wide.drifted)
    r = wide.report()
    assert r.status_code == 200, r.text[:300]
    shown = _sections(r.text)
    assert len(shown) == len(set(shown))
    features = [c for c in shown if c not in (PREDICTION, LABEL)]
    assert len(features) <= DEFAULT_CAP
    assert len(shown) <= DEFAULT_CAP + 2
    # the columns the verdict drifted are shown, the prediction too
    assert set(wide.drifted) <= set(shown)
    assert PREDICTION in shown
    # the page says how many it left out of how many the verdict tested
    assert f"{len(shown)} of {wide.tested} columns shown" in r.text
    assert f"the verdict tested all {wide.tested}" in r.text
    # built once, stored, and served from the store again
    (stored,) = wide.daemon.store.list_evaluations(MODEL, kind="drift_report")
    assert stored.payload["evaluation"] == wide.drift_id
    assert wide.report().text == r.text


def test_a_smaller_cap_shows_the_most_drifted_and_builds_a_report_of_its_own(
    wide: Wide,
) -> None:
    r = wide.report("?features=5")
    assert r.status_code == 200, r.text[:300]
    shown = _sections(r.text)
    features = [c for c in shown if c not in (PREDICTION, LABEL)]
    assert len(features) == 5 and len(shown) <= 7
    # the five most drifted of those the verdict drifted: the shifted features
    assert set(features) <= {f"x{i}" for i in range(SHIFTED)}
    assert f"{len(shown)} of {wide.tested} columns shown" in r.text
    # the default's report is kept, not replaced by another cap's
    stored = wide.daemon.store.list_evaluations(MODEL, kind="drift_report")
    assert len(stored) <= 1
    if stored:
        page = wide.report().text
        assert len([c for c in _sections(page) if c not in (PREDICTION, LABEL)]) > 5


@pytest.mark.parametrize("query", ["?features=0", "?features=1001", "?features=x"])
def test_a_cap_outside_the_heatmaps_bounds_is_refused(wide: Wide, query: str) -> None:
    r = wide.report(query)
    assert r.status_code == 400, r.text[:300]
    assert r.json()["code"] == "invalid_request" and "features" in r.json()["error"]
