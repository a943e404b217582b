"""Feedback labels a job could not train on are refused before they are stored: a
regression label or an outcome past float32's range (every stored input and output is
held to it; a label of 1e300 made every retune of its model fail with an infinite loss),
and a class index of a multiclass model checked even on a process that has not loaded
the champion (it was stored unchecked there)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from retune import to_onnx
from retune.space import fit_pipeline
from tests.shadow.probe_models import dynamic_width
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._version_metadata import VersionMetadata

FEATURES = ("a", "b", "c", "d")
FLOAT32_MAX = float(np.finfo(np.float32).max)
ROW = [0.1, 0.2, 0.3, 0.4]


class Served:
    def __init__(self, url: str, scorer: str, labeller: str) -> None:
        self.url, self.scorer, self.labeller = url, scorer, labeller

    def mirror(self, model: str, request_id: str, outputs: list[float]) -> None:
        r = httpx.post(
            f"{self.url}/v1/models/{model}/records",
            json={"records": [{"id": request_id, "inputs": [ROW], "outputs": [outputs]}]},
            headers={"Authorization": f"Bearer {self.scorer}"},
        )
        assert r.status_code == 200 and not r.json()["conflicts"], r.text

    def feedback(self, model: str, *items: dict[str, object]) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/models/{model}/feedback",
            json={"items": list(items)},
            headers={"Authorization": f"Bearer {self.labeller}"},
        )


def _config(data: Path) -> dict[str, object]:
    return {
        "data_dir": str(data),
        "scheduler": {"enabled": False},
        "models": [
            {"name": "price", "task": "regression"},
            {"name": "species", "task": "multiclass"},
            {"name": "shapes", "task": "multiclass"},
        ],
    }


def _build(data: Path) -> tuple[str, str]:
    """Register a regression champion ``price`` and a three-class champion ``species``
    in a data directory; returns a scorer's and a labeller's token."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    classes = np.digitize(x[:, 0], [-0.5, 0.5]).astype(np.float64)
    values = x @ np.array([1.0, 2.0, -1.0, 0.5]) + rng.normal(size=300) * 0.1
    d = Daemon(build_config(_config(data), env={}), env={})
    try:
        for model, task, y, spec in (
            ("price", "regression", values, {"estimator": "ridge", "alpha": 1.0}),
            ("species", "multiclass", classes, {"estimator": "logistic", "C": 1.0}),
        ):
            d.registry.register(
                model,
                to_onnx(fit_pipeline(spec, x, y, seed=0), 4),
                VersionMetadata(task=task, feature_names=FEATURES),
                actor="test",
                stage="champion",
            )
        d.registry.register(
            "shapes",
            dynamic_width(3).SerializeToString(),
            VersionMetadata(task="multiclass", feature_names=FEATURES),
            actor="test",
            stage="champion",
        )
        tokens = new_token(), new_token()
        for role, token in zip(("scorer", "labeller"), tokens, strict=True):
            d.store.add_token(name=role, role=role, token_hash=hash_token(token), actor="test")
    finally:
        d.close()
    return tokens


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("label-bounds")
    scorer, labeller = _build(data)
    d = Daemon(build_config(_config(data), env={}), env={})
    try:
        with BackgroundServer(d.app) as server:
            yield Served(server.url, scorer, labeller)
    finally:
        d.close()


@pytest.mark.parametrize("label", [1e300, -1e300, 1.7976931348623157e308, [1.0, 1e39]])
def test_a_regression_label_past_float32s_range_is_an_invalid_label(
    served: Served, label: object
) -> None:
    """1e300 was stored as created; every retune of the model then failed on fold 0 with
    a non-finite loss while the request was in its training window."""
    served.mirror("price", "too-large", [1.0])
    r = served.feedback("price", {"request_id": "too-large", "label": label})
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) == {"error", "code"} and body["code"] == "invalid_label"
    assert "items[0].label" in body["error"] and "3.40282e+38" in body["error"]
    bad = label[1] if isinstance(label, list) else label
    assert f"{bad:g}" in body["error"]


def test_a_regression_outcome_past_float32s_range_is_an_invalid_label(served: Served) -> None:
    r = served.feedback("price", {"request_id": "q", "label": 1.0, "outcome": -1e300})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_label"
    assert "items[0].outcome" in r.json()["error"] and "-1e+300" in r.json()["error"]


def test_a_regression_label_float32_holds_is_stored(served: Served) -> None:
    served.mirror("price", "largest", [1.0])
    r = served.feedback(
        "price", {"request_id": "largest", "label": -FLOAT32_MAX, "outcome": FLOAT32_MAX}
    )
    assert r.status_code == 200, r.text
    assert r.json()["results"] == [{"request_id": "largest", "status": "created"}]


def test_a_class_index_is_checked_on_a_process_that_has_not_loaded_the_champion(
    tmp_path: Path,
) -> None:
    """Labels 7 and 1000000 of a three-class model were stored as created by a process
    whose champion's artefact it could not load (its class check fell back to any
    class): answered 503 ``model_not_ready``, as the mirror route is, and none stored."""
    data = tmp_path / "data"
    scorer, labeller = _build(data)
    d = Daemon(build_config(_config(data), env={}), env={})
    try:
        with BackgroundServer(d.app) as server:
            Served(server.url, scorer, labeller).mirror("species", "mc1", [0.2, 0.3, 0.5])
        sha = d.store.get_version("species", 1).artefact_sha256
        d.artefacts.path(sha).unlink()  # this process could not load it now
    finally:
        d.close()
    restarted = Daemon(build_config(_config(data), env={}), env={})
    try:
        with BackgroundServer(restarted.app) as server:
            client = Served(server.url, scorer, labeller)
            assert restarted.runtime.model("species").deployment.lineup.champion is None
            for label in (7, 1000000, 1):
                r = client.feedback("species", {"request_id": "mc1", "label": label})
                assert r.status_code == 503, (label, r.text)
                assert r.json()["code"] == "model_not_ready"
                assert "species" in r.json()["error"]
            # a model whose champion is loaded is not held up by it
            client.mirror("price", "p1", [1.0])
            r = client.feedback("price", {"request_id": "p1", "label": 2.5})
            assert r.json()["results"] == [{"request_id": "p1", "status": "created"}]
    finally:
        restarted.close()
    with sqlite3.connect(data / "tunewatch.db") as db:
        stored = db.execute("select request_id from labels where model = 'species'").fetchall()
    assert stored == []


def test_a_class_index_is_checked_when_the_graph_leaves_the_width_dynamic(
    served: Served,
) -> None:
    """A three-class model whose graph computes its output's width at run time took any
    class index (class 1000000 of three was stored), and a mirrored answer of any width."""
    served.mirror("shapes", "dyn1", [0.2, 0.3, 0.5])
    for label in (3, 1000000):
        r = served.feedback("shapes", {"request_id": "dyn1", "label": label})
        assert r.status_code == 400, (label, r.text)
        assert r.json()["code"] == "invalid_label" and "in 0..2" in r.json()["error"]
    r = httpx.post(
        f"{served.url}/v1/models/shapes/records",
        json={"records": [{"id": "dyn2", "inputs": [ROW], "outputs": [[0.1, 0.2, 0.3, 0.4]]}]},
        headers={"Authorization": f"Bearer {served.scorer}"},
    )
    assert r.status_code == 400 and r.json()["code"] == "shape_mismatch", r.text
    assert "of 3 columns" in r.json()["error"]
    r = served.feedback("shapes", {"request_id": "dyn1", "label": 2})
    assert r.json()["results"] == [{"request_id": "dyn1", "status": "created"}]
