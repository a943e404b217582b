"""Feedback labels checked against the model they label: a class index must name one of
the champion's classes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from retune import to_onnx
from retune.space import fit_pipeline
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._version_metadata import VersionMetadata

MODEL = "species"


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A daemon serving a three-class champion; yields its URL and a labeller's token."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = np.digitize(x[:, 0], [-0.5, 0.5]).astype(np.float64)
    champion = fit_pipeline({"estimator": "logistic", "C": 1.0}, x, y, seed=0)
    data: Path = tmp_path_factory.mktemp("multiclass")
    config = build_config(
        {
            "data_dir": str(data),
            "scheduler": {"enabled": False},
            "models": [{"name": MODEL, "task": "multiclass"}],
        },
        env={},
    )
    daemon = Daemon(config, env={})
    daemon.registry.register(
        MODEL,
        to_onnx(champion, 4),
        VersionMetadata(task="multiclass", feature_names=("a", "b", "c", "d")),
        actor="test",
        stage="champion",
    )
    token = new_token()
    daemon.store.add_token(
        name="test-labeller", role="labeller", token_hash=hash_token(token), actor="test"
    )
    try:
        with BackgroundServer(daemon.app) as server:
            yield server.url, token
    finally:
        daemon.close()


def _feedback(three_classes: tuple[str, str], label: object) -> httpx.Response:
    url, token = three_classes
    return httpx.post(
        f"{url}/v1/models/{MODEL}/feedback",
        json={"items": [{"request_id": "q1", "label": label}]},
        headers={"Authorization": f"Bearer {token}"},
    )


def test_a_class_the_model_does_not_have_is_an_invalid_label(
    three_classes: tuple[str, str],
) -> None:
    """Class 7 of a three-class model was stored; the decay window holding it then had
    no value, and comparisons could not score the request."""
    for label in (7, 3, [0, 3]):
        r = _feedback(three_classes, label)
        assert r.status_code == 400 and r.json()["code"] == "invalid_label", label
        assert "class index in 0..2" in r.json()["error"]


def test_a_class_the_model_has_is_accepted(three_classes: tuple[str, str]) -> None:
    r = _feedback(three_classes, 2)
    assert r.status_code == 200
    assert r.json()["results"] == [{"request_id": "q1", "status": "unknown_request"}]
