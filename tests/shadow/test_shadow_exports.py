from __future__ import annotations

import ast
import inspect
from pathlib import Path

import shadow


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(shadow).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(shadow.__all__) == public
    assert len(shadow.__all__) == len(set(shadow.__all__))


def test_shadow_imports_neither_retune_nor_tunewatch() -> None:
    package = Path(shadow.__file__).parent
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & {"retune", "tunewatch"}, f"{source.name} imports {roots}"


def test_onnxruntime_is_imported_only_by_the_onnx_module() -> None:
    package = Path(shadow.__file__).parent
    importers = sorted(
        p.name for p in package.glob("*.py") if "import onnxruntime" in p.read_text()
    )
    assert importers == ["_onnx.py"]
