"""A multiclass champion whose graph fixes its batch (``torch.onnx.export`` of a batch-4
dummy input without ``dynamic_axes``, skl2onnx's ``FloatTensorType([4, F])``) answers
its class count to a retune and to registration like one with a dynamic batch.

Both read the count from a run of one row when the graph left the width unread, which
such a champion refuses (``shape_mismatch``): every retune of it failed before its
first trial, and registration let a version of another count through with a warning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LogisticRegression

from retune import to_onnx
from shadow import OnnxModel
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import ConflictError
from tunewatch._registry import Registry
from tunewatch._tuning import TuningJobRunner
from tunewatch._tuning_export import class_count, served_model
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import LabelItem, OutputRecord, RequestRecord, Store

NAMES = ("a", "b", "c", "d")
MULTICLASS = VersionMetadata(task="multiclass", feature_names=NAMES)
BATCH = 4
ROWS = 400


@pytest.fixture
def store(empty_store: Store) -> Store:
    return empty_store  # the registry's (tests/tunewatch/conftest.py), holding no model


def _rows(classes: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``ROWS`` rows over ``NAMES`` labelled 0 to ``classes - 1``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, len(NAMES))).astype(np.float32)
    edges = np.linspace(-0.6, 0.6, classes - 1)
    return x, np.digitize(x[:, 0] + 0.5 * x[:, 1], edges).astype(np.float64)


def _fixed_batch_classifier(classes: int, *, declared_width: bool) -> tuple[bytes, np.ndarray]:
    """A logistic model of ``classes`` classes taking exactly ``BATCH`` rows a run, and
    the probabilities it answers ``_rows(classes)``; without ``declared_width`` its
    ``probabilities`` output leaves the columns unnamed (``[4, classes]`` becomes
    ``[4, "classes"]``), so only a run tells them."""
    x, y = _rows(classes)
    estimator = LogisticRegression(max_iter=500).fit(x, y)
    proto = convert_sklearn(
        estimator,
        initial_types=[("input", FloatTensorType([BATCH, len(NAMES)]))],
        options={id(estimator): {"zipmap": False}},
        target_opset=17,
    )
    if not declared_width:
        output = next(o for o in proto.graph.output if o.name == "probabilities")
        output.type.tensor_type.shape.dim[1].dim_param = "classes"
    onnx.checker.check_model(proto)
    return proto.SerializeToString(), estimator.predict_proba(x).astype(np.float32)


@pytest.mark.parametrize("declared_width", [True, False], ids=["declared-width", "run-width"])
def test_class_count_of_a_fixed_batch_champion_is_its_classes(
    store: Store, registry: Registry, tmp_path: Path, declared_width: bool
) -> None:
    onnx_bytes, _ = _fixed_batch_classifier(3, declared_width=declared_width)
    registry.register("m", onnx_bytes, MULTICLASS, actor="t", stage="champion")
    model = store.get_model("m")
    served = served_model(store, ArtefactStore(tmp_path / "artefacts"), model, None)
    assert served is not None and served.signature.input.shape[0] == BATCH

    # a window of rows that is not a multiple of the champion's batch
    assert class_count(model, served, _rows(3, seed=1)[0][:7]) == 3


@pytest.mark.parametrize("declared_width", [True, False], ids=["declared-width", "run-width"])
def test_a_version_of_another_class_count_than_a_fixed_batch_champion_is_refused(
    store: Store, registry: Registry, declared_width: bool
) -> None:
    onnx_bytes, _ = _fixed_batch_classifier(3, declared_width=declared_width)
    registry.register("m", onnx_bytes, MULTICLASS, actor="t", stage="champion")
    x, y = _rows(4, seed=1)

    with pytest.raises(ConflictError) as info:
        registry.register(
            "m",
            to_onnx(LogisticRegression(max_iter=500).fit(x, y), len(NAMES)),
            MULTICLASS,
            actor="t",
        )

    assert info.value.code == "class_count_mismatch"
    assert info.value.message.startswith(
        "the champion of model 'm' (version 1) answers 3 classes; a version must answer "
        "as many, got 4 (output 'probabilities')"
    )
    assert [v.version for v in store.list_versions("m")] == [1]


def test_a_retune_of_a_fixed_batch_champion_registers_a_challenger_of_its_classes(
    tmp_path: Path,
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "format_version": 1,
                "name": "logistic",
                "params": {
                    "estimator": {
                        "type": "categorical",
                        "choices": ["logistic"],
                        "when": {
                            "logistic": {
                                "C": {"type": "float", "low": 0.1, "high": 10.0, "log": True}
                            }
                        },
                    }
                },
            }
        )
    )
    raw = {
        "data_dir": str(tmp_path / "data"),
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0, "max_concurrent_jobs": 10},
        "models": [
            {
                "name": "m",
                "task": "multiclass",
                "tuning": {
                    "search_space": str(space),
                    "max_trials": 2,
                    "cv_folds": 2,
                    "patience": None,
                    "wall_time_s": 120,
                    "min_rows": 100,
                },
                "triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 0}],
            }
        ],
    }
    onnx_bytes, proba = _fixed_batch_classifier(3, declared_width=False)
    x, y = _rows(3)
    d = Daemon(build_config(raw, env={}), env={})
    try:
        d.registry.register("m", onnx_bytes, MULTICLASS, actor="test", stage="champion")
        # the champion's clients send requests of its batch of 4 rows
        at = datetime.now(UTC) - timedelta(hours=1)
        starts = range(0, ROWS, BATCH)
        d.store.write_records(
            [
                RequestRecord("m", f"q{i}", at, "infer", BATCH, 4, x[i : i + BATCH].tobytes())
                for i in starts
            ],
            [
                OutputRecord(
                    "m", f"q{i}", 1, "champion", 1e-4, BATCH, 3, proba[i : i + BATCH].tobytes()
                )
                for i in starts
            ],
        )
        d.store.add_labels("m", [LabelItem(f"q{i}", list(y[i : i + BATCH])) for i in starts])
        outcome = d.dispatcher.handle("m", "manual", {})
        assert outcome.job_id is not None

        job = TuningJobRunner(
            store=d.store, registry=d.registry, artefacts=d.artefacts, config=d.config, worker="t"
        ).run(outcome.job_id)

        assert job.status == "succeeded", job.error
        assert job.result is not None and job.result["version"] == 2
        version = d.store.get_version("m", 2)
        assert version.stage == "shadow" and version.parent_version == 1
        challenger = OnnxModel.from_bytes(d.artefacts.get(version.artefact_sha256))
        assert challenger.primary(challenger.run(x[:1])).shape == (1, 3)
    finally:
        d.close()
