"""``tunewatch register`` of a version that does not fit a model the config lists and the
store holds names the stored model's task or features (the checks against the stored
model), not a config error that described the stored model by the request's task or
features and told the operator to correct a correct config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunewatch._cli import main
from tunewatch._example import ExampleModel
from tunewatch.store import Store

MODEL = "credit"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tunewatch.yaml"
    model = {"name": MODEL, "task": "binary", "features": [{"name": "x0", "low": -10, "high": 10}]}
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "models": [model]}))
    return path


def _register(config: Path, onnx: Path, *, task: str, features: list[str]) -> int:
    return main(
        [
            "--config",
            str(config),
            "--actor",
            "alice",
            "register",
            MODEL,
            str(onnx),
            "--task",
            task,
            "--features",
            ",".join(features),
        ]
    )


@pytest.mark.parametrize(
    ("task", "features", "message"),
    [
        pytest.param(
            "regression",
            None,
            f"model {MODEL!r} is a binary model; a version cannot change its task to regression",
            id="task",
        ),
        pytest.param(
            "binary",
            [f"f{i}" for i in range(8)],
            f"model {MODEL!r} has features {[f'x{i}' for i in range(8)]}; a version must take "
            f"the same features, got {[f'f{i}' for i in range(8)]}",
            id="features",
        ),
    ],
)
def test_register_of_a_misfit_version_of_a_configured_model_names_the_stored_model(
    config: Path,
    tmp_path: Path,
    trained: list[ExampleModel],
    capsys: pytest.CaptureFixture[str],
    task: str,
    features: list[str] | None,
    message: str,
) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    stored = list(trained[0].metadata.feature_names)
    assert _register(config, onnx, task="binary", features=stored) == 0
    capsys.readouterr()
    assert _register(config, onnx, task=task, features=features or stored) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"tunewatch: error: {message}"
    with Store.open(f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}") as store:
        assert len(store.list_versions(MODEL)) == 1
