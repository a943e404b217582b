"""The lazy package fronts (monitor/_lazy.py): the type checker's names, the runtime's
and ``__all__`` agree, every name resolves to its module's object, and the command line
starts without the heavy libraries a command does not use."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tunewatch.store import Store

LAZY = [
    "monitor",
    "monitor.drift",
    "shadow",
    "shadow.stats",
    "retune",
    "retune.space",
    "tunewatch.comparison",
]

#: What a command that only reads the store (or only prints help) must not import.
HEAVY = ("scipy", "sklearn", "pandas", "skl2onnx", "optuna", "fastapi", "evidently")


def _type_checking_imports(package: ModuleType) -> dict[str, str]:
    """Each name the ``if TYPE_CHECKING:`` block imports, and its module."""
    tree = ast.parse(Path(package.__file__ or "").read_text(encoding="utf-8"))
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom) and statement.module
                for alias in statement.names:
                    names[alias.asname or alias.name] = statement.module
    return names


@pytest.mark.parametrize("name", LAZY)
def test_type_checker_runtime_and_all_name_the_same_objects(name: str) -> None:
    package = importlib.import_module(name)
    exports = vars(package)["_EXPORTS"]
    assert _type_checking_imports(package) == exports
    assert set(package.__all__) == set(exports)
    assert len(package.__all__) == len(set(package.__all__))
    for public, module in exports.items():
        assert getattr(package, public) is getattr(importlib.import_module(module), public)
    stray = {
        n
        for n, v in vars(package).items()
        if not n.startswith("_") and not inspect.ismodule(v) and n not in ("annotations",)
    }
    assert stray <= set(package.__all__) | {"TYPE_CHECKING", "lazy_front"}
    assert set(package.__all__) <= set(dir(package))


@pytest.mark.parametrize("name", LAZY)
def test_an_unknown_name_is_an_attribute_error(name: str) -> None:
    package = importlib.import_module(name)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        package.not_a_name  # noqa: B018


def _heavy_after(code: str) -> list[str]:
    code = (
        f"import json, sys\n{code}\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_command_line_parser_imports_no_heavy_library() -> None:
    """`tunewatch --help` imported SciPy, scikit-learn, pandas and skl2onnx (8 s here)."""
    assert _heavy_after("from tunewatch._cli import build_parser; build_parser()") == []


def test_a_command_that_reads_the_store_imports_no_heavy_library(tmp_path: Path) -> None:
    """`tunewatch jobs` (any command opening the store) also imported FastAPI, Optuna and
    the tuning stack through the daemon module (7-8 s here)."""
    config = tmp_path / "tunewatch.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n", encoding="utf-8")
    Store.open(f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}").close()  # it reads one
    code = (
        "import contextlib, io\n"
        "from tunewatch._cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['--config', {str(config)!r}, 'jobs']) == 0\n"
    )
    assert _heavy_after(code) == []
