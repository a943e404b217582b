"""The candidate probe, which loads an untrusted model, is started without the daemon's
admin token (``TUNEWATCH_ADMIN_TOKEN``): it needs no credentials."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from probe_models import softmax

from shadow import inspect_candidate

#: Run by the probe at its interpreter's start (``sitecustomize`` on its PYTHONPATH, which
#: the probe keeps): writes the probe's environment where ``ENV_DUMP`` says.
_DUMP_ENVIRONMENT = (
    "import json, os\n"
    "with open(os.environ['ENV_DUMP'], 'w') as f:\n"
    "    json.dump(dict(os.environ), f)\n"
)


def test_the_probe_is_started_without_the_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_DUMP_ENVIRONMENT)
    dump = tmp_path / "probe-env.json"
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("ENV_DUMP", str(dump))
    monkeypatch.setenv("TUNEWATCH_ADMIN_TOKEN", "tw_" + "a" * 43)
    path = tmp_path / "candidate.onnx"
    onnx.save_model(softmax(), path)

    # a timeout of its own: a pass is remembered by the bytes and the limits, and another
    # test may have probed these bytes
    inspect_candidate(path, timeout_s=59.25)

    seen = json.loads(dump.read_text())
    assert "TUNEWATCH_ADMIN_TOKEN" not in seen
    assert seen["ENV_DUMP"] == str(dump)  # the rest is passed on
