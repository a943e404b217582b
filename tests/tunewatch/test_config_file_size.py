"""The configuration file is read to a bound: ``--config /dev/zero`` (or
``$TUNEWATCH_CONFIG`` naming any endless or huge file) was read whole, memory growing by
half a gigabyte a second until a MemoryError traceback, exit 1. A pipe and a process
substitution (``--config <(...)``) are still read."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tunewatch._cli import main
from tunewatch._config import load_config
from tunewatch._errors import ConfigError

LIMIT = 1024 * 1024  # the documented bound: 1 MiB, as a search space's
REFUSED = r"configuration file .+ is larger than 1 MiB \(more than 1048576 bytes\)"


def _config_of_size(data_dir: Path, size: int) -> bytes:
    """A valid config of exactly ``size`` bytes: ``data_dir``, then comment lines."""
    head = f"data_dir: {data_dir}\n".encode()
    line = b"#" + b"x" * 62 + b"\n"
    padding = line * ((size - len(head)) // len(line) + 1)
    return head + padding[: size - len(head)]


class _Writer(threading.Thread):
    """Writes ``data`` into the FIFO at ``path`` until it is all written or the reader
    closes its end; ``written`` counts the bytes the reader was handed."""

    def __init__(self, path: Path, data: bytes) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.data = data
        self.written = 0

    def run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)  # waits for the reader to open
        try:
            view = memoryview(self.data)
            while self.written < len(view):
                self.written += os.write(fd, view[self.written : self.written + 65536])
        except BrokenPipeError:  # the reader stopped reading: what a bound does
            pass
        finally:
            os.close(fd)


@contextmanager
def _fifo_fed(path: Path, data: bytes) -> Iterator[_Writer]:
    os.mkfifo(path)
    writer = _Writer(path, data)
    writer.start()
    try:
        yield writer
    finally:
        if writer.is_alive():  # nothing opened the FIFO: release the writer's open
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            os.close(fd)
        writer.join()


def test_a_config_file_of_exactly_the_limit_loads(tmp_path: Path) -> None:
    path = tmp_path / "tunewatch.yaml"
    path.write_bytes(_config_of_size(tmp_path / "state", LIMIT))
    assert load_config(path, env={}).data_dir == str(tmp_path / "state")


def test_a_config_file_larger_than_the_limit_is_refused_naming_it(tmp_path: Path) -> None:
    """It loaded: the file was read whole, however large."""
    path = tmp_path / "tunewatch.yaml"
    path.write_bytes(_config_of_size(tmp_path / "state", LIMIT + 1))
    with pytest.raises(ConfigError, match=REFUSED) as caught:
        load_config(path, env={})
    assert str(path) in caught.value.message
    assert "\n" not in caught.value.message


def test_a_pipe_feeding_more_than_the_limit_is_refused_without_reading_it_all(
    tmp_path: Path,
) -> None:
    """An endless pipe was read until memory ran out; here the writer is finite (twice
    the limit) so that a reader without a bound ends, and the bound shows in what it read."""
    path = tmp_path / "config.fifo"
    data = _config_of_size(tmp_path / "state", 2 * LIMIT)
    with _fifo_fed(path, data) as writer:
        with pytest.raises(ConfigError, match=REFUSED):
            load_config(path, env={})
    assert writer.written < len(data)  # the pipe's buffer and one read past the limit


def test_a_normal_config_through_a_pipe_still_loads(tmp_path: Path) -> None:
    """As ``--config <(...)`` gives it: not a regular file, so a size from stat is none."""
    path = tmp_path / "config.fifo"
    data = f"data_dir: {tmp_path / 'state'}\nserver: {{port: 9123}}\n".encode()
    with _fifo_fed(path, data):
        config = load_config(path, env={})
    assert (config.data_dir, config.server.port) == (str(tmp_path / "state"), 9123)


def test_a_config_that_is_not_utf8_past_the_first_read_names_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "tunewatch.yaml"
    head = _config_of_size(tmp_path / "state", 100_000)
    path.write_bytes(head + b"\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=rf"not UTF-8 text \(byte 0xe9 at offset {100_006}\)"):
        load_config(path, env={})


@pytest.fixture
def no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TUNEWATCH_CONFIG", "TUNEWATCH_STORE_URL", "TUNEWATCH_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def _refused_by_cli(capsys: pytest.CaptureFixture[str], argv: list[str], path: Path) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"tunewatch: error: configuration file {path} is larger than 1 MiB")
    assert "Traceback" not in err


@pytest.mark.usefixtures("no_config_env")
def test_cli_refuses_a_large_config_file_with_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tunewatch.yaml"
    path.write_bytes(_config_of_size(tmp_path / "state", LIMIT + 1))
    _refused_by_cli(capsys, ["--config", str(path), "models"], path)


@pytest.mark.usefixtures("no_config_env")
def test_cli_refuses_a_large_config_pipe_named_by_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.fifo"
    monkeypatch.setenv("TUNEWATCH_CONFIG", str(path))
    with _fifo_fed(path, _config_of_size(tmp_path / "state", 2 * LIMIT)):
        _refused_by_cli(capsys, ["models"], path)


def _address_space_of_1_5_gb() -> None:
    """A wrong bound ends in a MemoryError here, not in the machine's memory."""
    resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))


def test_cli_refuses_dev_zero_as_its_config(tmp_path: Path) -> None:
    """The reported case: a character device that never ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEWATCH_")}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "tunewatch"), "--config", "/dev/zero", "models"],
        capture_output=True,
        text=True,
        preexec_fn=_address_space_of_1_5_gb,
        timeout=300,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert (done.returncode, done.stderr) == (
        2,
        "tunewatch: error: configuration file /dev/zero is larger than 1 MiB (more than "
        "1048576 bytes); a configuration is a few kilobytes of YAML\n",
    )
