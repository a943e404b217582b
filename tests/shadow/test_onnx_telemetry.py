"""onnxruntime's 1DS telemetry stays off unless the operator turns it on.

Official onnxruntime builds have telemetry on by default: creating a session wrote a
persistent device id and a queue of events (OS, CPU, container detection, the
interpreter's path) under ``$HOME/.cache/Microsoft/DeveloperTools/.onnxruntime/``, for
upload to Microsoft. Its ``Privacy.md`` says only ``ORT_DISABLE_TELEMETRY=1``, set before
onnxruntime initializes, prevents the uploader, the events and the device id;
:mod:`shadow._onnx` sets it before importing onnxruntime unless it is already set.

Each test runs a fresh interpreter with ``HOME`` in ``tmp_path``, the variable unset and
none of the CI markers by which onnxruntime keeps quiet on a build machine (``CI=true``,
which these tests run under, among them), so that nothing but our import order decides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shadow_models import N_FEATURES, Exported

_VAR = "ORT_DISABLE_TELEMETRY"
# The variables by which onnxruntime 1.32 tells a CI machine, where it writes no telemetry
# (the names in its library; ``CI`` itself is one).
_CI_MARKERS = (
    "CI",
    "TF_BUILD",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "CIRCLECI",
    "TRAVIS",
    "JENKINS_URL",
    "CODEBUILD_BUILD_ID",
    "BUILDKITE",
    "TEAMCITY_VERSION",
    "APPVEYOR",
    "BITBUCKET_BUILD_NUMBER",
)

# Loads and scores the model at argv[1] through the serving loader, then prints the
# variable as onnxruntime saw it.
_SCORE = f"""
import os, sys
import numpy as np
from shadow._onnx import OnnxModel
model = OnnxModel.from_bytes(open(sys.argv[1], "rb").read())
rows = np.ones((3, {N_FEATURES}), dtype=np.float32)
assert model.primary(model.run(rows)).shape == (3, 2)
print(os.environ.get("{_VAR}"))
"""


def _env(home: Path, **extra: str) -> dict[str, str]:
    dropped = {_VAR, "XDG_CACHE_HOME", *_CI_MARKERS}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    return {**env, "HOME": str(home), **extra}


def _model_file(tmp_path: Path, logistic: Exported) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(logistic.onnx_bytes)
    return path


def _files_under(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())


def test_scoring_a_model_writes_no_onnxruntime_telemetry_under_home(
    tmp_path: Path, logistic: Exported
) -> None:
    model = _model_file(tmp_path, logistic)
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _SCORE, str(model)],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not (home / ".cache" / "Microsoft").exists(), _files_under(home)
    assert done.stdout.strip() == "1"


def test_operator_setting_telemetry_variable_is_kept(tmp_path: Path, logistic: Exported) -> None:
    model = _model_file(tmp_path, logistic)
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _SCORE, str(model)],
        env=_env(home, **{_VAR: "0"}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


def test_candidate_probe_writes_no_onnxruntime_telemetry_under_home(
    tmp_path: Path, logistic: Exported
) -> None:
    # The probe is its own interpreter (python -m shadow._probe): what it imports first
    # decides, not the parent's environment.
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "shadow._probe", "-"],
        input=logistic.onnx_bytes,
        env=_env(home),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b'"signature"' in done.stdout
    assert not (home / ".cache" / "Microsoft").exists(), _files_under(home)
