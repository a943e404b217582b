"""A re-tuning job's challenger answers its champion's clients as the champion does (its
outputs' names, types and shapes), and a window it cannot export from fails the job
before the study: end to end, from labelled traffic to a promotion."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper
from skl2onnx import to_onnx as skl2onnx_to_onnx
from sklearn.linear_model import LogisticRegression, Ridge

from retune import study_progress, to_onnx
from shadow import OnnxModel
from tests.tunewatch.conftest import MODEL, Clock, champion_answered
from tunewatch import _governance as governance
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import example_data, feature_names
from tunewatch._tuning import TuningJobRunner
from tunewatch._tuning_results import study_name
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import JobRow, LabelItem


def _daemon(tmp_path: Path, task: str, estimator: str, param: str, **tuning: object) -> Daemon:
    """A daemon tuning ``MODEL`` over one estimator and one float parameter, two trials."""
    space = {
        "format_version": 1,
        "name": "tiny",
        "params": {
            "estimator": {
                "type": "categorical",
                "choices": [estimator],
                "when": {
                    estimator: {param: {"type": "float", "low": 0.1, "high": 5.0, "log": True}}
                },
            }
        },
    }
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    job = {
        "search_space": str(tmp_path / "space.yaml"),
        "max_trials": 2,
        "cv_folds": 2,
        "patience": None,
        "wall_time_s": 120,
        "min_rows": 100,
        "include_reference": False,
        **tuning,
    }
    raw = {
        "data_dir": str(tmp_path / "data"),
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0, "max_concurrent_jobs": 10},
        "models": [
            {
                "name": MODEL,
                "task": task,
                "tuning": job,
                "triggers": [{"on": "manual", "do": "retune", "cooldown_minutes": 0}],
            }
        ],
    }
    return Daemon(build_config(raw, env={}), env={})


def _register_and_serve(
    d: Daemon, onnx_bytes: bytes, task: str, x: np.ndarray, y: np.ndarray
) -> OnnxModel:
    """Register ``onnx_bytes`` as the champion and write labelled single-row requests of
    ``x`` it answered (in its own input type), as the daemon records them."""
    meta = VersionMetadata(task=task, feature_names=feature_names(x.shape[1]))
    version = d.registry.register(MODEL, onnx_bytes, meta, actor="ops", stage="champion")
    champion = OnnxModel.from_bytes(onnx_bytes)
    answers = champion.primary(champion.run(x.astype(champion.signature.input.dtype)))
    clock = Clock()
    records = []
    for i in range(len(x)):
        clock.now += timedelta(seconds=1)
        records.append(
            champion_answered(
                f"r{i}", clock.now, x[i : i + 1], answers[i : i + 1], version=version.version
            )
        )
    d.store.write_records([r for r, _ in records], [o for _, o in records])
    d.store.add_labels(MODEL, [LabelItem(f"r{i}", float(y[i])) for i in range(len(x))])
    return champion


def _retune(d: Daemon) -> JobRow:
    outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    runner = TuningJobRunner(
        store=d.store, registry=d.registry, artefacts=d.artefacts, config=d.config, worker="w"
    )
    return runner.run(outcome.job_id)


def _promoted_like(d: Daemon, champion: OnnxModel, job: JobRow) -> None:
    """The job's challenger answers as ``champion`` does, and is promoted over it."""
    assert job.status == "succeeded" and job.result is not None, job.error
    version = d.store.get_version(MODEL, job.result["version"])
    tuned = OnnxModel.from_bytes(d.artefacts.get(version.artefact_sha256))
    assert tuned.signature.input == champion.signature.input
    assert tuned.signature.outputs == champion.signature.outputs
    outcome = governance.promote(
        d.store, d.config, MODEL, version.version, actor="ops", reason="it won"
    )
    assert outcome.status == "promoted"
    champion_now = d.store.champion(MODEL)
    assert champion_now is not None and champion_now.version == version.version


def test_a_float64_champion_s_tuned_challenger_answers_float64_and_is_promoted(
    tmp_path: Path,
) -> None:
    """A champion exported the common way, ``skl2onnx.to_onnx(clf, X[:1])`` on float64
    data, answers float64 probabilities; its challengers answered float32 and every
    promotion was refused (signature_mismatch)."""
    x, y = example_data(300, seed=3)
    clf = LogisticRegression().fit(x.astype(np.float64), y)
    champion_onnx = skl2onnx_to_onnx(
        clf, x[:1].astype(np.float64), options={id(clf): {"zipmap": False}}
    ).SerializeToString()
    d = _daemon(tmp_path, "binary", "logistic", "C")
    try:
        champion = _register_and_serve(d, champion_onnx, "binary", x, y)
        assert champion.signature.output("probabilities").dtype == np.float64
        _promoted_like(d, champion, _retune(d))
    finally:
        d.close()


def _vector_answer(proto: onnx.ModelProto) -> bytes:
    """A regressor's ``variable: [N, 1]`` answered as ``prediction: [N]`` (a Reshape, as
    a PyTorch export's ``model(x).squeeze(-1)``)."""
    graph = proto.graph
    graph.initializer.append(helper.make_tensor("flat", TensorProto.INT64, [1], [-1]))
    graph.node.append(helper.make_node("Reshape", ["variable", "flat"], ["prediction"]))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None]))
    return proto.SerializeToString()


def test_a_vector_regression_champion_s_tuned_challenger_answers_a_vector_and_is_promoted(
    tmp_path: Path,
) -> None:
    """A regression champion answering ``prediction: [N]``: its challengers answered
    ``variable: [N, 1]`` and every promotion was refused ("it lacks the outputs
    ['prediction']")."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5, 3.0]) + rng.normal(size=300)
    champion_onnx = _vector_answer(onnx.load_from_string(to_onnx(Ridge().fit(x, y), 4)))
    d = _daemon(tmp_path, "regression", "ridge", "alpha")
    try:
        champion = _register_and_serve(d, champion_onnx, "regression", x, y)
        _promoted_like(d, champion, _retune(d))
    finally:
        d.close()


def _four_classes(score: np.ndarray) -> np.ndarray:
    return np.digitize(score, [-0.5, 0.5, 1.5])


def test_a_window_missing_a_class_fails_before_any_trial(tmp_path: Path) -> None:
    """The champion answers classes 0..3; a month's labels hold no class 3. The job ran
    its whole study, then failed at the export on the classes it could have counted
    before the first trial."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    champion_onnx = to_onnx(LogisticRegression().fit(x, _four_classes(x[:, 0] + 0.5)), 4)
    y = np.minimum(_four_classes(x[:, 0]), 2)  # class 3 never labelled in the window
    d = _daemon(tmp_path, "multiclass", "logistic", "C", max_trials=4)
    try:
        _register_and_serve(d, champion_onnx, "multiclass", x, y)
        job = _retune(d)
        assert job.status == "failed"
        assert "the training window has no rows of class(es) [3]" in (job.error or "")
        progress = study_progress(d.config.tuning_storage_url, study_name(job))
        assert progress is None or progress.n_trials == 0
        assert [v.version for v in d.store.list_versions(MODEL)] == [1]
    finally:
        d.close()
