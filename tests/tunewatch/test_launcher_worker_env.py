"""A worker process is started without the admin token: it reads its configuration from
the file the daemon wrote and never signs in, so ``TUNEWATCH_ADMIN_TOKEN`` in its
environment was only one more process (and its crash reports) holding the secret."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tunewatch._launcher_worker import worker_environment

_PRINT_ENVIRONMENT = "import json, os; print(json.dumps(dict(os.environ)))"


def test_a_worker_is_started_without_the_admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEWATCH_ADMIN_TOKEN", "tw_" + "a" * 43)
    monkeypatch.setenv("TUNEWATCH_TEST_KEPT", "kept")

    ran = subprocess.run(
        [sys.executable, "-c", _PRINT_ENVIRONMENT],
        env=worker_environment(),
        capture_output=True,
        text=True,
        check=True,
    )

    seen = json.loads(ran.stdout)
    assert "TUNEWATCH_ADMIN_TOKEN" not in seen
    assert seen["TUNEWATCH_TEST_KEPT"] == "kept"  # the rest is passed on
