"""Bundles: the limits an import holds a bundle to before it registers anything (the
config's nesting, the reference snapshot's size, the members and how many), and the
search-space file `--config-out` writes where an earlier import wrote one."""

from __future__ import annotations

import json
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._bundle import BundleError, export_bundle, import_bundle
from tunewatch._bundle_archive import MAX_BUNDLE_VERSIONS, MAX_MEMBERS
from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._version_metadata import MAX_METADATA_DEPTH
from tunewatch.store import Store

SPACE = Path(__file__).resolve().parents[2] / "configs" / "search_spaces" / "binary_tabular.yaml"


@pytest.fixture
def source(trained: list[ExampleModel], tmp_path: Path) -> Path:
    """A config whose store holds ``credit`` v1 (champion, with its reference snapshot)
    and v2, and whose model names the search space ``space.yaml`` beside it."""
    daemon, _ = make_daemon(tmp_path / "source", trained)
    daemon.close()
    (tmp_path / "space.yaml").write_bytes(SPACE.read_bytes())
    model = {"name": MODEL, "task": "binary", "tuning": {"search_space": "space.yaml"}}
    config = tmp_path / "source.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "source"), "models": [model]}))
    return config


@pytest.fixture
def bundle(source: Path, tmp_path: Path) -> Path:
    """The champion's bundle: manifest, its artefact, its reference and the space."""
    return _export(source, tmp_path / "credit.zip")


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Daemon]:
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "target")}, env={}), env={})
    yield daemon
    daemon.close()


@pytest.fixture
def target_config(tmp_path: Path) -> Path:
    config = tmp_path / "target.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "cli-target")}))
    return config


def _export(config: Path, path: Path) -> Path:
    assert main(["--config", str(config), "--actor", "ops", "export", MODEL, str(path)]) == 0
    return path


def _import(d: Daemon, path: Path, *, max_artefact_bytes: int = 10**8) -> Any:
    return import_bundle(
        d.store, d.registry, d.config, path, actor="ops", max_artefact_bytes=max_artefact_bytes
    )


def _models(config: Path) -> list[str]:
    data_dir = json.loads(config.read_text())["data_dir"]
    with Store.open(f"sqlite:///{data_dir}/tunewatch.db") as store:
        return [m.name for m in store.list_models()]


