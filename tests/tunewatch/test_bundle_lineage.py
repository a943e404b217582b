"""Bundles between stores that hold only part of a lineage, and the search space a
model's config names travelling with the bundle."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tunewatch.conftest import MODEL
from tunewatch._bundle import BundleError, ImportedVersion, export_bundle, import_bundle
from tunewatch._cli import main
from tunewatch._config import build_config, load_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel

SPACE = Path(__file__).resolve().parents[2] / "configs" / "search_spaces" / "binary_tabular.yaml"


def _daemon(data_dir: Path, store_url: str | None = None) -> Daemon:
    raw: dict[str, object] = {"data_dir": str(data_dir)}
    if store_url:
        raw["store"] = {"url": store_url}
    return Daemon(build_config(raw, env={}), env={})


@pytest.fixture
def stores(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> Iterator[tuple[Daemon, Daemon]]:
    """A, whose champion v1 is registered there, and B (on either backend), empty."""
    a, b = _daemon(tmp_path / "a"), _daemon(tmp_path / "b", store_url)
    try:
        a.registry.register(
            MODEL,
            trained[0].onnx,
            trained[0].metadata,
            actor="t",
            stage="champion",
            reference=trained[0].reference,
        )
        yield a, b
    finally:
        a.close()
        b.close()


def _move(
    src: Daemon, dst: Daemon, path: Path, *, versions: list[int] | None = None, model: str = MODEL
) -> list[ImportedVersion]:
    export_bundle(src.store, src.artefacts, src.config, model, path, versions=versions)
    _, imported, _ = import_bundle(
        dst.store, dst.registry, dst.config, path, actor="ops", max_artefact_bytes=10**8
    )
    return imported


def _child_champion(d: Daemon, trained: list[ExampleModel], parent: int, model: str) -> int:
    """Register a child of ``parent`` in ``d`` and promote it."""
    child = d.registry.register(
        model,
        trained[1].onnx,
        dataclasses.replace(trained[1].metadata, parent_version=parent),
        actor="t",
        reference=trained[1].reference,
    )
    d.store.promote(model, child.version, actor="t", reason="tuned")
    return child.version


def test_a_child_exported_without_its_parent_finds_the_parent_s_origin_on_the_way_back(
    stores: tuple[Daemon, Daemon], trained: list[ExampleModel], tmp_path: Path
) -> None:
    """B's champion (a child of the v1 B imported from A) came back to A without a parent:
    the default bundle holds the champion only, and A's v1 was imported from nowhere."""
    a, b = stores
    [there] = _move(a, b, tmp_path / "a.zip", versions=[1])
    child = _child_champion(b, trained, there.version, MODEL)
    [back] = _move(b, a, tmp_path / "b.zip")  # the default: B's champion only
    assert (back.source_version, back.already_present) == (child, False)
    assert a.store.get_version(MODEL, back.version).parent_version == 1


