"""Imports run one way only: tunewatch -> retune -> shadow -> monitor (DESIGN.md §1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "monitor": {
        "shadow",
        "retune",
        "tunewatch",
        "apscheduler",
        "fastapi",
        "sqlalchemy",
        "starlette",
    },
    "shadow": {"retune", "tunewatch", "apscheduler", "fastapi", "sqlalchemy", "starlette"},
    "retune": {"tunewatch", "apscheduler", "fastapi", "sqlalchemy", "starlette"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_domain_package_imports_only_downwards(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
        if _imports(path) & FORBIDDEN[package]
    }
    assert not offenders, f"{package}/ must not import these: {offenders}"
