"""Feature names are refused at registration unless each is 1 to 200 printable
characters, and a model takes at most ``MAX_FEATURE_NAMES`` of them: a 100,000-character
name, or one holding a newline, an escape or a right-to-left override, registered (201)
and became the ``feature`` label of the drift metrics (a scrape's label length limit
fails the whole scrape), was stored twice in every drift evaluation row and echoed on
the dashboard and in errors. Models stored before the rule still load and serve."""

from __future__ import annotations

import base64
import json
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import update

from tests.tunewatch.conftest import MODEL, make_daemon, serving
from tunewatch._background import BackgroundServer
from tunewatch._bundle import export_bundle, import_bundle
from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import InvalidValueError
from tunewatch._example import ExampleModel
from tunewatch.store import Store
from tunewatch.store._registry_text import MAX_FEATURE_NAMES
from tunewatch.store._schema import models

RULE = (
    "must be 1 to 200 printable characters (no control characters, no bidi override or "
    "isolate characters U+202A-U+202E, U+2066-U+2069)"
)

#: Each a third feature name the registration refuses, by what is wrong with it.
REFUSED_NAMES = {
    "100000-characters": "x" * 100_000,
    "201-characters": "x" * 201,
    "empty": "",
    "newline": "a\nb 2026-12-07T00:00:00.000Z ERROR forged: x",
    "escape": "\x1b[31mred\x1b[0m",
    "tab": "a\tb",
    "right-to-left-override": "x\u202eevil",
    "left-to-right-embedding": "x\u202aevil",
    "first-strong-isolate": "x\u2068evil",
    "pop-directional-isolate": "x\u2069evil",
}

RAW_ROW = [0.1, -0.2, 0.3, 0.0, 1.0, -1.0, 0.5, 0.25]


def _names(trained: list[ExampleModel], third: str) -> list[str]:
    names = list(trained[0].metadata.feature_names)
    names[2] = third
    return names


def _register(url: str, headers: dict[str, str], model: str, body: dict[str, Any]) -> Any:
    return httpx.post(f"{url}/v1/models/{model}/versions", json=body, headers=headers, timeout=120)


def test_the_api_refuses_feature_names_that_are_not_1_to_200_printable_characters(
    store_url: str, trained: list[ExampleModel], tmp_path: Path
) -> None:
    onnx = base64.b64encode(trained[0].onnx).decode()
    with serving(tmp_path / "data", trained, store_url=store_url) as running:
        for case, third in REFUSED_NAMES.items():
            response = _register(
                running.url,
                running.auth("operator"),
                "fresh",
                {"onnx_base64": onnx, "task": "binary", "feature_names": _names(trained, third)},
            )
            assert response.status_code == 400, (case, response.text[:300])
            assert response.json() == {
                "code": "invalid_value",
                "error": f"`feature_names[2]` {RULE}, got {len(third)} characters: {third[:80]!r}",
            }, case
        assert [m.name for m in running.daemon.store.list_models()] == [MODEL]


def test_the_api_refuses_more_feature_names_than_the_maximum(
    store_url: str, trained: list[ExampleModel], tmp_path: Path
) -> None:
    onnx = base64.b64encode(trained[0].onnx).decode()
    names = [f"f{i}" for i in range(MAX_FEATURE_NAMES + 1)]
    with serving(tmp_path / "data", trained, store_url=store_url) as running:
        response = _register(
            running.url,
            running.auth("operator"),
            "wide",
            {"onnx_base64": onnx, "task": "binary", "feature_names": names},
        )
        assert response.status_code == 400, response.text[:300]
        assert response.json() == {
            "code": "invalid_value",
            "error": f"`feature_names` must list at most {MAX_FEATURE_NAMES} names, got "
            f"{MAX_FEATURE_NAMES + 1}",
        }
        assert [m.name for m in running.daemon.store.list_models()] == [MODEL]


def test_the_store_refuses_such_feature_names_and_holds_those_at_the_limits(
    store_url: str,
) -> None:
    """The store checks as well: a caller that goes around the registry cannot store a
    name the drift metrics and pages would carry."""
    with Store.open(store_url) as store:
        for case, name in REFUSED_NAMES.items():
            with pytest.raises(InvalidValueError) as refused:
                store.ensure_model(name="m", task="binary", feature_names=["a", name])
            assert refused.value.message.startswith(f"`feature_names[1]` {RULE}"), case
            assert isinstance(refused.value, ValueError)  # the API answers 400
        with pytest.raises(InvalidValueError, match=f"at most {MAX_FEATURE_NAMES} names"):
            store.ensure_model(
                name="m",
                task="binary",
                feature_names=[f"f{i}" for i in range(MAX_FEATURE_NAMES + 1)],
            )
        assert store.list_models() == []
        longest = ["y" * 200, "naïve name (°C) — ünïcode"]
        assert store.ensure_model(name="m", task="binary", feature_names=longest).feature_names
        widest = [f"f{i}" for i in range(MAX_FEATURE_NAMES)]
        stored = store.ensure_model(name="w", task="binary", feature_names=widest)
        assert list(stored.feature_names) == widest
        assert list(store.get_model("m").feature_names) == longest


