"""``tunewatch promote --champion N``: a promotion that replaces only the champion its
operator saw, and a retried promotion that says the version already is champion."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunewatch._cli import main
from tunewatch._example import ExampleModel


@pytest.fixture
def config(tmp_path: Path, trained: list[ExampleModel]) -> Path:
    """credit (unregulated): v1 and v2, the same logistic model of two datasets, both
    shadows (the same dataset again is a retry, refused `version_exists`)."""
    path = tmp_path / "tunewatch.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    features = ",".join(trained[0].metadata.feature_names)
    for i in range(2):
        args = ("register", "credit", str(onnx), "--task", "binary", "--features", features)
        assert run(path, *args, "--dataset-version", f"ds-{i + 1}") == 0
    return path


def run(config: Path, *args: str) -> int:
    return main(["--config", str(config), "--actor", "alice", *args])


def test_promote_naming_another_champion_fails_and_changes_nothing(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "promote", "credit", "1", "--reason", "first", "--champion", "0") == 0
    capsys.readouterr()
    assert run(config, "promote", "credit", "2", "--reason", "won", "--champion", "2") == 2
    err = capsys.readouterr().err
    assert "tunewatch: error: model 'credit': the champion changed from v2 to v1" in err
    assert "nothing changed" in err
    assert run(config, "models") == 0
    listing = capsys.readouterr().out
    assert "v1    champion" in listing and "v2    shadow" in listing


def test_promote_naming_the_champion_promotes(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "promote", "credit", "1", "--reason", "first") == 0
    assert run(config, "promote", "credit", "2", "--reason", "won", "--champion", "1") == 0
    assert "credit version 2 is champion (was version 1)" in capsys.readouterr().out


def test_a_retried_promote_says_the_version_already_is_champion(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "promote", "credit", "1", "--reason", "first") == 0
    capsys.readouterr()
    assert run(config, "promote", "credit", "1", "--reason", "first", "--champion", "0") == 0
    out = capsys.readouterr().out
    assert out == "credit version 1 already is champion: nothing changed\n"


def test_champion_must_be_a_version_number(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        run(config, "promote", "credit", "2", "--reason", "x", "--champion", "v1")
    assert info.value.code == 2
    assert "`champion` must be an integer in [0, " in capsys.readouterr().err
