"""Bundles: what an import checks before it registers anything, what an export writes, and
how malformed archives and unwritable destinations are refused."""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import stat
import struct
import subprocess
import sys
import weakref
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx
import pytest

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._artefacts import ArtefactStore
from tunewatch._bundle import export_bundle, import_bundle
from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import ConflictError
from tunewatch._example import ExampleModel
from tunewatch.store import Store

SPACE = Path(__file__).resolve().parents[2] / "configs" / "search_spaces" / "binary_tabular.yaml"


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Daemon]:
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "target")}, env={}), env={})
    yield daemon
    daemon.close()


def _import(d: Daemon, path: Path) -> object:
    return import_bundle(d.store, d.registry, d.config, path, actor="ops", max_artefact_bytes=10**8)


def _renamed_input(onnx_bytes: bytes, name: str) -> bytes:
    """The model with its graph input renamed (and every node reading it)."""
    proto = onnx.load_from_string(onnx_bytes)
    old = proto.graph.input[0].name
    proto.graph.input[0].name = name
    for node in proto.graph.node:
        node.input[:] = [name if i == old else i for i in node.input]
    return proto.SerializeToString()


def test_an_import_refuses_a_later_version_whose_input_differs_from_the_bundle_s_champion(
    trained: list[ExampleModel], target: Daemon, tmp_path: Path
) -> None:
    """The check compared each version with the target's champion only: into a model with
    none, the bundle's champion registered, then its next version failed with
    `signature_mismatch`, a partial import that no repetition could complete."""
    source = Daemon(build_config({"data_dir": str(tmp_path / "source")}, env={}), env={})
    try:
        source.registry.register(
            MODEL, trained[0].onnx, trained[0].metadata, actor="t", reference=trained[0].reference
        )
        renamed = _renamed_input(trained[1].onnx, "features")
        source.registry.register(MODEL, renamed, trained[1].metadata, actor="t")
        source.store.promote(MODEL, 1, actor="t", reason="first")
        bundle = tmp_path / "credit.zip"
        export_bundle(source.store, source.artefacts, source.config, MODEL, bundle, versions=[1, 2])
    finally:
        source.close()
    with pytest.raises(ConflictError) as caught:
        _import(target, bundle)
    assert caught.value.code == "signature_mismatch"
    message = str(caught.value)
    assert "the bundle's champion (version 1) takes input input: float32[None, 8]" in message
    assert "version 2 takes features: float32[None, 8]" in message
    assert "nothing was imported" in message
    assert target.store.list_models() == []
    assert [a.action for a in target.store.audit_log(limit=5)] == []


def test_export_writes_the_model_regulated_when_the_source_config_regulates_it(
    trained: list[ExampleModel], target: Daemon, tmp_path: Path
) -> None:
    """The config regulated the model but the store's flag was still false (no daemon had
    started since): the bundle said unregulated and the target took a champion as such."""
    source, _ = make_daemon(tmp_path / "source", trained)
    try:
        assert source.store.get_model(MODEL).regulated is False
        config = build_config(
            {
                "data_dir": str(tmp_path / "source"),
                "models": [{"name": MODEL, "task": "binary", "regulated": True}],
            },
            env={},
        )
        bundle = tmp_path / "credit.zip"
        export_bundle(source.store, source.artefacts, config, MODEL, bundle)
    finally:
        source.close()
    with zipfile.ZipFile(bundle) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["model"]["regulated"] is True
    _import(target, bundle)
    assert target.store.get_model(MODEL).regulated is True
    assert target.store.champion(MODEL) is None  # a regulated promotion needs an approver


def _small_zip() -> bytearray:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("manifest.json", b'{"format": "tunewatch-bundle", "format_version": 1}')
        archive.writestr("xx.bin", b"x")
    return bytearray(buf.getvalue())


def _bad_utf8_name_in_directory() -> bytes:
    """The central directory flags a member name as UTF-8 that is not."""
    data = _small_zip()
    entry = data.rfind(b"PK\x01\x02")
    flags = struct.unpack_from("<H", data, entry + 8)[0]
    struct.pack_into("<H", data, entry + 8, flags | 0x800)
    data[entry + 46 : entry + 48] = b"\xff\xfe"
    return bytes(data)


def _bad_utf8_name_in_local_header() -> bytes:
    """The manifest's central directory entry names it validly; its local header, flagged
    UTF-8, names it with bytes that are not UTF-8."""
    data = _small_zip()
    local = data.find(b"PK\x03\x04")
    flags = struct.unpack_from("<H", data, local + 6)[0]
    struct.pack_into("<H", data, local + 6, flags | 0x800)
    data[local + 30 : local + 32] = b"\xff\xfe"
    return bytes(data)


