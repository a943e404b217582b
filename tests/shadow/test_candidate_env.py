"""The candidate probe, which parses and loads an untrusted model, is started with an
allow-listed environment: what runs Python and onnxruntime (``PATH``, ``PYTHONPATH``,
locale, ``TZ``, ``TMPDIR``, single-threaded pools) and nothing else — not the daemon's
admin token, its store URL (which may hold a password), libpq's ``PGPASSWORD``, its
configuration path, nor any other secret the environment holds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import pytest
from probe_models import N_IN, softmax

import shadow
from shadow import inspect_candidate
from shadow._candidate import PROBE_ENV_KEPT, PROBE_THREAD_VARS

#: Run by the probe at its interpreter's start (``sitecustomize`` on its PYTHONPATH, which
#: the probe keeps): writes the probe's environment to the path formatted in.
_DUMP_ENVIRONMENT = (
    "import json, os\nwith open({dump!r}, 'w') as f:\n    json.dump(dict(os.environ), f)\n"
)

_STORE_PASSWORD = "S3cr3t-xyz"
#: What a daemon's environment may hold that the probe must not see.
_SECRETS = {
    "TUNEWATCH_ADMIN_TOKEN": "tw_" + "a" * 43,
    "TUNEWATCH_STORE_URL": f"postgresql+psycopg://user:{_STORE_PASSWORD}@127.0.0.1:5432/tw",
    "PGPASSWORD": "pg-" + _STORE_PASSWORD,
    "TUNEWATCH_CONFIG": "/etc/tunewatch/tunewatch.yaml",
    "SECRET_X": "secret-x-value",
}


def _probe_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, timeout_s: float
) -> tuple[dict[str, str], int]:
    """Probe a real model with a ``sitecustomize`` that dumps the probe's environment;
    return that environment and the number of features the probe read."""
    site = tmp_path / "site"
    site.mkdir()
    dump = tmp_path / "probe-env.json"
    (site / "sitecustomize.py").write_text(_DUMP_ENVIRONMENT.format(dump=str(dump)))
    monkeypatch.setenv("PYTHONPATH", str(site))
    path = tmp_path / "candidate.onnx"
    onnx.save_model(softmax(), path)

    # a timeout of its own: a pass is remembered by the bytes and the limits, and another
    # test may have probed these bytes
    info = inspect_candidate(path, timeout_s=timeout_s)

    return json.loads(dump.read_text()), info.signature.n_features


def test_the_probe_is_started_without_the_daemons_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _SECRETS.items():
        monkeypatch.setenv(name, value)

    seen, n_features = _probe_environment(tmp_path, monkeypatch, timeout_s=59.25)

    assert n_features == N_IN  # the probe still loads and scores the model
    assert sorted(set(_SECRETS) & set(seen)) == []
    assert not [name for name, value in seen.items() if _STORE_PASSWORD in value]
    assert sorted(set(seen) - PROBE_ENV_KEPT - set(PROBE_THREAD_VARS)) == []


def test_the_probe_keeps_what_runs_python_and_onnxruntime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = {"TZ": "Europe/Paris", "LANG": "C.UTF-8", "TMPDIR": str(tmp_path)}
    for name, value in kept.items():
        monkeypatch.setenv(name, value)
    for name in PROBE_THREAD_VARS:
        monkeypatch.setenv(name, "8")

    seen, n_features = _probe_environment(tmp_path, monkeypatch, timeout_s=59.5)

    assert n_features == N_IN
    assert {name: seen.get(name) for name in kept} == kept
    assert {name: seen.get(name) for name in PROBE_THREAD_VARS} == dict.fromkeys(
        PROBE_THREAD_VARS, "1"
    )
    shadow_root = str(Path(shadow.__file__).resolve().parent.parent)
    assert seen["PYTHONPATH"].split(os.pathsep) == [shadow_root, str(tmp_path / "site")]
    assert seen["PATH"] == os.environ["PATH"]
