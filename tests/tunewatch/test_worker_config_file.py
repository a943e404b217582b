"""The configuration each daemon writes for its tuning workers, and a worker given an empty
one.

The daemon rewrote ``worker-config.yaml`` in place (truncated, then written) on every
start: a worker reading it in between read an empty file, which ``load_config`` reads as
the built-in defaults; the worker made and migrated a new store under its working
directory and failed with "job 1 does not exist", and five such starts failed the job.

Every daemon on a data_dir wrote that one file, and every launcher started its workers on
it: the last daemon to start decided the leader's workers' settings. Each now writes its
own, ``worker-config.<pid>.<random>.yaml``, and removes it as it closes."""

from __future__ import annotations

import multiprocessing
import multiprocessing.sharedctypes
import multiprocessing.synchronize
import os
import signal
from pathlib import Path

import pytest

from tunewatch._cli import main
from tunewatch._config import ENV_DATA_DIR, ENV_STORE_URL, build_config, load_config
from tunewatch._daemon import Daemon

#: Reads while the writer writes, and writes during them: the in-place rewrite gave a
#: wrong config to most reads.
READS = 300
WRITES = 300


def _write_until_stopped(
    data_dir: str,
    written: multiprocessing.sharedctypes.Synchronized[int],
    stop: multiprocessing.synchronize.Event,
) -> None:
    """A daemon on ``data_dir`` writing its workers' config, as each start does, until
    ``stop``; ``written`` counts the writes."""
    daemon = Daemon(build_config({"data_dir": data_dir}, env={}), env={})
    try:
        while not stop.is_set():
            daemon._worker_config()
            with written.get_lock():
                written.value += 1
    finally:
        daemon.close()


def test_a_worker_reading_the_config_while_the_daemon_writes_it_reads_the_daemons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # a worker's: the defaults' data_dir is under it
    context = multiprocessing.get_context("fork")
    written = context.Value("i", 0)
    stop = context.Event()
    writer = context.Process(target=_write_until_stopped, args=(str(data_dir), written, stop))
    writer.start()
    try:
        while not (paths := list(data_dir.glob("worker-config.*.yaml"))):
            assert writer.is_alive(), "the writing daemon stopped"  # its start writes it
        [path] = paths
        before = written.value
        read: list[str] = []
        # reads until the daemon has written it WRITES times more: the two overlap
        while len(read) < READS or written.value - before < WRITES:
            assert writer.is_alive(), "the writing daemon stopped"
            read.append(str(load_config(path, env={}).data_dir))
    finally:
        stop.set()
        writer.join()
    assert writer.exitcode == 0
    wrong = [d for d in read if d != str(data_dir)]
    assert not wrong, f"{len(wrong)} of {len(read)} reads got another data_dir: {wrong[0]}"
    # no temporary file left beside it, and the daemon's own removed as it closed
    assert [p.name for p in data_dir.iterdir() if "worker-config" in p.name] == []


def test_a_worker_config_is_the_owners_only_and_removed_at_close(tmp_path: Path) -> None:
    """It holds the store URL, and so its password: mode 0600 under any umask, and gone
    once its daemon is."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path)}, env={}), env={})
    try:
        path = daemon.launcher.config_path
        # in the data directory itself: a failed job's error is redacted of the paths under
        # the directory its launcher's configuration is in (tunewatch._launcher_reap)
        assert path.parent == tmp_path.resolve()
        assert path.name.startswith(f"worker-config.{os.getpid()}.")
        assert path.stat().st_mode & 0o777 == 0o600
        assert str(load_config(path, env={}).data_dir) == str(tmp_path)
    finally:
        daemon.close()
    assert not path.exists()


def _serve_until_killed(data_dir: str, ready: multiprocessing.synchronize.Event) -> None:
    """A daemon on ``data_dir`` that has written its workers' config, until it is killed."""
    Daemon(build_config({"data_dir": data_dir}, env={}), env={})
    ready.set()
    multiprocessing.Event().wait()  # never set: the parent kills this process


def test_a_start_removes_the_worker_configs_no_live_daemon_holds(tmp_path: Path) -> None:
    """A daemon killed (``kill -9``) left its file, and with it the store's password, on
    disk. The next start removes it, and a temporary file a write killed part way left;
    a scoring replica (scheduler off) writes none of its own. The ``worker-config.yaml``
    of an earlier tunewatch stays: a daemon of that version still serving on the data_dir
    (a rolling upgrade) starts its workers on it."""
    data_dir = tmp_path / "data"
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    killed = context.Process(target=_serve_until_killed, args=(str(data_dir), ready))
    killed.start()
    try:
        assert ready.wait(120), "the daemon to kill did not start"
    finally:
        assert killed.pid is not None
        os.kill(killed.pid, signal.SIGKILL)
        killed.join()
    [left] = data_dir.glob("worker-config.*.yaml")
    assert left.name.startswith(f"worker-config.{killed.pid}.")
    (data_dir / f".{left.name}.x1y2z3").write_text("data_dir: ")  # a killed write's
    (data_dir / "worker-config.yaml").write_text(f"data_dir: {data_dir}\n")  # an earlier one's
    replica = Daemon(
        build_config({"data_dir": str(data_dir), "scheduler": {"enabled": False}}, env={}),
        env={},
    )
    try:
        left_now = [p.name for p in data_dir.iterdir() if "worker-config" in p.name]
        assert left_now == ["worker-config.yaml"]
    finally:
        replica.close()


@pytest.mark.parametrize(
    "text",
    ["", "# nothing but a comment\n\n", "---\n...\n"],
    ids=["empty", "comments", "no-document"],
)
def test_worker_refuses_an_empty_config_file_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    """An empty file was read as the built-in defaults: a new store made and migrated
    under the working directory, then "job 1 does not exist". So was one holding only
    comments, or an empty YAML document."""
    for name in (ENV_DATA_DIR, ENV_STORE_URL, "TUNEWATCH_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "worker-config.yaml"
    empty.write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(empty), "worker", "--job", "1"]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "empty" in err
    assert err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker-config.yaml"]


def test_worker_refuses_a_config_holding_no_such_date_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The worker's look for an empty file read it with PyYAML's own loader, whose
    timestamp raised datetime's ValueError for ``2026-02-30``: a traceback, exit 1, before
    the configuration's loader could refuse it by its line."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "worker-config.yaml"
    config.write_text(f"data_dir: {tmp_path}\nnote: 2026-02-30T10:00:00Z\n")
    assert main(["--config", str(config), "worker", "--job", "1"]) == 2
    err = capsys.readouterr().err
    assert "line 2, column 7: no such date and time" in err
    assert err.count("\n") == 1, err


def test_a_second_daemon_does_not_replace_the_first_daemons_worker_config(
    tmp_path: Path,
) -> None:
    """Every daemon wrote ``<data_dir>/worker-config.yaml`` at its start, whether it led or
    not, and every launcher started its workers on that one file: a scoring replica
    (scheduler off) started second had the leader's retunes run under its own defaults
    (``max_trials`` 30 where the leader's config said 3)."""
    data_dir = str(tmp_path / "data")
    models = [{"name": "credit", "task": "binary", "tuning": {"max_trials": 3}}]
    leader = Daemon(build_config({"data_dir": data_dir, "models": models}, env={}), env={})
    try:
        replica = Daemon(
            build_config({"data_dir": data_dir, "scheduler": {"enabled": False}}, env={}),
            env={},
        )
        replica.close()
        read = load_config(leader.launcher.config_path, env={})
    finally:
        leader.close()
    assert [(m.name, m.tuning.max_trials) for m in read.models] == [("credit", 3)]
