"""What ties an imported bundle to the one exported: the export's SHA-256, recorded on the
source and given to the import (``--sha256``), zip extra fields that would make ``unzip``
show other members than the import reads, and the source's creation time of each version."""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._bundle import BundleError, export_bundle, import_bundle
from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._report import build_report


def _config(path: Path, data_dir: Path, **extra: object) -> Path:
    path.write_text(json.dumps({"data_dir": str(data_dir), **extra}))
    return path


def _regulated(name: str = MODEL) -> list[dict[str, object]]:
    return [{"name": name, "task": "binary", "regulated": True}]


@pytest.fixture
def source(tmp_path: Path, trained: list[ExampleModel]) -> Path:
    """A config whose store holds ``credit`` v1 (champion) and v2 (shadow); the config
    regulates the model."""
    daemon, _ = make_daemon(tmp_path / "source", trained)
    daemon.close()
    return _config(tmp_path / "source.yaml", tmp_path / "source", models=_regulated())


def _exported(trained: list[ExampleModel], tmp_path: Path) -> Path:
    """``credit``'s champion exported from a fresh source store, as ``credit.zip``."""
    daemon, _ = make_daemon(tmp_path / "source", trained)
    try:
        bundle = tmp_path / "credit.zip"
        export_bundle(daemon.store, daemon.artefacts, daemon.config, MODEL, bundle)
    finally:
        daemon.close()
    return bundle


def _import_fresh(tmp_path: Path, bundle: Path) -> list[Any]:
    """Import ``bundle`` into a fresh target store; the versions imported. A refusal
    raises, and the target is checked to hold nothing."""
    target = Daemon(build_config({"data_dir": str(tmp_path / "target")}, env={}), env={})
    try:
        try:
            _, imported, _ = import_bundle(
                target.store,
                target.registry,
                target.config,
                bundle,
                actor="ops",
                max_artefact_bytes=10**8,
            )
        except BundleError:
            assert target.store.list_models() == []
            assert target.store.audit_log(limit=5) == []
            raise
    finally:
        target.close()
    return list(imported)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _open(config: Path) -> Daemon:
    return Daemon(build_config(json.loads(config.read_text()), env={}), env={})


def _models(config: Path) -> list[str]:
    daemon = _open(config)
    try:
        return [m.name for m in daemon.store.list_models()]
    finally:
        daemon.close()


def _rewrite(
    src: Path,
    dst: Path,
    manifest: Callable[[dict[str, Any]], None] | None = None,
    extra: Callable[[str], bytes] | None = None,
) -> Path:
    """``src`` copied to ``dst``, its manifest edited by ``manifest`` and each member given
    the extra field ``extra(name)`` (local and central headers alike)."""
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    data = json.loads(members["manifest.json"])
    if manifest is not None:
        manifest(data)
    members["manifest.json"] = json.dumps(data).encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if extra is not None:
                info.extra = extra(name)
            z.writestr(info, body)
    return dst


def _field(kind: int, body: bytes) -> bytes:
    return struct.pack("<HH", kind, len(body)) + body


def _unicode_path(kind: int, name: str, shown: str) -> bytes:
    """Info-ZIP's Unicode Path (0x7075) or Comment (0x6375) field: ``unzip`` reads the
    member as ``shown`` where its header's name is ``name``."""
    return _field(kind, b"\x01" + struct.pack("<I", zlib.crc32(name.encode())) + shown.encode())


# -- the export's digest ------------------------------------------------------------------


