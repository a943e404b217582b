"""What the ``tunewatch`` command line does with awkward input: file names that are not
UTF-8, empty values, files that are not regular or too large, and configs it cannot read."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._cli import main
from tunewatch._commands import _export as export_commands
from tunewatch._example import ExampleModel
from tunewatch.store import Store

ROOT = Path(__file__).resolve().parents[2]
SPACE = ROOT / "configs" / "search_spaces" / "binary_tabular.yaml"


def _write_config(path: Path, data_dir: Path, **extra: object) -> Path:
    path.write_text(json.dumps({"data_dir": str(data_dir), **extra}))
    return path


@pytest.fixture
def source(tmp_path: Path, trained: list[ExampleModel]) -> Path:
    """A config whose store holds ``credit`` v1 (champion) and v2, its search space named."""
    daemon, _ = make_daemon(tmp_path / "source", trained)
    daemon.close()
    model = {"name": MODEL, "task": "binary", "tuning": {"search_space": str(SPACE)}}
    return _write_config(tmp_path / "source.yaml", tmp_path / "source", models=[model])


@pytest.fixture
def bundle(source: Path, tmp_path: Path) -> Path:
    path = tmp_path / "credit.zip"
    assert main(["--config", str(source), "--actor", "ops", "export", MODEL, str(path)]) == 0
    return path


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return _write_config(tmp_path / "target.yaml", tmp_path / "target")


def _models(config: Path) -> list[str]:
    data_dir = json.loads(config.read_text())["data_dir"]
    with Store.open(f"sqlite:///{data_dir}/tunewatch.db") as store:
        return [m.name for m in store.list_models()]


def _strict_stdout_cli(*args: bytes) -> subprocess.CompletedProcess[bytes]:
    """The command line in a process whose stdout and stderr refuse what UTF-8 cannot
    encode, as under any UTF-8 locale but C's (en_US.UTF-8); arguments as the shell gives
    them, bytes (Python decodes them with surrogateescape)."""
    argv = [sys.executable.encode(), b"-m", b"tunewatch._cli", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8:strict"}
    return subprocess.run(argv, capture_output=True, env=env, check=False)


def test_export_to_a_file_name_that_is_not_utf8_prints_it_escaped(
    source: Path, tmp_path: Path
) -> None:
    """The bundle was written, then printing its name raised UnicodeEncodeError: a
    traceback and exit 1 after the work was done."""
    path = bytes(tmp_path) + b"/bx\xff.zip"
    done = _strict_stdout_cli(
        b"--config", bytes(source), b"--actor", b"ops", b"export", MODEL.encode(), path
    )
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    assert os.path.isfile(path)
    assert b"exported credit versions [1] to " in done.stdout
    assert b"/bx\\udcff.zip" in done.stdout  # the byte the locale could not decode


def test_import_with_a_config_out_name_that_is_not_utf8_writes_both_files(
    bundle: Path, target: Path, tmp_path: Path
) -> None:
    """The versions were imported and the search space written, then printing its name
    crashed: the config snippet naming it was never written."""
    out = bytes(tmp_path) + b"/cfg\xff.yaml"
    space = bytes(tmp_path) + b"/cfg\xff.search_space.yaml"
    done = _strict_stdout_cli(
        b"--config", bytes(target), b"--actor", b"ops", b"import", bytes(bundle),
        b"--config-out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    assert os.path.isfile(out) and os.path.isfile(space)
    with open(out, "rb") as f:
        snippet = yaml.safe_load(f)
    named = snippet["models"][0]["tuning"]["search_space"]
    assert os.fsencode(named) == space  # the snippet names the file written beside it
    assert b"credit v1 -> v1 (champion)" in done.stdout
    assert b"/cfg\\udcff.yaml: merge it into yours" in done.stdout
    assert _models(target) == [MODEL]


def test_import_as_an_empty_name_is_refused(
    bundle: Path, target: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--as ""` imported into the bundle's own model name: "credit v1 -> v1", exit 0."""
    assert main(["--config", str(target), "import", str(bundle), "--as", ""]) == 2
    captured = capsys.readouterr()
    assert "model name '' must be 1 to 200 printable characters" in captured.err
    assert "->" not in captured.out
    assert _models(target) == []