def test_the_cli_register_refuses_a_feature_name_holding_an_escape(
    trained: list[ExampleModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    features = ",".join(_names(trained, "\x1b[31mred"))
    args = ["register", MODEL, str(onnx), "--task", "binary", "--features", features]
    assert main(["--config", str(config), "--actor", "alice", *args]) == 2
    err = capsys.readouterr().err
    assert f"`feature_names[2]` {RULE}, got 8 characters: '\\x1b[31mred'" in err
    assert "\x1b" not in err  # quoted: the terminal is not told to turn red
    with Store.open(f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}") as store:
        assert store.list_models() == []


def _rewritten(bundle: Path, out: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "manifest.json":
                manifest = json.loads(data)
                edit(manifest)
                data = json.dumps(manifest).encode()
            dst.writestr(info.filename, data)
    return out


def test_a_bundle_import_refuses_a_model_whose_feature_name_is_too_long(
    store_url: str, trained: list[ExampleModel], tmp_path: Path
) -> None:
    source, _ = make_daemon(tmp_path / "source", trained)
    try:
        bundle = tmp_path / "credit.zip"
        export_bundle(source.store, source.artefacts, source.config, MODEL, bundle)
    finally:
        source.close()
    spoiled = _rewritten(
        bundle,
        tmp_path / "spoiled.zip",
        lambda m: m["model"].update(feature_names=_names(trained, "z" * 300)),
    )
    raw = {"data_dir": str(tmp_path / "target"), "store": {"url": store_url}}
    target = Daemon(build_config(raw, env={}), env={})
    try:
        with pytest.raises(InvalidValueError) as refused:
            import_bundle(
                target.store,
                target.registry,
                target.config,
                spoiled,
                actor="ops",
                max_artefact_bytes=10**8,
            )
        assert refused.value.message == (
            f"`feature_names[2]` {RULE}, got 300 characters: {'z' * 80!r}"
        )
        assert target.store.list_models() == []
        assert target.store.audit_log(limit=10) == []
    finally:
        target.close()


def test_a_model_stored_before_the_rule_with_such_names_still_loads_serves_and_registers(
    store_url: str, trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The rule is a new model's: a model whose names an earlier release stored is read,
    listed and served as before, and takes new versions (a registration checking every
    version's names refused its re-tuned ones)."""
    legacy = _names(trained, "a\nb" + "x" * 300)
    daemon, tokens = make_daemon(
        tmp_path / "data", trained, store_url=store_url, extra={"scheduler": {"enabled": False}}
    )
    try:
        with daemon.store.engine.begin() as conn:  # as an earlier release stored it
            conn.execute(update(models).where(models.c.name == MODEL).values(feature_names=legacy))
        assert list(daemon.store.get_model(MODEL).feature_names) == legacy
        assert daemon.runtime.try_load(MODEL) is not None
        # and takes new versions (a re-tuned one, a bundle's): the rule is a new model's
        again = daemon.registry.register(
            MODEL,
            trained[1].onnx,
            replace(trained[1].metadata, feature_names=tuple(legacy)),  # type: ignore[arg-type]
            actor="test",
            stage="shadow",
        )
        assert again.version == 3
        with BackgroundServer(daemon.app) as server:
            auth = {"Authorization": f"Bearer {tokens['viewer']}"}
            shown = httpx.get(f"{server.url}/v1/models/{MODEL}", headers=auth, timeout=30)
            assert shown.status_code == 200, shown.text[:300]
            assert shown.json()["feature_names"] == legacy
            tensor = {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": RAW_ROW}
            scored = httpx.post(
                f"{server.url}/v2/models/{MODEL}/infer",
                json={"id": "legacy-1", "inputs": [tensor]},
                headers={"Authorization": f"Bearer {tokens['scorer']}"},
                timeout=30,
            )
            assert scored.status_code == 200, scored.text[:300]
            assert scored.json()["id"] == "legacy-1"
    finally:
        daemon.close()
