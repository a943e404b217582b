"""The bundle an import reads is the bundle it hashed. The file was hashed, then read again
from disk: rewritten in place between the two, another bundle was imported under the
digest the operator gave (``--sha256``), its champion promoted with no approver."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

import tunewatch._bundle as bundle_module
from tests.tunewatch.conftest import MODEL
from tunewatch._bundle import export_bundle, import_bundle
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel


@pytest.fixture
def bundles(trained: list[ExampleModel], tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Two bundles of ``credit``, one version each (1: champion, 2: shadow), and the
    versions' artefact digests."""
    source = Daemon(build_config({"data_dir": str(tmp_path / "source")}, env={}), env={})
    try:
        for model, stage in zip(trained, ("champion", "shadow"), strict=True):
            source.registry.register(MODEL, model.onnx, model.metadata, actor="t", stage=stage)
        genuine, other = tmp_path / "genuine.zip", tmp_path / "other.zip"
        export_bundle(source.store, source.artefacts, source.config, MODEL, genuine, versions=[1])
        export_bundle(source.store, source.artefacts, source.config, MODEL, other, versions=[2])
        artefacts = [v.artefact_sha256 for v in source.store.list_versions(MODEL)]
    finally:
        source.close()
    return genuine, other, artefacts


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Daemon]:
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "target")}, env={}), env={})
    yield daemon
    daemon.close()


@pytest.mark.parametrize("given", [True, False], ids=["sha256-given", "no-sha256"])
def test_a_bundle_rewritten_in_place_once_hashed_imports_as_hashed(
    bundles: tuple[Path, Path, list[str]],
    target: Daemon,
    monkeypatch: pytest.MonkeyPatch,
    given: bool,
) -> None:
    genuine, other, artefacts = bundles
    digest = hashlib.sha256(genuine.read_bytes()).hexdigest()
    hashed = bundle_module.sha256_file

    def hash_then_rewrite(file: BinaryIO, path: str | Path) -> str:
        """The race, made certain: the file is rewritten in place once the hash is done."""
        found = hashed(file, path)
        with open(path, "r+b") as f:
            f.write(other.read_bytes())
            f.truncate()
        return found

    monkeypatch.setattr(bundle_module, "sha256_file", hash_then_rewrite)
    _, [imported], _ = import_bundle(
        target.store,
        target.registry,
        target.config,
        genuine,
        actor="ops",
        max_artefact_bytes=10**8,
        sha256=digest if given else None,
    )
    assert genuine.read_bytes() == other.read_bytes()  # the file was rewritten
    assert (imported.source_version, imported.stage) == (1, "champion")
    assert target.store.get_version(MODEL, imported.version).artefact_sha256 == artefacts[0]
    entry = target.store.audit_log(limit=1)[0]
    assert (entry.action, entry.details["bundle_sha256"]) == ("import_bundle", digest)


def test_the_import_leaves_no_copy_of_the_bundle_behind(
    bundles: tuple[Path, Path, list[str]], target: Daemon, tmp_path: Path
) -> None:
    genuine, _, _ = bundles
    before = set(os.listdir(tmp_path / "target"))
    import_bundle(
        target.store,
        target.registry,
        target.config,
        genuine,
        actor="ops",
        max_artefact_bytes=10**8,
    )
    assert set(os.listdir(tmp_path / "target")) - before <= {"artefacts"}
