"""Bundles: what an import unpacks in all. Each member was held to
`server.max_artefact_bytes`, but not the members together, nor how far they inflate: a
331 KiB bundle wrote 448 MiB to the artefact store (21 files, one a compressed reference
snapshot stored as 128 MiB), and every version landed as a live shadow."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._bundle_archive import BUNDLE_BYTES_FACTOR
from tunewatch._cli import main
from tunewatch._example import ExampleModel
from tunewatch.store import Store

LIMIT = 256 * 1024  # the target's server.max_artefact_bytes
FEATURES = [f"x{i}" for i in range(8)]


def _padded_model(i: int, pad_bytes: int) -> bytes:
    """A valid binary classifier of the 8 features, distinct for each ``i``, padded with
    a zero initializer of ``pad_bytes`` (inflating about a thousand times)."""
    weights = np.zeros((8, 2), np.float32)
    weights[0, 0], weights[1, 1] = 1.0, i * 1e-3
    pad = np.zeros(pad_bytes // 4, np.float32)
    nodes = [
        helper.make_node("ReduceSum", ["pad"], ["padsum"], keepdims=0),
        helper.make_node("Mul", ["padsum", "zero"], ["z"]),
        helper.make_node("MatMul", ["X", "W"], ["l0"]),
        helper.make_node("Add", ["l0", "z"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "padded",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        initializer=[
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(pad, "pad"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bundle(path: Path, artefacts: list[bytes], reference: bytes | None = None) -> Path:
    """A bundle of model ``padded`` holding a shadow version for each of ``artefacts``,
    the first with the snapshot ``reference``."""
    versions = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        if reference is not None:
            archive.writestr(f"artefacts/{_sha(reference)}.npz", reference)
        for i, data in enumerate(artefacts):
            archive.writestr(f"artefacts/{_sha(data)}.onnx", data)
            versions.append(
                {
                    "version": i + 1,
                    "stage": "shadow",
                    "artefact_sha256": _sha(data),
                    "reference_sha256": _sha(reference) if i == 0 and reference else None,
                    "hyperparameters": {"estimator": "logistic", "C": 1.0 + i},
                    "details": {},
                }
            )
        model = {"name": "padded", "task": "binary", "feature_names": FEATURES}
        manifest = {
            "format": "tunewatch-bundle",
            "format_version": 1,
            "model": {**model, "regulated": False},
            "config": None,
            "search_space": None,
            "versions": versions,
        }
        archive.writestr("manifest.json", json.dumps(manifest))
    return path


@pytest.fixture
def target_config(tmp_path: Path) -> Path:
    config = tmp_path / "target.yaml"
    target = {"data_dir": str(tmp_path / "target"), "server": {"max_artefact_bytes": LIMIT}}
    config.write_text(json.dumps(target))
    return config


def _import(config: Path, bundle: Path) -> int:
    return main(["--config", str(config), "--actor", "ops", "import", str(bundle)])


def _written(config: Path) -> list[Path]:
    """The files in the target's artefact store."""
    store = Path(json.loads(config.read_text())["data_dir"]) / "artefacts"
    return [f for f in store.rglob("*") if f.is_file()]


def _versions(config: Path) -> list[tuple[str, int]]:
    data_dir = json.loads(config.read_text())["data_dir"]
    with Store.open(f"sqlite:///{data_dir}/tunewatch.db") as store:
        return [
            (m.name, v.version) for m in store.list_models() for v in store.list_versions(m.name)
        ]


def test_a_bundle_of_members_unpacking_past_the_total_limit_is_refused_unwritten(
    target_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Twenty members just under the per-member limit, each compressed a thousand times:
    each passed, and all twenty were written and registered as live shadows."""
    artefacts = [_padded_model(i, LIMIT - 4096) for i in range(20)]
    bundle = _bundle(tmp_path / "bomb.zip", artefacts)
    total = sum(len(a) for a in artefacts)
    assert total > BUNDLE_BYTES_FACTOR * LIMIT > bundle.stat().st_size * 100
    assert _import(target_config, bundle) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"tunewatch: error: the bundle's members unpack to {total} bytes in all; the limit "
        f"is {BUNDLE_BYTES_FACTOR * LIMIT} ({BUNDLE_BYTES_FACTOR} times "
        f"`server.max_artefact_bytes`, {LIMIT})\n"
    )
    assert _written(target_config) == []
    assert _versions(target_config) == []


def test_a_compressed_reference_unpacking_past_max_artefact_bytes_is_refused_unwritten(
    target_config: Path,
    trained: list[ExampleModel],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The snapshot is a zip too: a compressed one of a few KiB, within the per-member
    limit, was stored uncompressed (up to 1 GiB whatever `server.max_artefact_bytes`)."""
    packed = io.BytesIO()
    rows = 2 * LIMIT // (8 * 4)  # 8 float32 features a row: twice the limit once stored
    np.savez_compressed(packed, features=np.zeros((rows, 8), np.float32))
    reference = packed.getvalue()
    assert len(reference) < LIMIT // 16
    bundle = _bundle(tmp_path / "reference.zip", [trained[0].onnx], reference)
    assert _import(target_config, bundle) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"tunewatch: error: artefacts/{_sha(reference)}.npz (version 1's reference snapshot) "
        f"unpacks to {rows * 8 * 4} bytes"
    )
    assert f"the limit is {LIMIT} (`server.max_artefact_bytes`)" in err
    assert len(err.splitlines()) == 1
    assert _written(target_config) == []
    assert _versions(target_config) == []


def test_an_exported_model_still_imports_under_the_limits(
    target_config: Path, trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Its champion and challenger, with their reference snapshots."""
    source, _ = make_daemon(tmp_path / "source", trained)
    source.close()
    config = tmp_path / "source.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "source")}))
    bundle = tmp_path / "credit.zip"
    argv = [
        "--config",
        str(config),
        "export",
        MODEL,
        str(bundle),
        "--version",
        "1",
        "--version",
        "2",
    ]
    assert main(argv) == 0
    with zipfile.ZipFile(bundle) as archive:
        assert any(name.endswith(".npz") for name in archive.namelist())
    assert _import(target_config, bundle) == 0
    assert _versions(target_config) == [(MODEL, 1), (MODEL, 2)]


def test_a_registered_compressed_reference_is_held_to_max_artefact_bytes_as_stored(
    target_config: Path,
    trained: list[ExampleModel],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`register --reference` read the file within `server.max_artefact_bytes` but stored a
    compressed `.npz`'s arrays up to 1 GiB: what a bundle may not bring in, an upload did."""
    rows = 2 * LIMIT // (8 * 4)
    reference = tmp_path / "reference.npz"
    np.savez_compressed(reference, features=np.zeros((rows, 8), np.float32))
    assert reference.stat().st_size < LIMIT // 16
    artefact = tmp_path / "model.onnx"
    artefact.write_bytes(trained[0].onnx)
    argv = ["--config", str(target_config), "--actor", "ops", "register", "padded"]
    features = ",".join(trained[0].metadata.feature_names)
    argv += [str(artefact), "--task", "binary", "--features", features]
    capsys.readouterr()
    assert main([*argv, "--reference", str(reference)]) == 2
    err = capsys.readouterr().err
    assert f"reference snapshot would unpack to more than {LIMIT} bytes" in err
    assert _versions(target_config) == []
