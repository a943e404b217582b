"""The candidate probe imports the installed shadow, not what the daemon's working
directory holds.

``python -m`` puts the working directory first on ``sys.path``: a ``shadow/`` package
there (the Docker image's WORKDIR keeps a copy of the sources) or a ``numpy.py`` ran in
the probe instead of the daemon's code, with the daemon's environment."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from probe_models import N_IN, softmax

from shadow import inspect_candidate

#: What the planted module does when it is imported: leaves a marker, exits distinctively.
_PLANTED = (
    "import pathlib, sys\n"
    "pathlib.Path(__file__).resolve().parents[{up}].joinpath('planted-ran').touch()\n"
    "sys.exit(97)\n"
)


@pytest.mark.parametrize(
    ("planted", "up"),
    [
        pytest.param("shadow/__init__.py", 1, id="shadow_package"),
        pytest.param("numpy.py", 0, id="numpy_module"),
    ],
)
def test_the_probe_does_not_import_modules_from_the_daemons_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str, up: int
) -> None:
    cwd = tmp_path / "cwd"
    module = cwd / planted
    module.parent.mkdir(parents=True)
    module.write_text(_PLANTED.format(up=up))
    path = tmp_path / "candidate.onnx"
    onnx.save_model(softmax(), path)  # bytes no other test has probed (passes are kept)
    monkeypatch.chdir(cwd)

    info = inspect_candidate(path)

    assert not (cwd / "planted-ran").exists()
    assert info.signature.n_features == N_IN
