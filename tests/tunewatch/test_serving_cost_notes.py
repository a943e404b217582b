"""What a re-tuning plan's serving-cost notes say of the ceilings: the ones set, in units
a reader takes in, and any configured guardrail that set none, with why.

With ``max_latency_p99_s: null``, ``max_latency_p99_ratio: 1.2`` and a champion with
fewer than ``min_latency_samples`` latencies in the last day (a model of little traffic,
a job queued a day after the last request), the latency ceiling was dropped without a
word and the plan's note read "over p99 Nones or 16859136 B"."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from retune.space import load_search_space
from retune.warmstart import CostCeiling
from tests.tunewatch.conftest import MODEL
from tests.tunewatch.test_tuning import _config, _daemon, _runner
from tunewatch._config import ModelConfig
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._serving_cost import serving_cost, with_ceiling
from tunewatch._shipped_spaces import default_search_space
from tunewatch.comparison import GuardrailSettings
from tunewatch.store import OutputRecord

#: The champion's latencies ``_daemon`` feeds (each 0.1 ms), within the last day.
FED = 400
HEADLINE = "reject configurations predicted"


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    d = _daemon(_config(tmp_path), trained)
    yield d
    d.close()


def _cfg(d: Daemon, **guardrails: Any) -> ModelConfig:
    cfg = d.config.model_or_default(MODEL, "binary")
    comparison = cfg.comparison.model_copy(update={"guardrails": GuardrailSettings(**guardrails)})
    return cfg.model_copy(update={"comparison": comparison})


def _plan(d: Daemon, cfg: ModelConfig, *, champion: bool = True) -> tuple[CostCeiling, list[str]]:
    """The ceiling a job would screen by now, and its plan's notes."""
    space = load_search_space(default_search_space("binary"))
    row = d.store.champion(MODEL) if champion else None
    _, ceiling, notes = serving_cost(d.store, MODEL, cfg, row, space, datetime.now(UTC))
    assert ceiling is not None
    return ceiling, list(with_ceiling(None, ceiling, notes).notes)


def _memory(d: Daemon) -> int:
    champion = d.store.champion(MODEL)
    assert champion is not None and champion.load_memory_bytes
    return champion.load_memory_bytes


def _mib(n: int) -> str:
    return f"{n / 2**20:.3g} MiB ({n:,} B)"


