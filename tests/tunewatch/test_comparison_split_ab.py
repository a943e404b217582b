"""The live split's unpaired always-valid test: a clearly better split challenger is
promoted on the evidence of the two arms."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
from sklearn.linear_model import LogisticRegression

from retune import to_onnx
from tests.tunewatch.conftest import MODEL
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data, feature_names
from tunewatch._version_metadata import VersionMetadata


def test_split_challenger_that_answers_better_is_promoted(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    # champion v1: the example logistic (concept A); challenger v2 knows concept B
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "comparison": {
                        "min_n": 30,
                        "planned_n": 400,
                        "rollback": {"enabled": False},
                        "guardrails": {"max_latency_p99_ratio": None, "max_memory_ratio": None},
                        "split": {"challenger": 2, "percent": 50, "salt": "ab-1"},
                    },
                }
            ],
        },
        env={},
    )
    d = Daemon(config, env={})
    d.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t", stage="champion")
    xb, yb = example_data(3000, seed=5, concept=1)
    newer = LogisticRegression(max_iter=500).fit(xb, yb)
    d.registry.register(
        MODEL,
        to_onnx(newer, 8),
        VersionMetadata(task="binary", feature_names=feature_names(8), hyperparameters={"C": 1.0}),
        actor="t",
        stage="shadow",
    )
    scorer, labeller = new_token(), new_token()
    d.store.add_token(name="s", role="scorer", token_hash=hash_token(scorer), actor="test")
    d.store.add_token(name="l", role="labeller", token_hash=hash_token(labeller), actor="test")
    x, y = example_data(600, seed=9, concept=1)
    x = np.clip(x, -9, 9)
    try:
        with BackgroundServer(d.app) as server, httpx.Client(base_url=server.url) as c:
            arms = {"1": 0, "2": 0}
            for i in range(len(x)):
                r = c.post(
                    f"/v2/models/{MODEL}/infer",
                    headers={"Authorization": f"Bearer {scorer}"},
                    json={
                        "id": f"r{i}",
                        "parameters": {"unit_key": f"user-{i}"},
                        "inputs": [
                            {
                                "name": "input",
                                "shape": [1, 8],
                                "datatype": "FP32",
                                "data": x[i].tolist(),
                            }
                        ],
                    },
                )
                arms[r.json()["model_version"]] += 1
            assert 220 <= arms["2"] <= 380  # 50 % of 600 units
            items = [{"request_id": f"r{i}", "label": int(y[i])} for i in range(len(x))]
            c.post(
                f"/v1/models/{MODEL}/feedback",
                json={"items": items},
                headers={"Authorization": f"Bearer {labeller}"},
            ).raise_for_status()
            results = d.comparisons.run(MODEL)
        split = next(r for r in results if r.kind == "split")
        assert split.look is not None and split.look.decision == "challenger_better"
        assert split.look.n > 0 and split.look.ci_high < 0  # the challenger's loss is lower
        assert split.action == "promoted"
        # each arm reads from a watermark of its own: the last request it consumed
        marks = d.comparisons.comparisons.get_test(split.test_id).state["watermarks"]
        assert set(marks) == {"champion", "challenger"}
        assert {mark["order"] for mark in marks.values()} == {"label"}
        champion = d.store.champion(MODEL)
        assert champion is not None and champion.version == 2
    finally:
        d.close()
