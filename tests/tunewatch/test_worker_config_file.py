"""The configuration the daemon writes for its tuning workers, and a worker given an empty
one.

The daemon rewrote ``worker-config.yaml`` in place (truncated, then written) on every
start: a worker reading it in between read an empty file, which ``load_config`` reads as
the built-in defaults; the worker made and migrated a new store under its working
directory and failed with "job 1 does not exist", and five such starts failed the job."""

from __future__ import annotations

import multiprocessing
import multiprocessing.sharedctypes
import multiprocessing.synchronize
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
    path = data_dir / "worker-config.yaml"
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # a worker's: the defaults' data_dir is under it
    context = multiprocessing.get_context("fork")
    written = context.Value("i", 0)
    stop = context.Event()
    writer = context.Process(target=_write_until_stopped, args=(str(data_dir), written, stop))
    writer.start()
    try:
        while not path.exists():  # the daemon's start writes it first
            assert writer.is_alive(), "the writing daemon stopped"
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
    # no temporary file left beside it
    assert [p.name for p in data_dir.iterdir() if "worker-config" in p.name] == [path.name]


def test_a_rewritten_worker_config_is_the_owners_only(tmp_path: Path) -> None:
    """A file there before, under another mode, is replaced by one of mode 0600."""
    path = tmp_path / "worker-config.yaml"
    path.write_text("data_dir: elsewhere\n")
    path.chmod(0o644)
    daemon = Daemon(build_config({"data_dir": str(tmp_path)}, env={}), env={})
    try:
        assert daemon._worker_config() == path
    finally:
        daemon.close()
    assert path.stat().st_mode & 0o777 == 0o600
    assert str(load_config(path, env={}).data_dir) == str(tmp_path)


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
