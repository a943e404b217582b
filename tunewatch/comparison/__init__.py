"""Comparing challengers with the champion: paired always-valid tests, guardrails,
promotion through governance, the rollback watch and live-split checks."""

from tunewatch.comparison._config import ComparisonConfig, GuardrailSettings, RollbackWatchConfig
from tunewatch.comparison._results import Action, ChallengerSummary, ComparisonResult
from tunewatch.comparison._runner import ComparisonRunner
from tunewatch.comparison._watch import RollbackWatch

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
