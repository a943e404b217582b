"""Bundles: where `tunewatch export` writes its bundle and `tunewatch import --config-out`
its snippet. Either wrote over whatever the path named and exited 0: the live SQLite store
(every later command failed "file is not a database"), the config the command ran with,
a named pipe, a device (replaced by a regular file keeping the device's 0666 mode). Such
a destination is now refused, exit 2, with nothing changed; a regular file is written as
before. (No device node is made here: the refusal of a non-regular file is shown on FIFOs
and directories.)"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._artefacts import ArtefactStore
from tunewatch._bundle import BundleError, export_bundle
from tunewatch._cli import main
from tunewatch._config import load_config
from tunewatch._example import ExampleModel
from tunewatch._open_store import open_store
from tunewatch.store import Store

SPACE = Path(__file__).resolve().parents[2] / "configs" / "search_spaces" / "binary_tabular.yaml"


@pytest.fixture(scope="module")
def prepared(trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A source store holding ``credit`` v1 (champion) and v2, kept outside its
    ``data_dir`` (``db/source.db``), and the search space its config names; copied for
    each test by :func:`source`."""
    root = tmp_path_factory.mktemp("prepared")
    (root / "db").mkdir()
    daemon, _ = make_daemon(root / "data", trained, store_url=f"sqlite:///{root}/db/source.db")
    daemon.close()
    (root / "space.yaml").write_bytes(SPACE.read_bytes())
    return root


@pytest.fixture
def source(prepared: Path, tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/root``: ``tw.yaml``, the config (store ``db/source.db``, data_dir
    ``data``, model ``credit`` naming ``space.yaml``), and what it names."""
    root = tmp_path / "root"
    shutil.copytree(prepared, root, symlinks=True)
    model = {"name": MODEL, "task": "binary", "tuning": {"search_space": str(root / "space.yaml")}}
    config = {
        "data_dir": str(root / "data"),
        "store": {"url": f"sqlite:///{root}/db/source.db"},
        # the archive of old studies beside the store, outside data_dir
        "tuning": {
            "storage_url": f"sqlite:///{root}/db/optuna.db",
            "archive_storage_url": f"sqlite:///{root}/db/archive.db",
        },
        "models": [model],
    }
    (root / "tw.yaml").write_text(json.dumps(config))
    (root / "out").mkdir()
    yield root


def _tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``root``, links not followed: its type, mode, inode and content
    (a regular file's bytes, a link's target)."""
    state: dict[str, tuple[object, ...]] = {}
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(folder, name)
            found = path.lstat()
            content: object = None
            if stat.S_ISREG(found.st_mode):
                content = path.read_bytes()
            elif stat.S_ISLNK(found.st_mode):
                content = os.readlink(path)
            state[str(path.relative_to(root))] = (
                stat.S_IFMT(found.st_mode),
                stat.S_IMODE(found.st_mode),
                found.st_ino,
                content,
            )
    return state


def _models(url: str) -> list[str]:
    with Store.open(url) as store:
        return [m.name for m in store.list_models()]


def _fifo(root: Path) -> Path:
    os.mkfifo(root / "out" / "bundle.pipe")
    return root / "out" / "bundle.pipe"


def _directory(root: Path) -> Path:
    (root / "out" / "bundle.zip").mkdir()
    return root / "out" / "bundle.zip"


def _symlink_to_store(root: Path) -> Path:
    (root / "out" / "link.zip").symlink_to(root / "db" / "source.db")
    return root / "out" / "link.zip"


def _hard_link_to_store(root: Path) -> Path:
    os.link(root / "db" / "source.db", root / "out" / "hard.zip")
    return root / "out" / "hard.zip"


def _artefact(root: Path) -> Path:
    return sorted((root / "data" / "artefacts").rglob("*.onnx"))[0]


EXPORT_REFUSALS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "a-fifo": (_fifo, "a FIFO (named pipe), not a regular file"),
    "a-directory": (_directory, "a directory, not a regular file"),
    "the-store": (lambda r: r / "db" / "source.db", "the store's SQLite database ("),
    "a-symlink-to-the-store": (_symlink_to_store, "the store's SQLite database ("),
    "a-hard-link-to-the-store": (_hard_link_to_store, "the store's SQLite database ("),
    "the-store-s-write-ahead-log": (
        lambda r: r / "db" / "source.db-wal",
        "the store's SQLite database's write-ahead log (",
    ),
    "the-config": (lambda r: r / "tw.yaml", "the config this command runs with ("),
    "the-study-archive": (lambda r: r / "db" / "archive.db", "the archive of old studies ("),
    "the-search-space": (lambda r: r / "space.yaml", "model credit's search space ("),
    "a-new-file-under-data-dir": (lambda r: r / "data" / "credit.zip", "under data_dir "),
    "an-artefact-under-data-dir": (_artefact, "under data_dir "),
}


