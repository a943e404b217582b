"""``tunewatch backup DIR`` refuses a DIR that is the working directory or holds it.

The backup is written beside DIR and renamed onto it, which replaces an empty DIR by
another directory: ``mkdir d && cd d && tunewatch backup . && tar czf ../d.tgz .`` exited 0
at each step, the shell left in a removed, empty directory and the archive empty."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tunewatch._cli import main


@pytest.fixture
def live(tmp_path: Path) -> Path:
    """A config whose data_dir holds a (small) store."""
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    assert main(["--config", str(config), "migrate"]) == 0
    return config


def _refused(config: Path, named: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["--config", str(config), "backup", named]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("tunewatch: error: "), err
    return err


def _partials(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial-" in p.name]


def test_backup_dot_in_an_empty_directory_is_refused_leaving_it_in_place(
    live: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    here = tmp_path / "d"
    here.mkdir()
    inode = here.stat().st_ino
    monkeypatch.chdir(here)
    err = _refused(live, ".", capsys)
    assert "working directory" in err and "cd .." in err and "nothing was written" in err, err
    assert str(here) in err, err
    assert os.stat(".").st_ino == inode and here.stat().st_ino == inode
    assert list(here.iterdir()) == [] and _partials(tmp_path) == []


def test_backup_of_the_working_directory_by_a_path_through_a_link_is_refused(
    live: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    here = tmp_path / "d"
    here.mkdir()
    (tmp_path / "link").symlink_to(here)
    monkeypatch.chdir(here)
    err = _refused(live, str(tmp_path / "link"), capsys)
    assert "working directory" in err and "cd .." in err, err
    assert here.is_dir() and list(here.iterdir()) == [] and _partials(tmp_path) == []


def test_backup_of_a_directory_holding_the_working_directory_is_refused_saying_so(
    live: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    outer = tmp_path / "d"
    (outer / "inner").mkdir(parents=True)
    monkeypatch.chdir(outer / "inner")
    err = _refused(live, "..", capsys)
    assert "holds the working directory" in err and f"(cd {tmp_path} first)" in err, err
    assert f"backup directory .. ({outer})" in err, err
    assert [p.name for p in outer.iterdir()] == ["inner"] and _partials(tmp_path) == []


def test_backup_to_a_directory_named_from_outside_it_is_written(
    live: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "d").mkdir()
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["--config", str(live), "backup", "d"]) == 0
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["tunewatch.db"]
