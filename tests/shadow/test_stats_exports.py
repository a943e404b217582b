from __future__ import annotations

import ast
import inspect
from pathlib import Path

import shadow.stats
import shadow.stats.always_valid


def _public(module: object) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }


def test_stats_all_lists_exactly_the_public_names() -> None:
    for module in (shadow.stats.always_valid,):  # shadow.stats: tests/test_lazy_fronts.py
        assert set(module.__all__) == _public(module)
        assert len(module.__all__) == len(set(module.__all__))


def test_stats_imports_neither_retune_nor_tunewatch() -> None:
    package = Path(shadow.stats.__file__).parent
    sources = sorted(package.rglob("*.py"))
    assert len(sources) > 10
    for source in sources:
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & {"retune", "tunewatch"}, f"{source.name} imports {roots}"