def test_export_audits_the_sha256_of_the_written_bundle_and_prints_it(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The export wrote no audit entry and printed no digest: the `bundle_sha256` an
    import records matched nothing on the source."""
    bundle = tmp_path / "credit.zip"
    argv = ["--config", str(source), "--actor", "alice", "export", MODEL, str(bundle)]
    assert main([*argv, "--version", "1", "--version", "2"]) == 0
    digest = _sha256(bundle)
    out = capsys.readouterr().out
    assert f"bundle sha256: {digest}" in out
    daemon = _open(source)
    try:
        [entry] = daemon.store.audit_log(action="export_bundle")
        assert daemon.store.verify_audit() is None
    finally:
        daemon.close()
    assert (entry.actor, entry.target) == ("alice", MODEL)
    assert entry.details["bundle_sha256"] == digest
    assert entry.details["versions"] == [1, 2]
    with zipfile.ZipFile(bundle) as z:
        exported_at = json.loads(z.read("manifest.json"))["exported_at"]
    assert entry.details["exported_at"] == exported_at


def test_export_bundle_returns_the_digest_it_audits(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, _ = make_daemon(tmp_path / "source", trained)
    try:
        bundle = tmp_path / "credit.zip"
        done = export_bundle(
            daemon.store, daemon.artefacts, daemon.config, MODEL, bundle, actor="bob"
        )
        [entry] = daemon.store.audit_log(action="export_bundle")
    finally:
        daemon.close()
    assert done.versions == (1,)
    assert done.sha256 == _sha256(bundle) == entry.details["bundle_sha256"]
    assert entry.actor == "bob"


# -- the import's --sha256 ----------------------------------------------------------------


def test_import_with_another_sha256_is_refused_and_changes_nothing(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "credit.zip"
    assert main(["--config", str(source), "export", MODEL, str(bundle)]) == 0
    target = _config(tmp_path / "target.yaml", tmp_path / "target")
    capsys.readouterr()
    wrong = "ab" * 32
    argv = ["--config", str(target), "import", str(bundle), "--sha256", wrong]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert (
        f"tunewatch: error: bundle {str(bundle)!r} has SHA-256 {_sha256(bundle)}, not "
        f"{wrong} (--sha256)" in captured.err
    )
    assert "->" not in captured.out
    assert _models(target) == []
    daemon = _open(target)
    try:
        assert daemon.store.audit_log(limit=5) == []
    finally:
        daemon.close()


def test_import_with_the_export_s_sha256_imports_in_any_case(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "credit.zip"
    assert main(["--config", str(source), "export", MODEL, str(bundle)]) == 0
    target = _config(tmp_path / "target.yaml", tmp_path / "target", models=_regulated())
    digest = _sha256(bundle).upper()  # hex in either case
    assert main(["--config", str(target), "import", str(bundle), "--sha256", digest]) == 0
    assert f"{MODEL} v1 -> v1 (shadow: regulated model)" in capsys.readouterr().out
    daemon = _open(target)
    try:
        [entry] = daemon.store.audit_log(action="import_bundle")
    finally:
        daemon.close()
    assert entry.details["bundle_sha256"] == digest.lower()
    assert entry.details["sha256_given"] is True


def test_a_malformed_sha256_is_a_usage_error(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _config(tmp_path / "target.yaml", tmp_path / "target")
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(target), "import", str(tmp_path / "b.zip"), "--sha256", "abc"])
    assert exit_.value.code == 2
    assert "`--sha256` must be 64 hexadecimal digits, got 'abc'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("models", "why"),
    [
        pytest.param(_regulated(), "regulated by this store's config", id="config-regulated"),
        pytest.param(
            [{"name": MODEL, "task": "binary", "safe_ranges": {"C": {"low": 0.1, "high": 10}}}],
            "given safe ranges by this store's config",
            id="config-safe-ranges",
        ),
    ],
)
def test_an_import_into_a_governed_model_without_sha256_is_refused(
    source: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    models: list[dict[str, object]],
    why: str,
) -> None:
    """The manifest is not covered by any hash: edited (regulated -> false, C relabelled),
    the bundle imported, exit 0, and its champion was served with no approver."""
    bundle = tmp_path / "credit.zip"
    assert main(["--config", str(source), "export", MODEL, str(bundle)]) == 0
    target = _config(tmp_path / "target.yaml", tmp_path / "target", models=models)
    capsys.readouterr()
    assert main(["--config", str(target), "import", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert f"model {MODEL!r} is {why}: name the bundle's SHA-256 (--sha256" in err
    assert _models(target) == []


def test_an_import_into_a_model_the_target_store_regulates_needs_sha256(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store's flag counts, not only the config's: set by an earlier regulated import."""
    bundle = tmp_path / "credit.zip"
    assert main(["--config", str(source), "export", MODEL, str(bundle)]) == 0
    target = _config(tmp_path / "target.yaml", tmp_path / "target")
    assert main(["--config", str(target), "import", str(bundle), "--sha256", _sha256(bundle)]) == 0
    capsys.readouterr()
    assert main(["--config", str(target), "import", str(bundle)]) == 2
    assert f"model {MODEL!r} is regulated in this store: name" in capsys.readouterr().err


def test_an_edited_manifest_does_not_import_under_the_export_s_sha256(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reviewer's forgery: regulated -> false and C 1.0 -> 0.5 in manifest.json. Every
    artefact still matches the manifest; the file does not match the exported digest."""
    bundle = tmp_path / "credit.zip"
    assert main(["--config", str(source), "export", MODEL, str(bundle)]) == 0
    digest = _sha256(bundle)

    def forge(m: dict[str, Any]) -> None:
        m["model"]["regulated"] = False
        m["config"]["regulated"] = False
        m["versions"][0]["hyperparameters"]["C"] = 0.5

    forged = _rewrite(bundle, tmp_path / "forged.zip", manifest=forge)
    target = _config(tmp_path / "target.yaml", tmp_path / "target", models=_regulated())
    capsys.readouterr()
    assert main(["--config", str(target), "import", str(forged)]) == 2  # no digest: refused
    assert main(["--config", str(target), "import", str(forged), "--sha256", digest]) == 2
    assert "(--sha256): not the bundle exported" in capsys.readouterr().err
    assert _models(target) == []


# -- extra fields -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [0x7075, 0x6375], ids=["unicode-path", "unicode-comment"])
def test_a_member_with_an_info_zip_unicode_field_is_refused(
    trained: list[ExampleModel], tmp_path: Path, kind: int
) -> None:
    """``unzip -p crafted.zip manifest.json`` showed the genuine, regulated manifest (the
    search-space member, named manifest.json by its 0x7075 field); zipfile, which ignores
    the field, imported the other one, unregulated."""
    bundle = _exported(trained, tmp_path)
    crafted = _rewrite(
        bundle, tmp_path / "crafted.zip", extra=lambda n: _unicode_path(kind, n, "manifest.json")
    )
    with pytest.raises(BundleError, match=f"extra field 0x{kind:04x}"):
        _import_fresh(tmp_path, crafted)


def _patch_local_extra(path: Path, name: str, field: bytes) -> None:
    """Give ``name``'s local header (only) the extra field ``field``, in place of an
    extra field of the same length it has already (the offsets stay right)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        offset = z.getinfo(name).header_offset
    name_length, extra_length = struct.unpack_from("<HH", data, offset + 26)
    assert extra_length == len(field)
    start = offset + 30 + name_length
    data[start : start + extra_length] = field
    path.write_bytes(bytes(data))


def test_a_unicode_path_in_a_local_header_only_is_refused(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The central directory's extra fields are not the local headers': unzip reads both."""
    bundle = _exported(trained, tmp_path)
    upath = _unicode_path(0x7075, "manifest.json", "other.json")
    # an extended-timestamp field of the same length, allowed, swapped for it locally
    padding = _field(0x5455, b"\x01" + b"\x00" * (len(upath) - 5))
    crafted = _rewrite(
        bundle, tmp_path / "crafted.zip", extra=lambda n: padding if n == "manifest.json" else b""
    )
    _patch_local_extra(crafted, "manifest.json", upath)
    with zipfile.ZipFile(crafted) as z:
        assert z.getinfo("manifest.json").extra == padding  # the central one is allowed
    with pytest.raises(
        BundleError,
        match=r"member 'manifest\.json' carries extra field 0x7075 in its local header",
    ):
        _import_fresh(tmp_path, crafted)


def test_a_bundle_with_the_extra_fields_info_zip_writes_imports(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A bundle unpacked and zipped again by Info-ZIP's ``zip`` carries extended
    timestamps (0x5455) and Unix owners (0x7875) on every member: still a bundle."""
    bundle = _exported(trained, tmp_path)
    stamps = _field(0x5455, b"\x03" + struct.pack("<II", 1_700_000_000, 1_700_000_000))
    owner = _field(
        0x7875, b"\x01\x04" + struct.pack("<I", 1000) + b"\x04" + struct.pack("<I", 1000)
    )
    rezipped = _rewrite(bundle, tmp_path / "rezipped.zip", extra=lambda n: stamps + owner)
    imported = _import_fresh(tmp_path, rezipped)
    assert [(i.source_version, i.stage) for i in imported] == [(1, "champion")]


# -- the source's creation time -----------------------------------------------------------


def test_an_imported_version_keeps_its_source_creation_time_and_the_report_shows_it(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The manifest's `created_at` was read by nothing: the target's version and report
    carried the import time only."""
    source, _ = make_daemon(tmp_path / "source", trained)
    middle = Daemon(build_config({"data_dir": str(tmp_path / "middle")}, env={}), env={})
    last = Daemon(build_config({"data_dir": str(tmp_path / "last")}, env={}), env={})
    try:
        created = source.store.get_version(MODEL, 1).created_at.isoformat()
        first = tmp_path / "first.zip"
        export_bundle(source.store, source.artefacts, source.config, MODEL, first)
        import_bundle(
            middle.store,
            middle.registry,
            middle.config,
            first,
            actor="ops",
            max_artefact_bytes=10**8,
        )
        row = middle.store.get_version(MODEL, 1)
        assert row.details["imported"]["created_at"] == created
        md = build_report(middle.store, middle.config, MODEL, 1).markdown()
        assert f"- **created**: {row.created_at.isoformat()}" in md  # here, by the import
        assert f"- **created in the source store**: {created}" in md
        # exported again: the middle store's record travels as `via`, its time with it
        second = tmp_path / "second.zip"
        export_bundle(middle.store, middle.artefacts, middle.config, MODEL, second)
        import_bundle(
            last.store, last.registry, last.config, second, actor="ops", max_artefact_bytes=10**8
        )
        record = last.store.get_version(MODEL, 1).details["imported"]
        assert record["created_at"] == row.created_at.isoformat()
        assert record["via"]["created_at"] == created
        md = build_report(last.store, last.config, MODEL, 1).markdown()
        assert f"- **created in the source store**: {row.created_at.isoformat()}" in md
        assert f"- **created where first registered**: {created}" in md
    finally:
        for daemon in (source, middle, last):
            daemon.close()


def test_a_malformed_created_at_is_refused(trained: list[ExampleModel], tmp_path: Path) -> None:
    bundle = _exported(trained, tmp_path)

    def spoil(m: dict[str, Any]) -> None:
        m["versions"][0]["created_at"] = "yesterday"

    spoilt = _rewrite(bundle, tmp_path / "spoilt.zip", manifest=spoil)
    with pytest.raises(BundleError, match="`created_at` must be an ISO 8601 time"):
        _import_fresh(tmp_path, spoilt)