def _version_too_high() -> bytes:
    """A member needing zip version 14.8 to extract, more than zipfile reads."""
    data = _small_zip()
    entry = data.rfind(b"PK\x01\x02")
    struct.pack_into("<H", data, entry + 6, 148)
    return bytes(data)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_bad_utf8_name_in_directory, "is not a readable bundle: 'utf-8' codec"),
        (_bad_utf8_name_in_local_header, "cannot read manifest.json from the bundle: 'utf-8'"),
        (_version_too_high, "is not a readable bundle: zip file version 14.8"),
    ],
    ids=["utf8-name-directory", "utf8-name-local-header", "zip-version-too-high"],
)
def test_the_cli_refuses_a_malformed_archive_with_the_reason(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    build: Callable[[], bytes],
    message: str,
) -> None:
    """zipfile's UnicodeDecodeError and NotImplementedError escaped as tracebacks."""
    bundle = tmp_path / "bad.zip"
    bundle.write_bytes(build())
    config = tmp_path / "target.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "target")}))
    assert main(["--config", str(config), "--actor", "ops", "import", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tunewatch: error: ")
    assert message in err.splitlines()[0]


def _export_with_space(tmp_path: Path, trained: list[ExampleModel]) -> Path:
    """A bundle of the champion whose config names a search space."""
    source, _ = make_daemon(tmp_path / "source", trained)
    source.close()
    config = tmp_path / "source.yaml"
    config.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "source"),
                "models": [
                    {"name": MODEL, "task": "binary", "tuning": {"search_space": str(SPACE)}}
                ],
            }
        )
    )
    bundle = tmp_path / "credit.zip"
    assert main(["--config", str(config), "export", MODEL, str(bundle)]) == 0
    return bundle


