"""Serving-cost ceilings for a re-tuning job, from production telemetry: what each served
hyperparameter set costs (p99 latency over the last day as champion, on the request path
where the guardrails' ceiling is timed; session memory of every registered version), and
what the promotion guardrails would accept next to the champion.

The plan says which estimator families the telemetry does not screen (none served, or
too few to fit a size curve): a family with no served configuration used to be
predicted to cost nothing, and the plan claimed every configuration was screened. It
says too which ratio guardrail set no ceiling and why: with no absolute cap beside it, a
champion whose p99 went unmeasured in the last day (a model of little traffic) dropped
the latency ceiling without a word.

The latency ceiling is the one the guardrail applies: the champion's p99 x
``max_latency_p99_ratio``, but never under its p99 + ``min_latency_difference_s``, within
which the guardrail does not apply the ratio (a 50 us champion's ceiling was 60 us, the
guardrail's 70 us), and the plan says how it was reckoned."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from retune.warmstart import (
    CostCeiling,
    CostPredictor,
    CostSample,
    WarmStartPlan,
    family_cost_predictor,
)
from tunewatch._config import ModelConfig
from tunewatch._evaluation_telemetry import STAGE_CHANGE_LAG
from tunewatch.store import Store, VersionRow


def serving_cost(
    store: Store,
    model: str,
    cfg: ModelConfig,
    champion: VersionRow | None,
    space: Any,
    until: datetime,
) -> tuple[CostPredictor | None, CostCeiling | None, tuple[str, ...]]:
    """The predictor (from the served configurations of the same estimator family, see
    :func:`retune.warmstart.family_cost_predictor`) and the ceilings, or ``(None, None)``
    when nothing was served long enough or no guardrail sets a limit, with notes: each
    ratio guardrail that set no ceiling and why (no champion, or its p99 or memory
    unmeasured), how the ratio latency ceiling was reckoned, then the families the
    predictor does not, or only partly, screen. Configurations
    predicted over the ceilings are not trained: they could not be promoted."""
    guard = cfg.comparison.guardrails
    versions = store.list_versions(model)  # every one: each one's memory is a sample
    since = until - timedelta(days=1)
    # the latencies of those that can have answered since only: the line-up, and those
    # taken out of service since (or STAGE_CHANGE_LAG before); one read each of every
    # version the model kept (2,000: 2,000 statements) found one or two
    answering = [
        v.version
        for v in versions
        if v.stage in ("champion", "shadow") or v.stage_changed_at >= since - STAGE_CHANGE_LAG
    ]
    # on the request path only, where the ceiling's champion p99 is timed: a shadow is
    # timed in a deprioritised worker thread (one served gradient boosting read p99
    # 4,767 us there against 27 us bare) and made its whole family look too slow
    latencies = store.latencies(
        model, since=since, versions=answering, roles=dict.fromkeys(answering, "champion")
    )
    samples, p99 = [], {}
    for version in versions:
        served = latencies.get(version.version)
        if served is not None and served.size >= guard.min_latency_samples:
            p99[version.version] = float(np.quantile(served, 0.99))
        if version.version not in p99 and not version.load_memory_bytes:
            continue  # nothing measured: a latency or memory of 0 is read as unmeasured
        samples.append(
            CostSample(
                params=version.hyperparameters,
                latency_p99_s=p99.get(version.version, 0.0),
                memory_bytes=float(version.load_memory_bytes or 0),
            )
        )
    latency_ratio = memory_ratio = "the model has no champion to compare with"
    latency, memory = [guard.max_latency_p99_s], [guard.max_memory_bytes]
    applied: list[str] = []  # how a ratio ceiling set was reckoned
    if champion is not None:
        served = latencies.get(champion.version)
        latency_ratio = (
            f"the champion's p99 is unmeasured ({0 if served is None else served.size} < "
            f"min_latency_samples {guard.min_latency_samples} latencies on the request path "
            "in the last day)"
        )
        memory_ratio = "the champion's session memory is unmeasured"
        if champion.version in p99 and guard.max_latency_p99_ratio:
            # the guardrail applies the ratio only past min_latency_difference_s of the
            # champion's p99: a ceiling of the ratio alone rejected what promotion accepts
            ratio, margin = guard.max_latency_p99_ratio, guard.min_latency_difference_s
            ratio_ceiling = max(p99[champion.version] * ratio, p99[champion.version] + margin)
            latency.append(ratio_ceiling)
            latency_ratio = ""
            applied.append(
                f"p99 latency ratio ceiling {_seconds(ratio_ceiling)}: the champion's p99 "
                f"{_seconds(p99[champion.version])} x max_latency_p99_ratio {ratio:g} or + "
                f"min_latency_difference_s {_seconds(margin)}, whichever is higher (the "
                "guardrail does not apply the ratio within that difference)"
            )
        if champion.load_memory_bytes and guard.max_memory_ratio:
            memory.append(int(champion.load_memory_bytes * guard.max_memory_ratio))
            memory_ratio = ""
    max_latency = min((v for v in latency if v is not None), default=None)
    max_memory = min((v for v in memory if v is not None), default=None)
    cap_s, cap_bytes = guard.max_latency_p99_s, guard.max_memory_bytes
    unapplied = tuple(
        f"{what} {screened}: {why}, so {ratio_key} {ratio:g} sets no ceiling"
        for what, screened, ratio_key, ratio, why in (
            (
                "latency",
                "not screened"
                if cap_s is None
                else f"screened by max_latency_p99_s {_seconds(cap_s)} only",
                "max_latency_p99_ratio",
                guard.max_latency_p99_ratio,
                latency_ratio,
            ),
            (
                "memory",
                "not screened"
                if cap_bytes is None
                else f"screened by max_memory_bytes {_bytes(cap_bytes)} only",
                "max_memory_ratio",
                guard.max_memory_ratio,
                memory_ratio,
            ),
        )
        if ratio and why  # a ratio configured that set no ceiling
    )
    if not samples or (max_latency is None and max_memory is None):
        return None, None, unapplied
    predictor = family_cost_predictor(samples, space)
    ceiling = CostCeiling(max_latency_p99_s=max_latency, max_memory_bytes=max_memory)
    return predictor, ceiling, (*unapplied, *applied, *predictor.notes())


def _seconds(value: float) -> str:
    return f"{value * 1e3:.3g} ms" if value < 1 else f"{value:.3g} s"


def _bytes(value: int) -> str:
    """``value`` in the largest binary unit under it, then exactly: a guardrail's
    violation names the bytes."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.3g} {unit} ({value:,} B)"
    return f"{value:,} B"


def with_ceiling(
    plan: WarmStartPlan | None, ceiling: CostCeiling, notes: tuple[str, ...] = ()
) -> WarmStartPlan:
    """``plan`` with the serving-cost ceilings, its notes saying what they reject (the
    ceilings set only) and ``notes``: :func:`serving_cost`'s."""
    over = []
    if ceiling.max_latency_p99_s is not None:
        over.append(f"p99 latency {_seconds(ceiling.max_latency_p99_s)}")
    if ceiling.max_memory_bytes is not None:
        over.append(f"memory {_bytes(ceiling.max_memory_bytes)}")
    notes = (
        "reject configurations predicted (from served configurations of their family) "
        f"over {' or '.join(over)}",
        *notes,
    )
    if plan is None:
        return WarmStartPlan(strategies=("cost_constraint",), cost=ceiling, notes=notes)
    return dataclasses.replace(
        plan,
        strategies=(*plan.strategies, "cost_constraint"),
        cost=ceiling,
        notes=(*plan.notes, *notes),
    )
