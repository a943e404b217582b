"""The safe ranges a daemon stored for a model govern an import run under another config
(one that does not list the model, as ``tunewatch import`` with only the store's URL may
be): such an import must be given the bundle's SHA-256 as one under the daemon's config
must. A hand-edited bundle, its champion's hyperparameters relabelled into those ranges,
imported unverified and served with no approver."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.tunewatch.conftest import MODEL
from tunewatch._bundle import BundleError, export_bundle, import_bundle, sha256_required
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel

_RANGES = {"C": {"low": 0.5, "high": 2.0}}


def _daemon(data_dir: Path, **extra: object) -> Daemon:
    return Daemon(build_config({"data_dir": str(data_dir), **extra}, env={}), env={})


def _store_ranges(data_dir: Path) -> None:
    """A daemon whose config gives ``credit`` safe ranges starts, storing them (the model
    is not registered), and stops."""
    _daemon(data_dir, models=[{"name": MODEL, "task": "binary", "safe_ranges": _RANGES}]).close()


def test_stored_safe_ranges_require_the_sha256_under_a_config_not_listing_the_model(
    tmp_path: Path,
) -> None:
    _store_ranges(tmp_path)
    ops = _daemon(tmp_path)
    try:
        assert ops.config.model(MODEL) is None
        assert ops.store.stored_safe_ranges(MODEL) is not None
        assert sha256_required(ops.store, ops.config, MODEL) == (
            "given safe ranges in this store (by the config of a daemon)"
        )
    finally:
        ops.close()


def test_a_model_with_no_stored_ranges_and_no_config_needs_no_sha256(tmp_path: Path) -> None:
    ops = _daemon(tmp_path)
    try:
        assert sha256_required(ops.store, ops.config, MODEL) is None
    finally:
        ops.close()


def test_an_import_into_a_model_with_stored_ranges_needs_the_sha256(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    source = _daemon(tmp_path / "source")
    try:
        source.registry.register(
            MODEL, trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
        )
        bundle = tmp_path / "credit.zip"
        export_bundle(source.store, source.artefacts, source.config, MODEL, bundle)
    finally:
        source.close()
    _store_ranges(tmp_path / "target")
    ops = _daemon(tmp_path / "target")
    try:
        with pytest.raises(BundleError) as refused:
            import_bundle(
                ops.store, ops.registry, ops.config, bundle, actor="ops", max_artefact_bytes=10**8
            )
        assert refused.value.code == "sha256_required"
        assert f"model {MODEL!r} is given safe ranges in this store" in str(refused.value)
        assert ops.store.list_models() == []
        _, [imported], _ = import_bundle(
            ops.store,
            ops.registry,
            ops.config,
            bundle,
            actor="ops",
            max_artefact_bytes=10**8,
            sha256=hashlib.sha256(bundle.read_bytes()).hexdigest(),
        )
    finally:
        ops.close()
    assert imported.source_version == 1