@pytest.mark.parametrize(
    ("destination", "refused"),
    [("out", "out"), ("out/snippet.yaml", "out/snippet.search_space.yaml")],
    ids=["config-out-a-directory", "search-space-beside-it-a-directory"],
)
def test_import_refuses_a_config_out_that_is_a_directory_before_importing_anything(
    trained: list[ExampleModel],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    destination: str,
    refused: str,
) -> None:
    """Its parent was a directory, so the check passed; the versions were registered, then
    writing the snippet failed (exit 2 with a store that had changed)."""
    bundle = _export_with_space(tmp_path, trained)
    (tmp_path / refused).mkdir(parents=True)
    capsys.readouterr()
    config = tmp_path / "target.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "target")}))
    out = tmp_path / destination
    args = ["--config", str(config), "import", str(bundle), "--config-out", str(out)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert f"--config-out {out}: {tmp_path / refused} is a directory" in captured.err
    assert "nothing was imported" in captured.err
    assert "->" not in captured.out
    db = tmp_path / "target" / "tunewatch.db"
    if db.exists():  # some refusals come once the store is open: it holds nothing then
        with Store.open(f"sqlite:///{db}") as store:
            assert store.list_models() == []


_EXPORT_UNDER_A_SIZE_LIMIT = """
import resource, signal, sys
from tunewatch._artefacts import ArtefactStore
from tunewatch._bundle import BundleError, export_bundle
from tunewatch._config import build_config
from tunewatch._open_store import open_store

config = build_config({"data_dir": sys.argv[1]}, env={})
store = open_store(config)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    export_bundle(store, ArtefactStore(config.artefact_dir), config, "credit", sys.argv[2],
                  versions=[1, 2])
except BundleError as exc:
    print(exc)
    sys.exit(3)
"""


def test_a_failed_export_leaves_the_earlier_bundle_in_place_and_no_temporary_file(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The export wrote to the destination itself: a write that failed part-way (a full
    disk; here the file size limit) left a truncated bundle in place of the earlier one."""
    source, _ = make_daemon(tmp_path / "source", trained)
    out = tmp_path / "out"
    out.mkdir()
    bundle = out / "credit.zip"
    try:
        export_bundle(source.store, source.artefacts, source.config, MODEL, bundle)
    finally:
        source.close()
    before = bundle.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["credit.zip"]  # nothing left beside it
    limit = len(before) // 2
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _EXPORT_UNDER_A_SIZE_LIMIT,
            str(tmp_path / "source"),
            bundle,
            str(limit),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 3, run.stderr
    assert "cannot write bundle" in run.stdout and "File too large" in run.stdout
    assert bundle.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["credit.zip"]


def test_an_export_over_an_existing_bundle_keeps_its_mode_its_link_and_long_names(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Writing beside the destination and renaming replaced the file itself: a private
    (0600) bundle — training rows and labels — became 0644 under umask 022, a symlinked
    destination became a plain file while its target kept the old bundle, and a name
    near the 255-byte limit failed, the partial file's name 42 bytes longer."""
    source, _ = make_daemon(tmp_path / "source", trained)
    out = tmp_path / "out"
    out.mkdir()
    private = out / "private.zip"
    private.write_bytes(b"old")
    private.chmod(0o600)
    real = out / "real.zip"
    real.write_bytes(b"old")
    link = out / "link.zip"
    link.symlink_to(real)
    long = out / ("b" * 240 + ".zip")
    old_umask = os.umask(0o022)
    try:
        for destination in (private, link, long):
            export_bundle(source.store, source.artefacts, source.config, MODEL, destination)
    finally:
        os.umask(old_umask)
        source.close()
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert link.is_symlink() and zipfile.is_zipfile(real)
    assert zipfile.is_zipfile(long)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["private.zip", "real.zip", "link.zip", long.name]
    )


def test_a_regulated_bundle_regulates_a_target_that_already_holds_its_versions(
    trained: list[ExampleModel], target: Daemon, tmp_path: Path
) -> None:
    """Only registering a version marked the target regulated: a bundle exported again
    once the source was regulated found every version there, registered nothing, and left
    the target unregulated, its promotions needing no approver."""
    source, _ = make_daemon(tmp_path / "source", trained)
    try:
        before, after = tmp_path / "before.zip", tmp_path / "after.zip"
        export_bundle(source.store, source.artefacts, source.config, MODEL, before)
        source.store.regulate_model(MODEL, actor="t", reason="regulated after its export")
        export_bundle(source.store, source.artefacts, source.config, MODEL, after)
    finally:
        source.close()
    _import(target, before)
    assert target.store.get_model(MODEL).regulated is False
    _, imported, _ = import_bundle(
        target.store, target.registry, target.config, after, actor="ops", max_artefact_bytes=10**8
    )
    assert [(i.source_version, i.already_present) for i in imported] == [(1, True)]
    assert target.store.get_model(MODEL).regulated is True
    regulated, done = target.store.audit_log(limit=2)[::-1]
    assert (regulated.action, regulated.actor, regulated.target) == ("regulate_model", "ops", MODEL)
    assert "regulated bundle" in regulated.details["reason"]
    assert done.action == "import_bundle"
    # already regulated: nothing more to record; the store's flag now asks for the digest
    import_bundle(
        target.store,
        target.registry,
        target.config,
        after,
        actor="ops",
        max_artefact_bytes=10**8,
        sha256=hashlib.sha256(after.read_bytes()).hexdigest(),
    )
    assert [a.action for a in target.store.audit_log(limit=2)] == [
        "import_bundle",
        "import_bundle",
    ]
    assert target.store.verify_audit() is None


_IMPORT = """
import sys
from tunewatch._cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("kind", ["character-device", "fifo", "directory"])
def test_import_refuses_a_path_that_is_not_a_regular_file_without_reading_it(
    tmp_path: Path, kind: str
) -> None:
    """`tunewatch import /dev/zero` hashed the device until it was killed, and a FIFO no
    one writes to blocked the open for good."""
    path = {"character-device": Path("/dev/zero"), "fifo": tmp_path / "fifo"}.get(
        kind, tmp_path / "folder"
    )
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    config = tmp_path / "target.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "target")}))
    run = subprocess.run(
        [sys.executable, "-c", _IMPORT, "--config", str(config), "import", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,  # the device was read without end
    )
    assert run.returncode == 2, run.stderr
    assert f"cannot read bundle {str(path)!r}: not a regular file" in run.stderr


class _Buffer(bytearray):
    """An artefact's bytes as the export holds them: unlike ``bytes``, weakly referable,
    so that the test sees when the export lets go of them."""


class _WatchedArtefacts(ArtefactStore):
    """An artefact store that records, at each read, how many artefacts read before it
    the caller still holds."""

    def __init__(self, root: Path, *, store: Store) -> None:
        super().__init__(root, store=store)
        self.read: list[tuple[str, str]] = []
        self.held_at_read: list[int] = []
        self._returned: list[weakref.ref[_Buffer]] = []

    def get(self, sha256: str, suffix: str = ".onnx") -> bytes:
        gc.collect()
        self.held_at_read.append(sum(r() is not None for r in self._returned))
        self.read.append((sha256, suffix))
        data = _Buffer(super().get(sha256, suffix))
        self._returned.append(weakref.ref(data))
        return data  # type: ignore[return-value]


def test_export_holds_one_artefact_in_memory_at_a_time(
    trained: list[ExampleModel], target: Daemon, tmp_path: Path
) -> None:
    """The export read every artefact and reference snapshot of the bundle into memory
    before it wrote the zip: 30 versions of 16 MiB took 861 MiB."""
    source, _ = make_daemon(tmp_path / "source", trained)
    bundle = tmp_path / "credit.zip"
    try:
        artefacts = _WatchedArtefacts(source.config.artefact_dir, store=source.store)
        export_bundle(source.store, artefacts, source.config, MODEL, bundle, versions=[1, 2])
        rows = [source.store.get_version(MODEL, v) for v in (1, 2)]
    finally:
        source.close()
    assert len(artefacts.read) >= 3  # v1's and v2's artefacts, and their references
    assert artefacts.held_at_read == [0] * len(artefacts.read)
    expected = ["manifest.json"]
    for row in rows:
        expected.append(f"artefacts/{row.artefact_sha256}.onnx")
        expected.append(f"artefacts/{row.details['reference_sha256']}.npz")
    with zipfile.ZipFile(bundle) as archive:
        assert archive.namelist() == list(dict.fromkeys(expected))  # each once, in order
    _, imported, _ = import_bundle(
        target.store, target.registry, target.config, bundle, actor="ops", max_artefact_bytes=10**8
    )
    assert [(i.source_version, i.version) for i in imported] == [(1, 1), (2, 2)]
