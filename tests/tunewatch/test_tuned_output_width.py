"""A re-tuned version of a binary champion answering P(class 1) in one column answers it
as the champion does: under the champion's output names, in one column, and promotable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from shadow import OnnxModel
from tests.tunewatch.test_promotion_signature import ONE_COLUMN_METADATA, one_column_logistic
from tests.tunewatch.test_tuning import MODEL, _config, _runner
from tunewatch import _governance as governance
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import example_data
from tunewatch.store import LabelItem, OutputRecord, RequestRecord


def _write_answered_traffic(d: Daemon, champion: OnnxModel, n: int = 300) -> np.ndarray:
    """Labelled single-row requests answered by version 1 as it answers them (one column);
    the rows, float32."""
    x, y = example_data(n, seed=3, shift=0.3)
    answers = champion.primary(champion.run(x))
    at = datetime.now(UTC) - timedelta(hours=2)
    requests, outputs = [], []
    for i in range(n):
        when = at + timedelta(seconds=i)
        requests.append(RequestRecord(MODEL, f"r{i}", when, "infer", 1, 8, x[i : i + 1].tobytes()))
        outputs.append(
            OutputRecord(
                MODEL, f"r{i}", 1, "champion", 1e-4, 1, 1, answers[i].tobytes(), created_at=when
            )
        )
    d.store.write_records(requests, outputs)
    d.store.add_labels(MODEL, [LabelItem(f"r{i}", float(y[i])) for i in range(n)])
    return x


@pytest.mark.parametrize(
    "outputs", [("label", "probability"), ("probability",)], ids=["with_label", "column_alone"]
)
def test_a_tuned_version_of_a_one_column_champion_answers_p_class_1_as_it_does(
    tmp_path: Path, outputs: tuple[str, ...]
) -> None:
    """With a label, the tuned version's [P0, P1] was renamed onto the champion's
    ``probability`` [N, 1] and promoted: a client reading column 0 got P(class 0) (0.007
    where the champion said 0.993). With ``probability`` alone nothing was renamed, and
    every tuned version was refused promotion for lacking it."""
    champion_onnx = one_column_logistic(outputs)
    d = Daemon(build_config(_config(tmp_path, max_trials=2), env={}), env={})
    try:
        d.registry.register(
            MODEL, champion_onnx, ONE_COLUMN_METADATA, actor="test", stage="champion"
        )
        champion = OnnxModel.from_bytes(champion_onnx)
        x = _write_answered_traffic(d, champion)
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "succeeded" and job.result is not None, job.error
        version = job.result["version"]
        tuned = OnnxModel.from_bytes(
            d.artefacts.get(d.store.get_version(MODEL, version).artefact_sha256)
        )
        assert tuned.signature.outputs == champion.signature.outputs
        assert tuned.signature.primary_output == "probability"
        # column 0 means P(class 1) for both: they agree on most rows (0.9 for the winner
        # of 2 trials), [P0, P1] on as few as they would disagree on otherwise
        old, new = (m.run(x)["probability"][:, 0] for m in (champion, tuned))
        assert np.mean((old > 0.5) == (new > 0.5)) > 0.75
        promoted = governance.promote(
            d.store, d.config, MODEL, version, actor="ops", reason="r", artefacts=d.artefacts
        )
        assert promoted.status == "promoted"
        assert d.store.champion(MODEL) == d.store.get_version(MODEL, version)
    finally:
        d.close()