def test_a_third_store_links_a_child_to_the_parent_it_imported_from_the_origin(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """C imported v1 from A; B imported it too (as another model) and tuned a child: C
    looked for a version imported from B's model, found none, and lost the lineage."""
    a, b, c = (_daemon(tmp_path / n) for n in ("a", "b", "c"))
    try:
        a.registry.register(
            MODEL, trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
        )
        export_bundle(a.store, a.artefacts, a.config, MODEL, tmp_path / "a.zip")
        import_bundle(
            b.store,
            b.registry,
            b.config,
            tmp_path / "a.zip",
            actor="ops",
            max_artefact_bytes=10**8,
            name="credit-eu",
        )
        [in_c] = _move(a, c, tmp_path / "a.zip")
        _child_champion(b, trained, 1, "credit-eu")
        export_bundle(b.store, b.artefacts, b.config, "credit-eu", tmp_path / "b.zip")
        _, [child], _ = import_bundle(
            c.store,
            c.registry,
            c.config,
            tmp_path / "b.zip",
            actor="ops",
            max_artefact_bytes=10**8,
            name=MODEL,
        )
        assert c.store.get_version(MODEL, child.version).parent_version == in_c.version
    finally:
        for d in (a, b, c):
            d.close()


def test_a_parent_origin_names_the_artefact_so_a_namesake_is_not_taken_for_the_parent(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Origins name a model and a version, which another store may reuse: a store whose
    own v1 of the same name is another model does not become the child's parent."""
    a, b, c = (_daemon(tmp_path / n) for n in ("a", "b", "c"))
    try:
        a.registry.register(
            MODEL, trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
        )
        _move(a, b, tmp_path / "a.zip")
        child_in_b = _child_champion(b, trained, 1, MODEL)
        c.registry.register(  # C's own v1: another model, the child's artefact
            MODEL, trained[1].onnx, trained[1].metadata, actor="t", stage="champion"
        )
        [child] = _move(b, c, tmp_path / "b.zip", versions=[child_in_b])
        assert c.store.get_version(MODEL, child.version).parent_version is None
    finally:
        for d in (a, b, c):
            d.close()


def _write(path: Path, raw: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw))
    return path


def test_config_out_writes_the_bundled_search_space_beside_the_snippet(
    trained: list[ExampleModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The snippet named the source's absolute space file, which the bundle did not hold:
    merged on the target, the config did not load (or read another file of that name)."""
    space = tmp_path / "source" / "space.yaml"
    space.parent.mkdir()
    original = SPACE.read_bytes() + b"# the source's own space\n"
    space.write_bytes(original)
    source_cfg = _write(
        tmp_path / "source" / "c.yaml",
        {
            "data_dir": str(tmp_path / "source" / "data"),
            "models": [{"name": MODEL, "task": "binary", "tuning": {"search_space": "space.yaml"}}],
        },
    )
    source = Daemon(load_config(source_cfg), env={})
    try:
        source.registry.register(
            MODEL, trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
        )
    finally:
        source.close()
    bundle = tmp_path / "credit.zip"
    assert main(["--config", str(source_cfg), "export", MODEL, str(bundle)]) == 0
    space.unlink()  # the source's files are not on the target

    target_cfg = _write(tmp_path / "target" / "c.yaml", {"data_dir": str(tmp_path / "t")})
    snippet = tmp_path / "ops" / "credit.yaml"
    snippet.parent.mkdir()
    args = ["--config", str(target_cfg), "import", str(bundle), "--config-out", str(snippet)]
    assert main(args) == 0
    capsys.readouterr()
    # merged into a config in another directory, as an operator would
    [model] = yaml.safe_load(snippet.read_text())["models"]
    merged = _write(
        tmp_path / "elsewhere" / "merged.yaml",
        {"data_dir": str(tmp_path / "t"), "models": [model]},
    )
    loaded = load_config(merged).model(MODEL)
    assert loaded is not None and loaded.tuning.search_space is not None
    written = Path(loaded.tuning.search_space)
    assert written.parent == snippet.parent
    assert written.read_bytes() == original


def test_a_bundle_whose_search_space_was_altered_is_refused_and_nothing_is_registered(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    space = tmp_path / "space.yaml"
    space.write_bytes(SPACE.read_bytes())
    raw = {
        "data_dir": str(tmp_path / "source"),
        "models": [{"name": MODEL, "task": "binary", "tuning": {"search_space": str(space)}}],
    }
    source = Daemon(build_config(raw, env={}), env={})
    target = _daemon(tmp_path / "target")
    try:
        source.registry.register(
            MODEL, trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
        )
        bundle = tmp_path / "a.zip"
        export_bundle(source.store, source.artefacts, source.config, MODEL, bundle)
        altered = tmp_path / "altered.zip"
        with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(altered, "w") as dst:
            names = src.namelist()
            assert any(n.startswith("spaces/") for n in names)
            for info in src.infolist():
                data = src.read(info)
                dst.writestr(info, data + b"#" if info.filename.startswith("spaces/") else data)
        with pytest.raises(BundleError, match="does not match its SHA-256"):
            import_bundle(
                target.store,
                target.registry,
                target.config,
                altered,
                actor="ops",
                max_artefact_bytes=10**8,
            )
        assert target.store.list_models() == []
    finally:
        source.close()
        target.close()
