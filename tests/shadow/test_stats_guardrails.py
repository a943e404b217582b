from __future__ import annotations

import pytest

from shadow.stats import (
    GuardrailConfig,
    GuardrailResult,
    ServingProfile,
    StatsError,
    check_guardrails,
)

CHAMPION = ServingProfile(latency_p99_s=0.020, memory_bytes=100_000_000)


def test_a_comparable_challenger_passes() -> None:
    challenger = ServingProfile(latency_p99_s=0.022, memory_bytes=120_000_000)
    result = check_guardrails(
        GuardrailConfig(), champion=CHAMPION, challenger=challenger, parity_error=1e-6
    )
    assert result.passed
    assert result.violations == ()


def test_every_broken_rule_is_named_with_its_values() -> None:
    config = GuardrailConfig(max_latency_p99_s=0.025, max_memory_bytes=150_000_000)
    challenger = ServingProfile(latency_p99_s=0.030, memory_bytes=200_000_000)
    result = check_guardrails(config, champion=CHAMPION, challenger=challenger, parity_error=1e-3)
    assert not result.passed
    assert result.violations == (
        "max_latency_p99_ratio: challenger p99 latency 0.03 s is 1.5x the champion's 0.02 s "
        "(limit 1.2x)",
        "max_latency_p99_s: challenger p99 latency 0.03 s exceeds 0.025 s",
        "max_memory_ratio: challenger memory 200000000 bytes is 2x the champion's 100000000 "
        "bytes (limit 1.5x)",
        "max_memory_bytes: challenger memory 200000000 bytes exceeds 150000000 bytes",
        "max_parity_error: ONNX parity error 0.001 exceeds 0.0001",
    )


def test_disabled_rules_are_skipped() -> None:
    config = GuardrailConfig(max_latency_p99_ratio=None, max_memory_ratio=None)
    challenger = ServingProfile(latency_p99_s=1.0, memory_bytes=10**10)
    assert check_guardrails(config, champion=CHAMPION, challenger=challenger, parity_error=0).passed


def test_guardrail_values_are_validated() -> None:
    with pytest.raises(StatsError, match="`max_memory_ratio` must be a positive finite number"):
        GuardrailConfig(max_memory_ratio=-1.0)
    with pytest.raises(StatsError, match="`latency_p99_s` must be a positive finite number"):
        ServingProfile(latency_p99_s=0.0, memory_bytes=1)
    with pytest.raises(StatsError, match="`parity_error` must be a nonnegative"):
        check_guardrails(
            GuardrailConfig(), champion=CHAMPION, challenger=CHAMPION, parity_error=float("nan")
        )


def test_a_challenger_exactly_at_every_limit_passes_and_one_byte_over_does_not() -> None:
    """The limits are maxima: 1.2x the champion's latency, 1.5x its memory and the
    absolute caps themselves pass; a byte more memory breaks the ratio and the cap."""
    config = GuardrailConfig(max_latency_p99_s=0.024, max_memory_bytes=150_000_000)
    at_limit = ServingProfile(latency_p99_s=0.024, memory_bytes=150_000_000)
    result = check_guardrails(config, champion=CHAMPION, challenger=at_limit, parity_error=1e-4)
    assert result == GuardrailResult(passed=True, violations=())
    over = ServingProfile(latency_p99_s=0.024, memory_bytes=150_000_001)
    violations = check_guardrails(
        config, champion=CHAMPION, challenger=over, parity_error=1e-4
    ).violations
    assert [v.split(":")[0] for v in violations] == ["max_memory_ratio", "max_memory_bytes"]
