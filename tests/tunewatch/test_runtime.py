"""The scoring runtime's lifecycle: what one model's fault does to the others."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from monitor import ServingMetrics
from tests.tunewatch.conftest import MODEL, logistic_variant
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import NotFoundError
from tunewatch._example import ExampleModel
from tunewatch._runtime import ScoringRuntime
from tunewatch._unloadable import RETRY_FIRST_S


def test_start_serves_other_models_when_one_champion_artefact_is_missing(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """`tunewatch serve` exited 3 when one model's champion artefact was missing: start()
    loaded every model without the per-model handling refresh() has, so no model was
    served at all."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "data")}, env={}), env={})
    try:
        good, bad = trained  # two artefacts: the models share none
        daemon.registry.register(MODEL, good.onnx, good.metadata, actor="t", stage="champion")
        lost = daemon.registry.register(
            "other", bad.onnx, bad.metadata, actor="t", stage="champion"
        )
        path = daemon.artefacts.path(lost.artefact_sha256)
        path.unlink()
        now = [0.0]
        runtime = ScoringRuntime(
            config=daemon.config,
            store=daemon.store,
            artefacts=daemon.artefacts,
            metrics=ServingMetrics(),
            recorder=daemon.recorder,
            clock=lambda: now[0],
        )
        try:
            runtime.start()
            served = runtime.model(MODEL)
            x = np.zeros((2, len(served.row.feature_names)), np.float32)
            assert runtime.score(served, x).version.version == 1
            # the other is known and not ready: scoring it answers `model_not_ready` (503)
            other = runtime.model("other")
            assert other.deployment.lineup.champion is None
            assert not runtime.ready
            with pytest.raises(NotFoundError) as info:
                runtime.score(other, x)
            assert info.value.code == "model_not_ready"
            # once the artefact is back, the refresh loop serves it at its retry time
            daemon.artefacts.put(bad.onnx)
            assert runtime.refresh() == []
            now[0] += RETRY_FIRST_S
            assert runtime.refresh() == ["other"]
            champion = runtime.model("other").deployment.lineup.champion
            assert champion is not None and champion.version == lost.version
            assert runtime.ready
        finally:
            runtime.close()
    finally:
        daemon.close()


class _GatedArtefacts(ArtefactStore):
    """Artefacts whose read of ``gated`` waits for ``opened`` (set by the test): a load
    as slow as a large artefact's, held where the test chooses."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gated: str | None = None
        self.reading, self.opened = threading.Event(), threading.Event()

    def get(self, sha256: str, suffix: str = ".onnx") -> bytes:
        if sha256 == self.gated:
            self.reading.set()
            self.opened.wait()
        return super().get(sha256, suffix)


def test_a_slow_load_of_one_model_does_not_hold_up_loading_another(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Loads ran under one lock: a promotion of one model (an 89 MB artefact parsed and
    opened in 4 s) held up another model's retire, or its rollback, as long."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "data")}, env={}), env={})
    try:
        first, second = trained
        daemon.registry.register(MODEL, first.onnx, first.metadata, actor="t", stage="champion")
        daemon.registry.register("other", second.onnx, second.metadata, actor="t", stage="champion")
        artefacts = _GatedArtefacts(daemon.artefacts.root)
        runtime = ScoringRuntime(
            config=daemon.config,
            store=daemon.store,
            artefacts=artefacts,
            metrics=ServingMetrics(),
            recorder=daemon.recorder,
        )
        try:
            runtime.start()
            new = logistic_variant()
            artefacts.gated = daemon.registry.register(
                "other", new.onnx, new.metadata, actor="t"
            ).artefact_sha256
            slow = threading.Thread(target=runtime.load, args=("other",))
            slow.start()
            try:
                assert artefacts.reading.wait(60)
                done = threading.Event()
                quick = threading.Thread(target=lambda: (runtime.load(MODEL), done.set()))
                quick.start()
                held_up = not done.wait(60)  # set at once, unless the lock is shared
            finally:
                artefacts.opened.set()
                slow.join()
            quick.join()
            assert not held_up
            lineup = runtime.model("other").deployment.lineup
            assert [c.version for c in lineup.challengers] == [2]
        finally:
            runtime.close()
    finally:
        daemon.close()
