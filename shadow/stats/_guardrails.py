"""Serving guardrails a challenger must pass whatever its accuracy: latency, memory and
ONNX parity (the exported model must reproduce the fitted one)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shadow.stats._errors import StatsError


def _check_positive(value: float | None, field: str) -> None:
    if value is not None and not (np.isfinite(value) and value > 0):
        raise StatsError(f"`{field}` must be a positive finite number, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class GuardrailConfig:
    """Limits relative to the champion (ratios) and absolute caps (``None`` = no cap)."""

    max_latency_p99_ratio: float | None = 1.2
    max_latency_p99_s: float | None = None
    max_memory_ratio: float | None = 1.5
    max_memory_bytes: int | None = None
    max_parity_error: float | None = 1e-4

    def __post_init__(self) -> None:
        for field in (
            "max_latency_p99_ratio",
            "max_latency_p99_s",
            "max_memory_ratio",
            "max_memory_bytes",
            "max_parity_error",
        ):
            _check_positive(getattr(self, field), field)


@dataclass(frozen=True, kw_only=True)
class ServingProfile:
    """Measured serving cost of one model version."""

    latency_p99_s: float
    memory_bytes: int

    def __post_init__(self) -> None:
        _check_positive(self.latency_p99_s, "latency_p99_s")
        _check_positive(self.memory_bytes, "memory_bytes")


@dataclass(frozen=True)
class GuardrailResult:
    passed: bool
    violations: tuple[str, ...]


def check_guardrails(
    config: GuardrailConfig,
    *,
    champion: ServingProfile,
    challenger: ServingProfile,
    parity_error: float,
) -> GuardrailResult:
    """Every rule the challenger breaks, each message naming the rule and the values."""
    if not (np.isfinite(parity_error) and parity_error >= 0):
        raise StatsError(
            f"`parity_error` must be a nonnegative finite number, got {parity_error!r}"
        )
    violations: list[str] = []
    latency_ratio = challenger.latency_p99_s / champion.latency_p99_s
    if config.max_latency_p99_ratio is not None and latency_ratio > config.max_latency_p99_ratio:
        violations.append(
            f"max_latency_p99_ratio: challenger p99 latency {challenger.latency_p99_s:.6g} s is "
            f"{latency_ratio:.3g}x the champion's {champion.latency_p99_s:.6g} s "
            f"(limit {config.max_latency_p99_ratio:g}x)"
        )
    if config.max_latency_p99_s is not None and challenger.latency_p99_s > config.max_latency_p99_s:
        violations.append(
            f"max_latency_p99_s: challenger p99 latency {challenger.latency_p99_s:.6g} s exceeds "
            f"{config.max_latency_p99_s:g} s"
        )
    memory_ratio = challenger.memory_bytes / champion.memory_bytes
    if config.max_memory_ratio is not None and memory_ratio > config.max_memory_ratio:
        violations.append(
            f"max_memory_ratio: challenger memory {challenger.memory_bytes} bytes is "
            f"{memory_ratio:.3g}x the champion's {champion.memory_bytes} bytes "
            f"(limit {config.max_memory_ratio:g}x)"
        )
    if config.max_memory_bytes is not None and challenger.memory_bytes > config.max_memory_bytes:
        violations.append(
            f"max_memory_bytes: challenger memory {challenger.memory_bytes} bytes exceeds "
            f"{config.max_memory_bytes} bytes"
        )
    if config.max_parity_error is not None and parity_error > config.max_parity_error:
        violations.append(
            f"max_parity_error: ONNX parity error {parity_error:.3g} exceeds "
            f"{config.max_parity_error:g}"
        )
    return GuardrailResult(passed=not violations, violations=tuple(violations))
