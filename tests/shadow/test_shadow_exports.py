from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import shadow


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
    # (`monitor._lazy`, the lazy package fronts' helper, is all of monitor it may load.)
    code = (
        "import sys, shadow._probe; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'sklearn') "
        "or m.startswith(('monitor.', 'shadow.stats')) and m != 'monitor._lazy'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
