"""Comparing challengers with the champion: paired always-valid tests, guardrails,
promotion through governance, the rollback watch and live-split checks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor._lazy import lazy_front

if TYPE_CHECKING:
    from tunewatch.comparison._config import (
        ComparisonConfig,
        GuardrailSettings,
        RollbackWatchConfig,
    )
    from tunewatch.comparison._results import Action, ChallengerSummary, ComparisonResult
    from tunewatch.comparison._runner import ComparisonRunner
    from tunewatch.comparison._watch import RollbackWatch

#: Each public name and the module that defines it, imported on first use.
_EXPORTS: dict[str, str] = {
    "ComparisonConfig": "tunewatch.comparison._config",
    "GuardrailSettings": "tunewatch.comparison._config",
    "RollbackWatchConfig": "tunewatch.comparison._config",
    "Action": "tunewatch.comparison._results",
    "ChallengerSummary": "tunewatch.comparison._results",
    "ComparisonResult": "tunewatch.comparison._results",
    "ComparisonRunner": "tunewatch.comparison._runner",
    "RollbackWatch": "tunewatch.comparison._watch",
}

__all__ = [
    "Action",
    "ChallengerSummary",
    "ComparisonConfig",
    "ComparisonResult",
    "ComparisonRunner",
    "GuardrailSettings",
    "RollbackWatch",
    "RollbackWatchConfig",
]

__getattr__, __dir__ = lazy_front(__name__, _EXPORTS)