def _job_plan(
    trained: list[ExampleModel], tmp_path: Path, **guardrails: Any
) -> tuple[dict[str, Any], int]:
    """The warm-start plan of a one-trial job under ``guardrails``, over a champion with
    ``FED`` latencies, and the champion's memory."""
    raw = _config(tmp_path, max_trials=1)
    raw["models"][0]["comparison"] = {"guardrails": guardrails}  # type: ignore[index]
    d = _daemon(raw, trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "succeeded", job.error
        return d.store.get_version(MODEL, 2).details["warm_start_plan"], _memory(d)
    finally:
        d.close()


@pytest.mark.slow
def test_a_job_whose_champion_p99_is_unmeasured_says_latency_was_not_screened(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    plan, champion_memory = _job_plan(
        trained,
        tmp_path,
        max_latency_p99_s=None,
        max_latency_p99_ratio=1.2,
        min_latency_samples=10_000,
    )
    memory = int(champion_memory * 1.5)
    assert plan["cost"] == {"max_latency_p99_s": None, "max_memory_bytes": memory}
    [headline] = [n for n in plan["notes"] if n.startswith(HEADLINE)]
    assert headline.endswith(f"over memory {_mib(memory)}"), headline
    assert "latency" not in headline and "None" not in headline
    assert (
        "latency not screened: the champion's p99 is unmeasured "
        f"({FED} < min_latency_samples 10000 latencies on the request path in the last "
        "day), so max_latency_p99_ratio 1.2 sets no ceiling"
    ) in plan["notes"], plan["notes"]


def test_a_cap_applied_without_the_unmeasured_ratio_says_it_screens_alone(
    daemon: Daemon,
) -> None:
    cfg = _cfg(
        daemon,
        max_latency_p99_s=0.25,
        max_latency_p99_ratio=1.2,
        max_memory_ratio=None,
        min_latency_samples=10_000,
    )
    ceiling, notes = _plan(daemon, cfg)
    assert ceiling == CostCeiling(max_latency_p99_s=0.25)
    assert notes[0].endswith("over p99 latency 250 ms"), notes
    assert (
        "latency screened by max_latency_p99_s 250 ms only: the champion's p99 is unmeasured "
        f"({FED} < min_latency_samples 10000 latencies on the request path in the last "
        "day), so max_latency_p99_ratio 1.2 sets no ceiling"
    ) in notes, notes


def test_ceilings_set_from_a_measured_champion_are_named_in_readable_units(
    daemon: Daemon,
) -> None:
    ceiling, notes = _plan(daemon, _cfg(daemon))  # the default guardrails
    memory = int(_memory(daemon) * 1.5)
    assert ceiling.max_latency_p99_s == pytest.approx(1.2e-4)
    assert ceiling.max_memory_bytes == memory
    assert notes[0] == (
        "reject configurations predicted (from served configurations of their family) "
        f"over p99 latency 0.12 ms or memory {_mib(memory)}"
    )
    assert not [n for n in notes if n.startswith(("latency", "memory"))], notes


def test_ratios_without_a_champion_say_there_is_none_to_compare_with(daemon: Daemon) -> None:
    cfg = _cfg(daemon, max_memory_bytes=2**30)
    ceiling, notes = _plan(daemon, cfg, champion=False)
    assert ceiling == CostCeiling(max_memory_bytes=2**30)
    assert notes[0].endswith("over memory 1 GiB (1,073,741,824 B)"), notes
    assert (
        "latency not screened: the model has no champion to compare with, "
        "so max_latency_p99_ratio 1.2 sets no ceiling"
    ) in notes, notes
    assert (
        "memory screened by max_memory_bytes 1 GiB (1,073,741,824 B) only: the model has no "
        "champion to compare with, so max_memory_ratio 1.5 sets no ceiling"
    ) in notes, notes


@pytest.mark.slow
def test_a_job_no_ceiling_applies_to_still_says_why_latency_was_not_screened(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Only the latency ratio configured, over an unmeasured champion: no ceiling at all,
    and the plan said nothing of the guardrail it left out."""
    plan, _ = _job_plan(
        trained,
        tmp_path,
        max_latency_p99_s=None,
        max_latency_p99_ratio=1.2,
        max_memory_ratio=None,
        min_latency_samples=10_000,
    )
    assert plan["cost"] is None and "cost_constraint" not in plan["strategies"]
    assert not [n for n in plan["notes"] if n.startswith(HEADLINE)]
    assert any(n.startswith("latency not screened: ") for n in plan["notes"]), plan["notes"]


def test_the_latency_ceiling_allows_what_the_guardrail_does_within_min_latency_difference(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The guardrail does not apply ``max_latency_p99_ratio`` to a challenger within
    ``min_latency_difference_s`` (20 us) of the champion: over a 50 us champion the screen
    rejected at 60 us (x 1.2) configurations promotion would accept up to 70 us."""
    copy = dataclasses.replace(trained[0].metadata, dataset_version="copy")  # v1: a retry
    fast = daemon.registry.register(
        MODEL, trained[0].onnx, copy, actor="t", reference=trained[0].reference
    )
    daemon.store.promote(MODEL, fast.version, actor="t", reason="test")
    daemon.store.write_records(
        [],
        [
            OutputRecord(MODEL, f"f{i}", fast.version, "champion", 5e-5, 1, 2, bytes(8))
            for i in range(FED)
        ],
    )
    ceiling, notes = _plan(daemon, _cfg(daemon))  # the default guardrails
    assert ceiling.max_latency_p99_s == pytest.approx(7e-5)
    assert notes[0].startswith(HEADLINE) and "over p99 latency 0.07 ms" in notes[0], notes
    assert (
        "p99 latency ratio ceiling 0.07 ms: the champion's p99 0.05 ms x max_latency_p99_ratio 1.2 "
        "or + min_latency_difference_s 0.02 ms, whichever is higher (the guardrail does not "
        "apply the ratio within that difference)"
    ) in notes, notes
