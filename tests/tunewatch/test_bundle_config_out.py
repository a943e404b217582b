"""Bundles: the model's config `tunewatch import --config-out` writes, for the operator to
merge into the target's: versions it names are the target's, and it never replaces the
config the import runs with."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.store import Store

SPLIT = {"challenger": 2, "percent": 50, "salt": "exp-1"}


@pytest.fixture
def source(trained: list[ExampleModel], tmp_path: Path) -> Path:
    """A config whose store holds ``credit`` v1 (champion) and v2 (shadow), and whose
    model sends half the live traffic to v2 (``comparison.split``)."""
    daemon, _ = make_daemon(tmp_path / "source", trained)
    daemon.close()
    model = {"name": MODEL, "task": "binary", "comparison": {"split": SPLIT}}
    config = tmp_path / "source.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "source"), "models": [model]}))
    return config


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    config = tmp_path / "target.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "target")}))
    yield config


def _export(config: Path, path: Path, *versions: int) -> Path:
    argv = ["--config", str(config), "export", MODEL, str(path)]
    for v in versions:
        argv += ["--version", str(v)]
    assert main(argv) == 0
    return path


def _merged(target: Path, snippet: Path) -> dict[str, Any]:
    """The target's config with the snippet merged in, as the CLI asks the operator to."""
    return {**json.loads(target.read_text()), **yaml.safe_load(snippet.read_text())}


def _models(config: Path) -> list[str]:
    data_dir = json.loads(config.read_text())["data_dir"]
    with Store.open(f"sqlite:///{data_dir}/tunewatch.db") as store:
        return [m.name for m in store.list_models()]


def test_config_out_renumbers_the_split_challenger_to_the_imported_version(
    source: Path,
    target: Path,
    trained: list[ExampleModel],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The snippet kept the source's `split.challenger: 2` while the import registered
    that version as v4: merged, the live split sent half the traffic to the target's own
    v2, a model nobody compared."""
    bundle = _export(source, tmp_path / "credit.zip", 1, 2)
    daemon = Daemon(build_config(json.loads(target.read_text()), env={}), env={})
    try:  # the target's own v1 and v2: other models than the source's of those numbers
        for model, stage in ((trained[1], "champion"), (trained[0], "shadow")):
            daemon.registry.register(MODEL, model.onnx, model.metadata, actor="test", stage=stage)  # type: ignore[arg-type]
    finally:
        daemon.close()
    capsys.readouterr()
    snippet = tmp_path / "snippet.yaml"
    argv = ["--config", str(target), "import", str(bundle), "--config-out", str(snippet)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # the source's champion says why it is not the target's (the import used to print a
    # bare "(shadow)", the reason only in the audit log)
    assert "credit v1 -> v3 (shadow: model 'credit' has a champion (version 1))" in out
    assert "credit v2 -> v4 (shadow)\n" in out
    split = yaml.safe_load(snippet.read_text())["models"][0]["comparison"]["split"]
    assert split == {**SPLIT, "challenger": 4, "start": None}
    merged = build_config(_merged(target, snippet), env={}).model(MODEL)
    assert merged is not None and merged.comparison.split is not None
    assert merged.comparison.split.challenger == 4


def test_config_out_of_a_bundle_without_the_split_challenger_writes_no_split(
    source: Path, target: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The champion's bundle (the default) does not hold the split's challenger, v2, yet
    the snippet named it: merged, whatever the target registers as v2 later would take
    half the live traffic without a comparison."""
    bundle = _export(source, tmp_path / "credit.zip")
    capsys.readouterr()
    snippet = tmp_path / "snippet.yaml"
    argv = ["--config", str(target), "import", str(bundle), "--config-out", str(snippet)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "credit v1 -> v1 (champion)" in captured.out
    written = yaml.safe_load(snippet.read_text())["models"][0]
    assert written["comparison"]["split"] is None
    assert written["comparison"]["alpha"] == 0.05  # the rest of the comparison is kept
    assert (
        f"tunewatch: {snippet} has no live split (`comparison.split: null`): the source's "
        "split sent traffic to version 2, which the bundle does not hold"
    ) in captured.err
    merged = build_config(_merged(target, snippet), env={}).model(MODEL)
    assert merged is not None and merged.comparison.split is None


@pytest.mark.parametrize(
    "how",
    ["--config", "--config-through-a-link", "$TUNEWATCH_CONFIG"],
)
def test_import_refuses_a_config_out_that_is_the_config_it_runs_with(
    how: str,
    source: Path,
    target: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--config prod.yaml import b.zip --config-out prod.yaml` exited 0 having replaced
    the running config with the one-model snippet: its data_dir, store, auth and every
    other model's settings were gone."""
    bundle = _export(source, tmp_path / "credit.zip")
    capsys.readouterr()
    before = target.read_bytes()
    out = target
    if how == "--config-through-a-link":
        out = tmp_path / "link.yaml"
        out.symlink_to(target)
    argv = ["import", str(bundle), "--config-out", str(out)]
    if how == "$TUNEWATCH_CONFIG":
        monkeypatch.setenv("TUNEWATCH_CONFIG", str(target))
        monkeypatch.chdir(tmp_path)  # a relative --config-out naming the same file
        argv[-1] = os.path.relpath(target, tmp_path)
    else:
        argv = ["--config", str(target), *argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert f"--config-out {argv[-1]} is the config this import runs with" in captured.err
    assert "nothing was imported" in captured.err
    assert "->" not in captured.out
    assert target.read_bytes() == before
    assert _models(target) == []
