"""An export reads the versions it writes at one moment: a promotion committed while
it read them one by one left two champions in the bundle (the old one read before the
promotion, the new one after), and an import made the older of them champion."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy import event

from tests.tunewatch.conftest import MODEL
from tunewatch._bundle import export_bundle
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel


def test_a_promotion_during_an_export_leaves_one_champion_in_the_bundle(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    source = Daemon(build_config({"data_dir": str(tmp_path / "source")}, env={}), env={})
    try:
        for model in trained:
            source.registry.register(MODEL, model.onnx, model.metadata, actor="t")
        source.store.promote(MODEL, 1, actor="t", reason="first")
        engine = source.store.engine
        promoted: list[int] = []

        def promote_after_the_first_version_read(
            conn: Any, cursor: Any, statement: str, *_: Any
        ) -> None:
            # another operator promotes v2 as soon as the export has read a version
            if not promoted and "FROM model_versions" in statement:
                promoted.append(2)
                source.store.promote(MODEL, 2, actor="other", reason="meanwhile")

        event.listen(engine, "after_cursor_execute", promote_after_the_first_version_read)
        try:
            bundle = tmp_path / "credit.zip"
            export_bundle(
                source.store, source.artefacts, source.config, MODEL, bundle, versions=[1, 2]
            )
        finally:
            event.remove(engine, "after_cursor_execute", promote_after_the_first_version_read)
        assert promoted == [2]
        assert source.store.champion(MODEL).version == 2  # type: ignore[union-attr]
    finally:
        source.close()
    with zipfile.ZipFile(bundle) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    stages = {v["version"]: v["stage"] for v in manifest["versions"]}
    assert list(stages.values()).count("champion") == 1, stages
