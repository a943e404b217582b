"""A command that needs a store's contents refuses a SQLite store that does not exist,
rather than make an empty one and answer from it: run in the wrong directory, or with
--config forgotten, `tunewatch jobs` said there were no jobs (and left a new store
behind, under ./.tunewatch with the built-in defaults)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewatch._cli import main

READERS = [
    ["jobs"],
    ["models"],
    ["audit"],
    ["approvals"],
    ["tokens", "list"],
    ["tokens", "revoke", "ci"],
    ["promote", "credit", "1", "--reason", "r"],
    ["rollback", "credit", "--reason", "r"],
    ["retune", "credit", "--reason", "r"],
    ["report", "credit", "1"],
    ["drift", "credit"],
    ["comparisons", "credit"],
    ["evaluate", "credit"],
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("argv", READERS, ids=lambda argv: "-".join(argv[:2]))
def test_a_command_reading_a_store_refuses_one_that_does_not_exist(
    config: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "--actor", "ops", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tunewatch: error: no store at ")
    assert str(config.parent / "data" / "tunewatch.db") in err[0]
    assert not (config.parent / "data").exists()


def test_without_a_config_the_refusal_names_the_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TUNEWATCH_CONFIG", raising=False)
    monkeypatch.delenv("TUNEWATCH_DATA_DIR", raising=False)
    monkeypatch.delenv("TUNEWATCH_STORE_URL", raising=False)
    assert main(["jobs"]) == 2
    err = capsys.readouterr().err
    assert "no store at " in err and "--config" in err
    assert list(tmp_path.iterdir()) == []


def test_creating_the_first_token_makes_the_store(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tokens create` is how a new deployment begins: it still makes the store."""
    assert main(["--config", str(config), "tokens", "create", "ci", "--role", "viewer"]) == 0
    assert (config.parent / "data" / "tunewatch.db").exists()
    capsys.readouterr()
    assert main(["--config", str(config), "tokens", "list"]) == 0
    assert "ci" in capsys.readouterr().out
