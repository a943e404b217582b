"""``POST /v1/models/{m}/evaluate`` names its caller on what the run's events set off, as
``POST /retune`` does: the action events of an evaluation an operator asked for said
``actor: system``, like a scheduled run's."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch import load_config
from tunewatch._background import BackgroundServer
from tunewatch._cli import main
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data
from tunewatch.store import Store


def _drifting(tmp_path: Path, trained: list[ExampleModel]) -> tuple[Daemon, dict[str, str]]:
    """A daemon whose one drifted window raises ``drift_detected``, set to notify."""
    return make_daemon(
        tmp_path,
        trained,
        extra={
            "scheduler": {"enabled": False},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "evaluation": {"drift": {"consecutive": 1}},
                    "triggers": [{"on": "drift_detected", "do": "notify"}],
                }
            ],
        },
    )


def _score_drifted(url: str, token: str) -> None:
    x, _ = example_data(300, seed=11, shift=1.5)
    body = {
        "inputs": [{"name": "input", "shape": [300, 8], "datatype": "FP32", "data": x.tolist()}]
    }
    scored = httpx.post(
        f"{url}/v2/models/{MODEL}/infer", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert scored.status_code == 200, scored.text


def test_an_evaluation_an_operator_asked_for_names_the_operator_on_its_actions(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, tokens = _drifting(tmp_path, trained)
    try:
        with BackgroundServer(daemon.app) as server:
            _score_drifted(server.url, tokens["scorer"])
            r = httpx.post(
                f"{server.url}/v1/models/{MODEL}/evaluate",
                headers={"Authorization": f"Bearer {tokens['operator']}"},
                timeout=60,
            )
            assert r.status_code == 200, r.text
        [fired] = daemon.store.list_events(model=MODEL, type="drift_detected")
        [taken] = daemon.store.list_events(model=MODEL, type="action_taken")
        assert taken.payload["trigger"] == "drift_detected"
        assert taken.payload["actor"] == "test-operator"
    finally:
        daemon.close()


def test_an_evaluation_run_from_the_cli_names_its_actor_on_its_actions(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """`tunewatch --actor alice evaluate credit` said `actor: system` on what it set off."""
    daemon, tokens = _drifting(tmp_path, trained)
    try:
        with BackgroundServer(daemon.app) as server:
            _score_drifted(server.url, tokens["scorer"])
        config = tmp_path / "cli.yaml"
        config.write_text(yaml.safe_dump(daemon.config.model_dump(mode="json")))
    finally:
        daemon.close()
    assert main(["--config", str(config), "--actor", "alice", "evaluate", MODEL]) == 0
    with Store.open(load_config(config, env={}).store_url) as store:
        [taken] = store.list_events(model=MODEL, type="action_taken")
    assert taken.payload["actor"] == "alice"
