"""The ROC AUC comparison (group-sequential DeLong) on batch requests counts requests,
not rows. A request's rows come from one segment of traffic: here each request's label
leans on the champion's feature or on the challenger's (a fair coin per request), so the
two models are exchangeable. Counted as independent rows, 46 of 100 such A/A runs of the
runner decided (50-row requests); the request is now the unit of DeLong's variance and of
the minimum of each class."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    copy_daemon,
    runner,
    template,  # noqa: F401  (module fixture)
)
from tunewatch._daemon import Daemon
from tunewatch.comparison import GuardrailSettings
from tunewatch.store import LabelItem, OutputRecord, RequestRecord

ROWS = 50  # rows per request
EVERY = 40  # requests per DeLong look
LOOKS = 5
NO_RATIO = GuardrailSettings(max_memory_ratio=100.0, max_latency_p99_ratio=None)


def _write_requests(d: Daemon, seed: int, first: int, lift: float) -> None:
    """``EVERY`` labelled requests of ``ROWS`` rows: v1 scores x0, v2 x1 (plus ``lift``
    toward the label), the label leans on x0 or on x1 within a request."""
    rng = np.random.default_rng([seed, first])
    at = datetime.now(UTC)
    reqs, outs, labels = [], [], []
    for j in range(EVERY):
        rid = f"r{first + j}"
        x = rng.normal(size=(ROWS, 8)).astype(np.float32)
        sign = 1.0 if rng.integers(2) else -1.0
        logit = (1.0 + 0.5 * sign) * x[:, 0] + (1.0 - 0.5 * sign) * x[:, 1]
        y = (rng.random(ROWS) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
        reqs.append(
            RequestRecord(
                MODEL, rid, at + timedelta(milliseconds=j), "infer", ROWS, 8, x.tobytes(), None
            )
        )
        for version, role, score in (
            (1, "champion", x[:, 0]),
            (2, "challenger", x[:, 1] + lift * (2.0 * y - 1.0)),
        ):
            p = 1.0 / (1.0 + np.exp(-score))
            out = np.ascontiguousarray(np.column_stack([1.0 - p, p]), dtype=np.float32)
            outs.append(
                OutputRecord(MODEL, rid, version, role, 0.001, ROWS, 2, out.tobytes())  # type: ignore[arg-type]
            )
        labels.append(LabelItem(rid, [float(v) for v in y]))
    d.store.write_records(reqs, outs)
    d.store.add_labels(MODEL, labels)


def _decision(template: Path, target: Path, seed: int, lift: float = 0.0) -> str:  # noqa: F811
    d = copy_daemon(
        template,
        target,
        models=[{"name": MODEL, "task": "binary", "objective": {"name": "roc_auc"}}],
    )
    try:
        loop = runner(d, delong_look_every=EVERY, delong_looks=LOOKS, min_n=50, guardrails=NO_RATIO)
        for look in range(LOOKS):
            _write_requests(d, seed, look * EVERY, lift)
            for result in loop.run(MODEL):
                if result.kind == "delong" and result.decision != "continue":
                    return result.decision
        return "continue"
    finally:
        d.close()


def test_exchangeable_models_on_segmented_batch_requests_are_rarely_decided(
    template: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """60 seeded A/A runs of the runner, 5 looks of 40 fifty-row requests at alpha 0.05."""
    decided = [_decision(template, tmp_path / f"s{seed}", seed) for seed in range(60)]
    false_decisions = sum(d != "continue" for d in decided)
    assert false_decisions <= 5, decided  # 0.08 of 60


def test_a_clearly_better_challenger_on_batch_requests_is_still_decided(
    template: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert _decision(template, tmp_path / "better", seed=1, lift=0.5) == "challenger_better"