def _rebuild(
    bundle: Path,
    out: Path,
    edit: Callable[[dict[str, Any]], None] | None = None,
    extra: Iterable[tuple[str | zipfile.ZipInfo, bytes]] = (),
) -> Path:
    """``bundle`` written again to ``out``: its manifest changed by ``edit``, then the
    ``extra`` members added (zipfile's warning about a name written twice silenced)."""
    with zipfile.ZipFile(bundle) as src:
        members = {name: src.read(name) for name in src.namelist()}
    manifest = json.loads(members["manifest.json"])
    if edit is not None:
        edit(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for name, data in members.items():
                dst.writestr(name, data)
            for member, data in extra:
                dst.writestr(member, data)
    return out


def _nested(levels: int) -> dict[str, Any]:
    """An object nesting ``levels`` levels deep (itself the first)."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


# -- the config's nesting ----------------------------------------------------------------


def test_a_config_nested_past_the_limit_is_refused_before_anything_is_registered(
    bundle: Path, target: Daemon, tmp_path: Path
) -> None:
    """Only `config`'s type was checked: the versions were registered, then writing the
    snippet recursed (RecursionError, a traceback and exit 1)."""
    deep = _rebuild(bundle, tmp_path / "deep.zip", lambda m: m["config"].update(x=_nested(40)))
    with pytest.raises(BundleError) as refused:
        _import(target, deep)
    message = str(refused.value)
    assert f"`config` must nest at most {MAX_METADATA_DEPTH} levels deep, got 41" in message
    assert "at `config.x.k.k.k." in message
    assert target.store.list_models() == []
    assert target.store.audit_log(limit=5) == []


def test_a_config_nested_to_the_limit_is_imported_as_it_is(
    bundle: Path, target: Daemon, tmp_path: Path
) -> None:
    nested = _nested(MAX_METADATA_DEPTH - 1)  # the config itself is the first level
    deep = _rebuild(bundle, tmp_path / "deep.zip", lambda m: m["config"].update(x=nested))
    _, [imported], bundled = _import(target, deep)
    assert imported.stage == "champion"
    assert bundled.settings["x"] == nested


def test_the_cli_refuses_a_deep_config_with_config_out_and_imports_nothing(
    bundle: Path, target_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = _rebuild(bundle, tmp_path / "deep.zip", lambda m: m["config"].update(x=_nested(400)))
    snippet = tmp_path / "snippet.yaml"
    args = ["--config", str(target_config), "import", str(deep), "--config-out", str(snippet)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("tunewatch: error: the bundle's manifest.json: `config`")
    assert "Traceback" not in captured.err
    assert "->" not in captured.out
    assert not snippet.exists()
    assert _models(target_config) == []


def test_the_cli_reports_a_config_write_failure_of_any_kind_after_the_import(
    bundle: Path,
    target_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only an OSError was reported: any other failure writing the snippet (the deep
    config's RecursionError) escaped as a traceback after the versions were registered."""

    def recursing(*args: object, **kwargs: object) -> str:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(yaml, "safe_dump", recursing)
    snippet = tmp_path / "snippet.yaml"
    args = ["--config", str(target_config), "import", str(bundle), "--config-out", str(snippet)]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "credit v1 -> v1 (champion)" in captured.out
    assert (
        "tunewatch: error: the versions above were imported, but the model's config was not "
        "written: RecursionError: maximum recursion depth exceeded; run the same import again"
    ) in captured.err
    assert "Traceback" not in captured.err
    assert _models(target_config) == [MODEL]


# -- the search space beside --config-out ------------------------------------------------


def test_an_import_refuses_to_replace_the_search_space_an_earlier_import_wrote(
    source: Path, bundle: Path, target_config: Path, tmp_path: Path
) -> None:
    """The space file is named after the snippet only: a second import with the same
    `--config-out` replaced the file a config merged from the first names, silently."""
    (tmp_path / "space.yaml").write_bytes(SPACE.read_bytes() + b"# model B's space\n")
    other = _export(source, tmp_path / "other.zip")
    snippet = tmp_path / "ops" / "snippet.yaml"
    snippet.parent.mkdir()
    space = snippet.with_name("snippet.search_space.yaml")

    def run(path: Path, name: str) -> int:
        argv = ["--config", str(target_config), "import", str(path), "--as", name]
        return main([*argv, "--config-out", str(snippet)])

    assert run(bundle, "model-a") == 0
    merged = yaml.safe_load(snippet.read_text())["models"][0]["tuning"]["search_space"]
    assert merged == str(space)
    assert run(other, "model-b") == 2
    assert space.read_bytes() == SPACE.read_bytes()  # what the merged config names
    assert _models(target_config) == ["model-a"]


def test_the_cli_says_which_search_space_file_it_would_replace(
    source: Path,
    bundle: Path,
    target_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    snippet = tmp_path / "snippet.yaml"
    space = tmp_path / "snippet.search_space.yaml"
    space.write_bytes(b"another model's space\n")
    args = ["--config", str(target_config), "import", str(bundle), "--config-out", str(snippet)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--config-out {snippet}: {space} holds another search space" in err
    assert "nothing was imported" in err
    assert space.read_bytes() == b"another model's space\n"
    assert _models(target_config) == []


def test_the_same_search_space_imported_again_into_the_same_config_out_is_kept(
    bundle: Path, target_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snippet = tmp_path / "snippet.yaml"
    for name in ("model-a", "model-a", "model-c"):
        argv = ["--config", str(target_config), "import", str(bundle), "--as", name]
        assert main([*argv, "--config-out", str(snippet)]) == 0
    assert "model-c v1 -> v1 (champion)" in capsys.readouterr().out
    assert (tmp_path / "snippet.search_space.yaml").read_bytes() == SPACE.read_bytes()
    assert _models(target_config) == ["model-a", "model-c"]


# -- the reference snapshot's size -------------------------------------------------------


def _member(bundle: Path, suffix: str) -> zipfile.ZipInfo:
    with zipfile.ZipFile(bundle) as archive:
        return next(i for i in archive.infolist() if i.filename.endswith(suffix))


def test_a_reference_snapshot_past_max_artefact_bytes_is_refused_before_anything_is_registered(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """References were read up to Reference.MAX_BYTES (1 GiB), which `register
    --reference` and the API refuse past `server.max_artefact_bytes`."""
    onnx, npz = _member(bundle, ".onnx"), _member(bundle, ".npz")
    limit = 10_000
    assert onnx.file_size < limit < npz.file_size
    config = tmp_path / "small.yaml"
    config.write_text(
        json.dumps({"data_dir": str(tmp_path / "small"), "server": {"max_artefact_bytes": limit}})
    )
    assert main(["--config", str(config), "import", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert (
        f"tunewatch: error: {npz.filename} (version 1's reference snapshot) unpacks to "
        f"{npz.file_size} bytes; the limit is {limit} (`server.max_artefact_bytes`)"
    ) in err
    assert _models(config) == []


def _declare_size(bundle: Path, out: Path, suffix: str, size: int) -> Path:
    """``bundle`` with the central directory declaring ``size`` bytes for the member named
    ``...suffix``: zipfile reads no more than that."""
    data = bytearray(bundle.read_bytes())
    name = _member(bundle, suffix).filename.encode()
    entry = data.index(b"PK\x01\x02")
    while not data[entry + 46 :].startswith(name):
        entry = data.index(b"PK\x01\x02", entry + 4)
    struct.pack_into("<I", data, entry + 24, size)  # its uncompressed size
    out.write_bytes(bytes(data))
    return out


def test_a_reference_snapshot_larger_than_it_declares_is_refused(
    bundle: Path, target: Daemon, tmp_path: Path
) -> None:
    """The size limit is checked on the declared size: what unpacks past it is not read."""
    understated = _declare_size(bundle, tmp_path / "understated.zip", ".npz", 5_000)
    with pytest.raises(BundleError, match=r"cannot read artefacts/[0-9a-f]{64}\.npz"):
        _import(target, understated, max_artefact_bytes=10_000)
    assert target.store.list_models() == []


# -- members and how many ----------------------------------------------------------------


@pytest.mark.parametrize("duplicated", ["manifest.json", ".onnx"], ids=["manifest", "artefact"])
def test_a_bundle_holding_two_members_of_one_name_is_refused(
    bundle: Path, target: Daemon, tmp_path: Path, duplicated: str
) -> None:
    """zipfile reads the last of two members of one name, `unzip -p` the first: a
    reviewer could read another manifest than the one imported."""
    name = _member(bundle, duplicated).filename
    with zipfile.ZipFile(bundle) as archive:
        data = archive.read(name)
    altered = data.replace(b"logistic", b"LOGISTIC") if duplicated == "manifest.json" else data
    twice = _rebuild(bundle, tmp_path / "twice.zip", extra=[(name, altered)])
    with pytest.raises(BundleError, match=f"holds more than one member named '{name}'"):
        _import(target, twice)
    assert target.store.list_models() == []


@pytest.mark.parametrize(
    "name",
    ["notes.txt", "artefacts/" + "0" * 64 + ".onnx", "artefacts/"],
    ids=["a-file", "an-artefact-no-version-names", "a-directory"],
)
def test_a_bundle_holding_a_member_its_manifest_does_not_name_is_refused(
    bundle: Path, target: Daemon, tmp_path: Path, name: str
) -> None:
    extra = _rebuild(bundle, tmp_path / "extra.zip", extra=[(name, b"")])
    with pytest.raises(BundleError, match=f"holds {name!r}, which its manifest.json does not"):
        _import(target, extra)
    assert target.store.list_models() == []


def _padded(bundle: Path, out: Path, count: int, *, comment: bytes = b"") -> Path:
    """``bundle`` with ``count`` empty members added."""
    padding = []
    for i in range(count):
        info = zipfile.ZipInfo(f"pad/{i}")
        info.comment = comment
        padding.append((info, b""))
    return _rebuild(bundle, out, extra=padding)


def _end_record_counts(path: Path, count: int) -> None:
    """Make the end record claim ``count`` members, whatever its directory holds."""
    data = bytearray(path.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, count, count)
    path.write_bytes(bytes(data))


def test_a_bundle_listing_more_members_than_a_bundle_holds_is_refused_unread(
    bundle: Path, target: Daemon, tmp_path: Path
) -> None:
    padded = _padded(bundle, tmp_path / "padded.zip", MAX_MEMBERS)
    with pytest.raises(BundleError) as refused:
        _import(target, padded)
    assert f"its central directory lists {MAX_MEMBERS + 4} members" in str(refused.value)
    assert f"a bundle holds at most {MAX_MEMBERS}" in str(refused.value)
    assert target.store.list_models() == []


def test_a_bundle_whose_end_record_understates_its_members_is_refused(
    bundle: Path, target: Daemon, tmp_path: Path
) -> None:
    """zipfile lists every entry of the directory, whatever count the end record gives."""
    padded = _padded(bundle, tmp_path / "padded.zip", MAX_MEMBERS)
    _end_record_counts(padded, 4)
    with pytest.raises(BundleError, match=f"holds {MAX_MEMBERS + 4} members; a bundle holds"):
        _import(target, padded)
    assert target.store.list_models() == []


def test_a_bundle_whose_central_directory_is_past_the_limit_is_refused_unread(
    bundle: Path, target: Daemon, tmp_path: Path
) -> None:
    """A few members with long comments: the directory zipfile would read and list."""
    padded = _padded(bundle, tmp_path / "padded.zip", 40, comment=b"c" * 60_000)
    _end_record_counts(padded, 4)
    with pytest.raises(
        BundleError, match=r"its central directory lists 4 members and takes \d+ bytes"
    ):
        _import(target, padded)
    assert target.store.list_models() == []


def test_a_manifest_listing_more_versions_than_a_bundle_holds_is_refused(
    bundle: Path, target: Daemon, tmp_path: Path
) -> None:
    def many(m: dict[str, Any]) -> None:
        entry = m["versions"][0]
        m["versions"] = [{**entry, "version": v} for v in range(1, MAX_BUNDLE_VERSIONS + 2)]

    listed = _rebuild(bundle, tmp_path / "many.zip", many)
    with pytest.raises(
        BundleError,
        match=f"`versions` lists {MAX_BUNDLE_VERSIONS + 1} versions; a bundle holds at most "
        f"{MAX_BUNDLE_VERSIONS}",
    ):
        _import(target, listed)
    assert target.store.list_models() == []


def test_an_export_of_more_versions_than_a_bundle_holds_is_refused(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, _ = make_daemon(tmp_path / "source", trained)
    try:
        with pytest.raises(BundleError, match=f"at most {MAX_BUNDLE_VERSIONS} versions"):
            export_bundle(
                daemon.store,
                daemon.artefacts,
                daemon.config,
                MODEL,
                tmp_path / "many.zip",
                versions=list(range(1, MAX_BUNDLE_VERSIONS + 2)),
            )
    finally:
        daemon.close()
    assert not (tmp_path / "many.zip").exists()