def test_an_empty_config_flag_is_refused_not_read_as_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--config ""` fell back to the built-in defaults: a new store made and migrated
    under the working directory, exit 0."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TUNEWATCH_CONFIG", raising=False)
    assert (
        main(["--config", "", "--actor", "ops", "tokens", "create", "t", "--role", "viewer"]) == 2
    )
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "`--config` must name a configuration file, got an empty value" in captured.err
    assert list(tmp_path.iterdir()) == []  # no .tunewatch store


def test_an_empty_tunewatch_config_variable_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It read the working directory as the file: "cannot read configuration file .: Is
    a directory"."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNEWATCH_CONFIG", "")
    assert main(["--actor", "ops", "models"]) == 2
    err = capsys.readouterr().err
    assert "$TUNEWATCH_CONFIG is set but empty: name a configuration file" in err
    assert "unset it" in err
    assert list(tmp_path.iterdir()) == []


def test_an_empty_config_out_is_refused_before_importing(
    bundle: Path, target: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was skipped silently: the versions imported, no snippet written, exit 0."""
    capsys.readouterr()
    assert main(["--config", str(target), "import", str(bundle), "--config-out", ""]) == 2
    captured = capsys.readouterr()
    assert "`--config-out` must name a file, got an empty value; nothing was imported" in (
        captured.err
    )
    assert "->" not in captured.out
    assert _models(target) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('data_dir: "a\\0b"\n', "data_dir: Value error, a directory name must not hold a NUL"),
        ('store: {url: "sqlite:///a\\0b.db"}\n', "store.url: Value error, a database URL must"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "not readable YAML: nested deeper than"),
    ],
    ids=["nul-in-data-dir", "nul-in-store-url", "nested-5000-deep"],
)
def test_a_config_the_store_could_not_use_is_a_usage_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    """A NUL escaped from opening the store as `ValueError: embedded null byte`, deep
    nesting from PyYAML as a RecursionError: tracebacks, exit 1."""
    config = tmp_path / "tunewatch.yaml"
    config.write_text(text)
    assert main(["--config", str(config), "models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tunewatch: error: ") and message in err


def _register(config: Path, onnx: Path, model: ExampleModel, *extra: str) -> int:
    features = ",".join(model.metadata.feature_names)
    return main(
        ["--config", str(config), "--actor", "ops", "register", MODEL, str(onnx)]
        + ["--task", "binary", "--features", features, *extra]
    )


def test_register_refuses_a_file_that_is_not_a_regular_file(
    target: Path, trained: list[ExampleModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It read FILE whole whatever it was: /dev/zero until a MemoryError traceback (the
    test reads /dev/null, which ends)."""
    assert _register(target, Path("/dev/null"), trained[0]) == 2
    assert (
        "FILE /dev/null is not a regular file (a character device): give the ONNX file"
        in capsys.readouterr().err
    )
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    assert _register(target, onnx, trained[0], "--reference", "/dev/null") == 2
    assert "--reference /dev/null is not a regular file" in capsys.readouterr().err
    assert _models(target) == []


def test_register_refuses_files_past_max_artefact_bytes_naming_the_setting(
    tmp_path: Path, trained: list[ExampleModel], capsys: pytest.CaptureFixture[str]
) -> None:
    """The limit held for API uploads and bundle imports, not for `register`."""
    model = trained[0]
    assert model.reference is not None
    onnx, reference = tmp_path / "m.onnx", tmp_path / "m.npz"
    onnx.write_bytes(model.onnx)
    reference.write_bytes(model.reference.to_bytes())
    limit = len(model.onnx) - 1
    config = _write_config(
        tmp_path / "small.yaml", tmp_path / "data", server={"max_artefact_bytes": limit}
    )
    assert _register(config, onnx, model) == 2
    assert (
        f"FILE {onnx} holds {len(model.onnx)} bytes, more than `server.max_artefact_bytes` "
        f"({limit})" in capsys.readouterr().err
    )
    assert _models(config) == []

    limit = len(model.onnx)  # the model fits, the reference does not
    assert len(reference.read_bytes()) > limit
    config.write_text(
        json.dumps({"data_dir": str(tmp_path / "data"), "server": {"max_artefact_bytes": limit}})
    )
    assert _register(config, onnx, model, "--reference", str(reference)) == 2
    assert "--reference" in (err := capsys.readouterr().err)
    assert f"more than `server.max_artefact_bytes` ({limit})" in err
    assert _models(config) == []
    assert _register(config, onnx, model) == 0  # at the limit


def test_import_refuses_a_config_out_it_cannot_create_before_importing(
    bundle: Path, target: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/proc is a directory, so the check passed; the versions were imported and
    committed, then the write failed with a bare "[Errno 2] No such file or directory"."""
    out = "/proc/tunewatch-snippet.yaml"
    capsys.readouterr()
    assert main(["--config", str(target), "import", str(bundle), "--config-out", out]) == 2
    captured = capsys.readouterr()
    assert f"--config-out {out}: cannot write {out}" in captured.err
    assert "No such file or directory; nothing was imported" in captured.err
    assert "->" not in captured.out
    assert _models(target) == []


def test_import_whose_snippet_write_fails_says_the_versions_were_imported(
    trained: list[ExampleModel],
    target: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write that still fails after the import (a full disk) exited 2 with the bare OS
    error, as if nothing had happened. (A link to /dev/full is refused before the import
    now, as a destination that is not a regular file: the disk fills up here instead.)"""
    daemon, _ = make_daemon(tmp_path / "plain", trained)
    daemon.close()
    config = _write_config(
        tmp_path / "plain.yaml", tmp_path / "plain", models=[{"name": MODEL, "task": "binary"}]
    )
    bundle = tmp_path / "plain.zip"
    assert main(["--config", str(config), "export", MODEL, str(bundle)]) == 0
    out = tmp_path / "snippet.yaml"
    replace = export_commands._replace

    def full_disk(path: Path, final: Path, data: bytes) -> None:
        if path == out:  # as a write to a full disk fails: naming no file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        replace(path, final, data)

    monkeypatch.setattr(export_commands, "_replace", full_disk)
    capsys.readouterr()
    assert main(["--config", str(target), "import", str(bundle), "--config-out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "credit v1 -> v1 (champion)" in captured.out
    assert (
        f"tunewatch: error: the versions above were imported, but the model's config was not "
        f"written: cannot write {out}: No space left on device" in captured.err
    )
    assert _models(target) == [MODEL]


def test_import_writes_the_snippet_to_stdout_through_a_pipe(
    trained: list[ExampleModel], target: Path, tmp_path: Path
) -> None:
    """`--config-out /dev/stdout | …`: the check before the import resolved /dev/stdout to
    the pipe's /proc name, could not create it and refused the import; and it checked the
    search space's file beside it for a bundle that holds none."""
    daemon, _ = make_daemon(tmp_path / "plain", trained)
    daemon.close()
    config = _write_config(
        tmp_path / "plain.yaml", tmp_path / "plain", models=[{"name": MODEL, "task": "binary"}]
    )
    bundle = tmp_path / "plain.zip"
    assert main(["--config", str(config), "export", MODEL, str(bundle)]) == 0
    argv = [sys.executable, "-m", "tunewatch._cli", "--config", str(target), "import"]
    done = subprocess.run(
        [*argv, str(bundle), "--config-out", "/dev/stdout"],
        capture_output=True,  # stdout a pipe
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert f"name: {MODEL}" in done.stdout and "credit v1 -> v1 (champion)" in done.stdout
    assert _models(target) == [MODEL]


def test_import_refuses_a_search_space_it_cannot_write_before_importing(
    bundle: Path, target: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bundle holds a search space: the file beside the snippet must be writable too."""
    out = tmp_path / "snippet.yaml"
    (tmp_path / "snippet.search_space.yaml").mkdir()
    assert main(["--config", str(target), "import", str(bundle), "--config-out", str(out)]) == 2
    assert "is a directory, where the import writes a file" in capsys.readouterr().err
    assert _models(target) == []
