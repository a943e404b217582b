"""The shipped search spaces travel in the wheel: a non-editable install (the Docker image's
`pip install .`) finds them whatever the working directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("monitor", "shadow", "retune", "tunewatch")

CHECK = """
import json, sys
import yaml
import tunewatch
from tunewatch._shipped_spaces import default_search_space, shipped_search_space

spaces = {
    "binary": default_search_space("binary"),
    "regression": default_search_space("regression"),
    "demo": shipped_search_space("demo.yaml"),
}
loaded = {}
for key, path in spaces.items():
    try:
        with open(path) as f:
            loaded[key] = type(yaml.safe_load(f)).__name__
    except OSError as exc:
        loaded[key] = repr(exc)
json.dump({"package": tunewatch.__file__, "spaces": spaces, "loaded": loaded}, sys.stdout)
"""


def _copy_sources(dest: Path) -> None:
    """The sources alone: an in-tree build would reuse a stale ``build/lib`` and pass."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=ignore)


@pytest.mark.slow
def test_a_wheel_install_finds_the_shipped_spaces_from_any_working_directory(
    tmp_path: Path,
) -> None:
    """The spaces lived in configs/search_spaces/ only, outside the package: the wheel had
    none, so from another working directory a re-tune of a model without
    `tuning.search_space`, and `tunewatch demo`, failed with SearchSpaceError."""
    src, wheels, site = tmp_path / "src", tmp_path / "wheels", tmp_path / "site"
    _copy_sources(src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("tunewatch-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )

    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEWATCH_")}
    env["PYTHONPATH"] = str(site)
    run = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(run.stdout)

    assert Path(found["package"]).is_relative_to(site)
    assert found["loaded"] == {"binary": "dict", "regression": "dict", "demo": "dict"}
    for path in found["spaces"].values():
        assert Path(path).is_relative_to(site / "tunewatch")
