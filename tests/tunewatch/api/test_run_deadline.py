"""A served run that never finishes is stopped: the daemon keeps answering."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from tests.shadow.shadow_models import looping_model
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel, feature_names
from tunewatch._version_metadata import VersionMetadata


def test_a_champion_that_never_finishes_is_a_503_and_the_daemon_keeps_answering(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A graph whose loop count comes from its input passed the probe (a row of zeros)
    and, as champion, held the event loop on its first real row: inference of every
    model, /healthz, /readyz and /metrics went unanswered for good."""
    daemon, tokens = make_daemon(
        tmp_path,
        trained,
        extra={"scheduler": {"enabled": False}, "scoring": {"run_timeout_s": 0.3}},
    )
    metadata = VersionMetadata(task="binary", feature_names=feature_names(8))
    daemon.registry.register("loopy", looping_model(8), metadata, actor="test", stage="champion")
    daemon.runtime.refresh()
    scorer = {"Authorization": f"Bearer {tokens['scorer']}"}

    def body(row: list[float]) -> dict[str, object]:
        tensor = {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": row}
        return {"inputs": [tensor]}

    try:
        with (
            BackgroundServer(daemon.app) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            zeros = client.post("/v2/models/loopy/infer", json=body([0.0] * 8), headers=scorer)
            assert zeros.status_code == 200, zeros.text
            stuck = client.post("/v2/models/loopy/infer", json=body([1.0] * 8), headers=scorer)
            assert stuck.status_code == 503, stuck.text
            assert stuck.json()["code"] == "run_timeout"
            assert client.get("/healthz").status_code == 200
            other = client.post(
                f"/v2/models/{MODEL}/infer", json=body(list(np.linspace(-1, 1, 8))), headers=scorer
            )
            assert other.status_code == 200, other.text
            again = client.post("/v2/models/loopy/infer", json=body([0.0] * 8), headers=scorer)
            assert again.status_code == 200, again.text
            # every real row loops: after three deadlines in a row the version's runs are
            # refused at once instead of holding the event loop a deadline each
            for _ in range(3):
                stuck = client.post("/v2/models/loopy/infer", json=body([1.0] * 8), headers=scorer)
                assert stuck.json().get("code") == "run_timeout", stuck.text
            refused = client.post("/v2/models/loopy/infer", json=body([0.0] * 8), headers=scorer)
            assert (refused.status_code, refused.json()["code"]) == (503, "run_timeout")
            # not run: refused at once, even for a row it answers
            assert "last 3 runs passed the 0.3 s deadline" in refused.json()["error"]
    finally:
        daemon.close()
