"""A worker process imports the installed tunewatch, not what the daemon's working
directory holds.

``python -m`` puts the working directory first on ``sys.path``: a ``tunewatch/`` package
there (the Docker image's WORKDIR keeps a copy of the sources) or a ``numpy.py`` ran in
the workers instead of the daemon's code, with the daemon's environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tunewatch._launcher_worker import worker_command, worker_environment

#: What the planted module does when it is imported: leaves a marker, exits distinctively.
_PLANTED = (
    "import pathlib, sys\n"
    "pathlib.Path(__file__).resolve().parents[{up}].joinpath('planted-ran').touch()\n"
    "sys.exit(97)\n"
)


@pytest.mark.parametrize(
    ("planted", "up"),
    [
        pytest.param("tunewatch/__init__.py", 1, id="tunewatch_package"),
        pytest.param("numpy.py", 0, id="numpy_module"),
    ],
)
def test_a_worker_does_not_import_modules_from_the_daemons_working_directory(
    tmp_path: Path, planted: str, up: int
) -> None:
    module = tmp_path / planted
    module.parent.mkdir(parents=True, exist_ok=True)
    module.write_text(_PLANTED.format(up=up))
    config = tmp_path / "missing.yaml"

    ran = subprocess.run(
        [*worker_command(config), "1"],
        cwd=tmp_path,
        env=worker_environment(),
        capture_output=True,
        text=True,
        check=False,
    )

    assert not (tmp_path / "planted-ran").exists(), ran.stderr
    assert ran.returncode != 97
    # the installed CLI ran: it reports the configuration file it could not read
    assert f"cannot read configuration file {config}" in ran.stderr
