from __future__ import annotations

import ast
import inspect
import subprocess
import sys
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


def test_the_package_root_stays_light_for_the_candidate_probe() -> None:
    # `python -m shadow._probe` imports `shadow` in a child for every registration;
    # the statistics stack (SciPy, scikit-learn, monitor) must not come with it.
    code = (
        "import sys, shadow._probe; "
        "print(sorted(m for m in ('scipy', 'sklearn', 'monitor', 'shadow.stats') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