@pytest.mark.parametrize(
    ("make", "reason"), list(EXPORT_REFUSALS.values()), ids=list(EXPORT_REFUSALS)
)
def test_export_refuses_a_destination_it_must_not_replace_and_changes_nothing(
    make: Callable[[Path], Path],
    reason: str,
    source: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    destination = make(source)
    before = _tree(source)
    argv = ["--config", str(source / "tw.yaml"), "export", MODEL, str(destination)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"tunewatch: error: cannot export to {destination}: it is {reason}" in err
    assert err.rstrip().endswith("; nothing was written") and err.count("\n") == 1
    assert _tree(source) == before  # byte for byte, inode for inode, no partial file
    assert _models(f"sqlite:///{source}/db/source.db") == [MODEL]


def test_export_bundle_itself_refuses_a_fifo(source: Path) -> None:
    """Below the CLI too: the rename replaced the FIFO with the bundle."""
    fifo = _fifo(source)
    config = load_config(source / "tw.yaml")
    store = open_store(config)
    try:
        artefacts = ArtefactStore(config.artefact_dir, store=store)
        with pytest.raises(BundleError, match=r"it is a FIFO \(named pipe\), not a regular file"):
            export_bundle(store, artefacts, config, MODEL, fifo)
    finally:
        store.close()
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in (source / "out").iterdir()) == ["bundle.pipe"]


def test_export_over_a_regular_file_replaces_it_and_keeps_its_mode(
    source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    destination = source / "out" / "credit.zip"
    destination.write_bytes(b"an earlier bundle")
    destination.chmod(0o640)
    argv = ["--config", str(source / "tw.yaml"), "export", MODEL, str(destination)]
    assert main(argv) == 0
    digest = hashlib.sha256(destination.read_bytes()).hexdigest()
    assert capsys.readouterr().out == (
        f"exported {MODEL} versions [1] to {destination}\nbundle sha256: {digest}\n"
    )
    assert zipfile.is_zipfile(destination)
    assert stat.S_IMODE(destination.stat().st_mode) == 0o640
    assert sorted(p.name for p in (source / "out").iterdir()) == ["credit.zip"]


def test_a_new_bundle_is_readable_by_its_owner_only(source: Path) -> None:
    """It holds the reference snapshots (training rows and labels), which the artefact
    store keeps 0600: under umask 022 the bundle was 0644."""
    destination = source / "out" / "credit.zip"
    umask = os.umask(0o022)
    try:
        assert main(["--config", str(source / "tw.yaml"), "export", MODEL, str(destination)]) == 0
    finally:
        os.umask(umask)
    assert zipfile.is_zipfile(destination)
    assert stat.S_IMODE(destination.stat().st_mode) == 0o600


# -- import --config-out ------------------------------------------------------------------


@pytest.fixture
def target(source: Path) -> Path:
    """A target config (``target.yaml``, data_dir ``target``, its store made) and, in
    ``credit.zip``, the source's champion with its search space."""
    assert (
        main(["--config", str(source / "tw.yaml"), "export", MODEL, str(source / "credit.zip")])
        == 0
    )
    config = source / "target.yaml"
    config.write_text(json.dumps({"data_dir": str(source / "target")}))
    assert main(["--config", str(config), "migrate"]) == 0
    return config


def _reader(fifo: Path) -> int:
    """A reader on ``fifo`` that never blocks, so that a write to it cannot hang the test:
    what it reads is what was written."""
    return os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)


def _target_store(root: Path) -> Path:
    return root / "target" / "tunewatch.db"


def _symlink_to_target_store(root: Path) -> Path:
    (root / "out" / "snippet.yaml").symlink_to(_target_store(root))
    return root / "out" / "snippet.yaml"


IMPORT_REFUSALS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "a-fifo": (_fifo, "it is a FIFO (named pipe), not a regular file"),
    "the-target-store": (_target_store, "it is the store's SQLite database ("),
    "a-symlink-to-the-target-store": (_symlink_to_target_store, "it is the store's SQLite"),
    "a-new-file-under-data-dir": (lambda r: r / "target" / "snippet.yaml", "it is under data_dir"),
    "the-bundle-it-imports": (lambda r: r / "credit.zip", "it is the bundle this import reads ("),
}


