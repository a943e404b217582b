"""Bundles: `tunewatch import --config-out F` replaces F and the search space beside it
(written beside, synced, renamed into place) rather than writing through them. It wrote
through an existing hard link, which the refusal of destinations under ``data_dir``
(checked by real path) does not see: with F a hard link to a stored artefact (a ``cp -al``
backup farm) the import exited 0 and the artefact began with ``models:``, its SHA-256
changed and a SQLite store had no other copy of it."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._cli import main
from tunewatch._example import ExampleModel

SPACE = Path(__file__).resolve().parents[2] / "configs" / "search_spaces" / "binary_tabular.yaml"


@pytest.fixture
def root(trained: list[ExampleModel], tmp_path: Path) -> Path:
    """``tmp_path`` with ``source.yaml`` (store in ``source``, ``credit`` naming
    ``space.yaml``), ``credit.zip`` (its champion and search space), ``target.yaml``
    (store in ``target``, holding its own ``credit`` v1 and v2) and an empty ``out``."""
    for name in ("source", "target"):
        daemon, _ = make_daemon(tmp_path / name, trained)
        daemon.close()
    shutil.copyfile(SPACE, tmp_path / "space.yaml")
    model = {
        "name": MODEL,
        "task": "binary",
        "tuning": {"search_space": str(tmp_path / "space.yaml")},
    }
    (tmp_path / "source.yaml").write_text(
        json.dumps({"data_dir": str(tmp_path / "source"), "models": [model]})
    )
    (tmp_path / "target.yaml").write_text(json.dumps({"data_dir": str(tmp_path / "target")}))
    argv = ["--config", str(tmp_path / "source.yaml"), "export", MODEL]
    assert main([*argv, str(tmp_path / "credit.zip")]) == 0
    (tmp_path / "out").mkdir()
    return tmp_path


def _artefacts(data_dir: Path) -> dict[Path, str]:
    """Every stored ONNX artefact under ``data_dir`` and the SHA-256 of its bytes (its
    name, while it is intact)."""
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((data_dir / "artefacts").rglob("*.onnx"))
    }


def _import(root: Path, out: Path) -> int:
    argv = ["--config", str(root / "target.yaml"), "import", str(root / "credit.zip")]
    return main([*argv, "--config-out", str(out)])


def test_import_replaces_a_config_out_hard_linked_to_a_stored_artefact(root: Path) -> None:
    before = _artefacts(root / "target")
    assert len(before) == 2 and all(p.stem == sha for p, sha in before.items())
    linked = next(iter(before))
    out = root / "out" / "hl.yaml"
    out.hardlink_to(linked)
    mode = stat.S_IMODE(out.stat().st_mode)

    assert _import(root, out) == 0

    assert _artefacts(root / "target") == before  # every artefact's bytes as they were
    assert linked.stat().st_nlink == 1  # the link was replaced, not written through
    assert yaml.safe_load(out.read_text())["models"][0]["name"] == MODEL
    assert stat.S_IMODE(out.stat().st_mode) == mode  # an existing file's mode is kept
    space = root / "out" / "hl.search_space.yaml"
    assert sorted(p.name for p in (root / "out").iterdir()) == [space.name, out.name]
    assert space.read_bytes() == SPACE.read_bytes()


def test_import_replaces_a_search_space_file_hard_linked_beside_config_out(root: Path) -> None:
    """The file beside F is let through only when it holds the bundle's search space
    already; a link to another file holding it (a backup's copy) still is not written
    through: truncated first, that file was empty if the write was cut short."""
    backup = root / "backup"
    backup.mkdir()
    kept = backup / "space.yaml"
    shutil.copyfile(SPACE, kept)
    out = root / "out" / "snippet.yaml"
    space = root / "out" / "snippet.search_space.yaml"
    space.hardlink_to(kept)

    assert _import(root, out) == 0

    assert kept.stat().st_nlink == 1 and not space.samefile(kept)
    assert kept.read_bytes() == SPACE.read_bytes() == space.read_bytes()
    written = yaml.safe_load(out.read_text())["models"][0]
    assert written["tuning"]["search_space"] == str(space)
    assert sorted(p.name for p in (root / "out").iterdir()) == [space.name, out.name]
