"""`tunewatch demo` with TUNEWATCH_* set in the shell: its daemon ignores them, and so must
the worker processes its launcher starts; and its summary says how the rollback watch
ended."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.tunewatch.test_tuning import MODEL, _config, _daemon
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._demo import WatchOutcome, _print_summary, _run_job
from tunewatch._errors import TunewatchError
from tunewatch._example import ExampleModel
from tunewatch.store._comparisons import ComparisonLookRow


@pytest.mark.slow
def test_a_daemon_s_worker_runs_its_job_in_the_daemon_s_store_whatever_the_environment_says(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's daemon is built with ``env={}``, but its worker read the configuration
    file the daemon wrote for it through ``load_config``, which applied
    $TUNEWATCH_DATA_DIR and $TUNEWATCH_STORE_URL from the inherited environment: it looked
    for its job in another store, exited 2 ("no store at …"), and the demo waited 4
    minutes for it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("TUNEWATCH_DATA_DIR", str(elsewhere))
    monkeypatch.setenv("TUNEWATCH_STORE_URL", f"sqlite:///{elsewhere / 'tunewatch.db'}")
    monkeypatch.setenv("TUNEWATCH_CONFIG", str(elsewhere / "tunewatch.yaml"))
    raw = _config(tmp_path, max_trials=1)
    # worker_nice 0: at the default 19 a worker gets ~1.5 % of a core beside CI's other
    # tests (tests/tunewatch/test_worker_priority.py checks the niceness)
    raw["tuning"] = {"workers": 1, "max_concurrent_jobs": 10, "worker_nice": 0}
    d = _daemon(raw, trained)  # built with env={}, as the demo's: its store is under tmp_path/data
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {})
        assert outcome.job_id is not None
        assert d.launcher.tick() == [outcome.job_id]
        (proc,) = d.launcher._procs.values()
        deadline = time.monotonic() + 180
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the worker did not finish"
            time.sleep(0.2)
        job = d.store.get_job(outcome.job_id)
        assert (proc.returncode, job.status, job.error) == (0, "succeeded", None)
        assert job.worker is not None and job.worker.endswith(f":{proc.pid}")
        assert list(elsewhere.iterdir()) == []  # no store made or read there
    finally:
        d.launcher.stop()
        d.close()


def test_the_demo_fails_in_one_line_as_soon_as_its_job_s_worker_exits_without_claiming_it(
    tmp_path: Path,
) -> None:
    """The demo never ticked the launcher while it waited: a worker that exited at once
    was never reaped, its job stayed queued, and after 240 s the demo ended in a
    RuntimeError's traceback, "job 1 did not finish in time"."""
    raw = _config(tmp_path)
    raw["tuning"] = {"workers": 1, "max_concurrent_jobs": 10, "worker_nice": 0}
    d = Daemon(build_config(raw, env={}), env={})
    try:
        d.store.ensure_model(name=MODEL, task="binary", feature_names=["a", "b"])
        job, _ = d.store.create_job(model=MODEL, kind="retune", trigger={}, spec={})
        d.launcher.command = [
            sys.executable,
            "-c",
            "import sys; print('tunewatch: error: no store at /elsewhere', file=sys.stderr); "
            "sys.exit(2)",
        ]
        with pytest.raises(TunewatchError) as raised:
            _run_job(d, job.id)
        message = raised.value.message
        assert f"job {job.id}" in message and "status 2" in message
        assert "no store at /elsewhere" in message and "\n" not in message
        assert d.store.get_job(job.id).status == "queued"
    finally:
        d.launcher.stop()
        d.close()


def _look(n: int, estimate: float, low: float, high: float, decision: str) -> ComparisonLookRow:
    return ComparisonLookRow(
        id=1,
        test_id=3,
        model="credit",
        kind="rollback_watch",
        champion_version=2,
        challenger_version=3,
        method="confidence_sequence",
        n=n,
        estimate=estimate,
        ci_low=low,
        ci_high=high,
        p_value=1e-5,
        adjusted_p_value=1e-5,
        decision=decision,
        fixed_t_p=None,
        bootstrap_ci=None,
        correction=None,
        family_size=1,
        created_at=datetime.now(UTC),
    )


def _summary(tmp_path: Path, watch: WatchOutcome) -> dict[str, object]:
    report = tmp_path / "credit-v3.html"
    report.write_text("<html></html>")
    return {
        "drift_window": 1,
        "promoted": 3,
        "replaced": 2,
        "look": _look(400, -0.5244, -0.6556, -0.3932, "challenger_better"),
        "watch": watch,
        "report": str(report),
        "data_dir": str(tmp_path / "demo"),
    }


def test_the_summary_says_a_passed_rollback_watch_kept_the_promoted_champion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed the watch's decision, `challenger_better`, which read as "roll back"
    although the watch passed and v3 stayed champion."""
    look = _look(200, -0.4962, -0.7651, -0.2274, "challenger_better")
    watch = WatchOutcome(promoted=3, replaced=2, action="watch_passed", look=look)
    _print_summary(_summary(tmp_path, watch), 47.0)
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if "rollback watch" in ln]
    assert "passed: v3 kept as champion" in line
    assert "-0.4962 [-0.7651, -0.2274]" in line and "n=200" in line
    assert "challenger_better" not in line


def test_the_summary_says_a_failed_rollback_watch_restored_the_replaced_champion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    look = _look(200, 0.3100, 0.1200, 0.5000, "challenger_worse")
    watch = WatchOutcome(promoted=3, replaced=2, action="rolled_back", look=look)
    _print_summary(_summary(tmp_path, watch), 47.0)
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if "rollback watch" in ln]
    assert "failed: rolled back to v2" in line
    assert "+0.3100 [+0.1200, +0.5000]" in line
    assert "challenger_worse" not in line


@pytest.mark.parametrize("on_path", [True, False], ids=["venv-on-path", "venv-not-on-path"])
def test_the_summary_says_how_to_look_around_the_demo_s_store_afterwards(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    on_path: bool,
) -> None:
    """`make demo` runs `.venv/bin/tunewatch demo` with nothing activated: the printed
    `tunewatch tokens create …` was "command not found". The command printed is one the
    caller's shell finds: `tunewatch` where its PATH leads to this one, else its path."""
    ours = Path(sys.executable).parent
    monkeypatch.setenv("PATH", os.pathsep.join([*([str(ours)] if on_path else []), "/usr/bin"]))
    look = _look(200, -0.4962, -0.7651, -0.2274, "challenger_better")
    watch = WatchOutcome(promoted=3, replaced=2, action="watch_passed", look=look)
    _print_summary(_summary(tmp_path, watch), 47.0)
    out = capsys.readouterr().out
    data_dir = tmp_path / "demo"
    [line] = [ln for ln in out.splitlines() if "look around afterwards" in ln]
    commands = re.findall(rf"TUNEWATCH_DATA_DIR={re.escape(str(data_dir))} (\S+) ", line)
    assert len(commands) == 2 and len(set(commands)) == 1, line
    assert commands[0] == "tunewatch" if on_path else Path(commands[0]).exists(), line
    assert shutil.which(commands[0]) is not None or Path(commands[0]).is_file()
    assert f"{commands[0]} tokens create " in line and f"{commands[0]} serve" in line