@pytest.mark.parametrize(
    ("make", "reason"), list(IMPORT_REFUSALS.values()), ids=list(IMPORT_REFUSALS)
)
def test_import_refuses_a_config_out_it_must_not_replace_and_imports_nothing(
    make: Callable[[Path], Path],
    reason: str,
    source: Path,
    target: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = make(source)
    fifos = [p for p in (source / "out").iterdir() if stat.S_ISFIFO(p.lstat().st_mode)]
    readers = [_reader(p) for p in fifos]
    before = _tree(source)
    capsys.readouterr()
    try:
        argv = ["--config", str(target), "import", str(source / "credit.zip")]
        assert main([*argv, "--config-out", str(out)]) == 2
        written = [os.read(fd, 1 << 16) for fd in readers]
    finally:
        for fd in readers:
            os.close(fd)
    captured = capsys.readouterr()
    assert f"tunewatch: error: --config-out {out}: " in captured.err and reason in captured.err
    assert captured.err.rstrip().endswith("; nothing was imported")
    assert captured.out == ""
    assert written == [b""] * len(readers)
    assert _tree(source) == before  # refused before the store was opened
    assert _models(f"sqlite:///{_target_store(source)}") == []


def test_import_refuses_a_search_space_file_beside_config_out_that_is_a_fifo(
    source: Path, target: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked once the bundle is read (it holds a search space), before anything is
    imported: the space was written into the pipe after the import."""
    out, space = source / "out" / "snippet.yaml", source / "out" / "snippet.search_space.yaml"
    os.mkfifo(space)
    reader = _reader(space)
    capsys.readouterr()
    try:
        argv = ["--config", str(target), "import", str(source / "credit.zip")]
        assert main([*argv, "--config-out", str(out)]) == 2
        written = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    err = capsys.readouterr().err
    assert f"--config-out {out}: {space} is a FIFO (named pipe), not a regular file" in err
    assert err.rstrip().endswith("; nothing was imported")
    assert written == b""
    assert stat.S_ISFIFO(space.lstat().st_mode) and not out.exists()
    assert _models(f"sqlite:///{_target_store(source)}") == []


def test_import_writes_a_config_out_that_is_a_regular_file(source: Path, target: Path) -> None:
    out = source / "out" / "snippet.yaml"
    out.write_text("# to be replaced\n")
    argv = ["--config", str(target), "import", str(source / "credit.zip")]
    assert main([*argv, "--config-out", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["models"][0]["name"] == MODEL
    assert _models(f"sqlite:///{_target_store(source)}") == [MODEL]
