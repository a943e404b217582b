"""A/B statistics: paired shadow comparisons, group-sequential DeLong, live-split tests,
sticky assignment and SRM, multiple challengers, guardrails and A/A simulations.

Decisions use always-valid (sequential) inference because the daemon looks at the data
continuously; fixed-horizon numbers are reported beside them only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor._lazy import lazy_front

if TYPE_CHECKING:
    from shadow.stats._assignment import Arm, SRMResult, assign, assignment_bucket, srm_check
    from shadow.stats._bootstrap import PoissonBootstrap
    from shadow.stats._delong import (
        DELONG_MIN_PER_CLASS,
        DeLongResult,
        delong_arrays,
        delong_test,
    )
    from shadow.stats._errors import StateVersionError, StatsError
    from shadow.stats._failure_rate import FailureRateLook, failure_rate_look
    from shadow.stats._group_sequential import GroupSequentialDeLong, GroupSequentialLook
    from shadow.stats._guardrails import (
        GuardrailConfig,
        GuardrailResult,
        ServingProfile,
        check_guardrails,
    )
    from shadow.stats._look import Decision, Look, LookArrays, TwoSampleLook, family_decision
    from shadow.stats._multiple import (
        ChallengerLook,
        Correction,
        MultiChallengerComparison,
        MultiChallengerLook,
        adjust,
    )
    from shadow.stats._paired import DEFAULT_MIN_N, PairedSequentialTest, paired_differences
    from shadow.stats._simulation import (
        PowerResult,
        SimulationResult,
        aa_false_positive_rate,
        power_simulation,
        wilson_interval,
    )
    from shadow.stats._spending import group_sequential_bounds, obrien_fleming_spending
    from shadow.stats._two_sample import TwoSampleSequentialTest, UnitUpdate
    from shadow.stats.always_valid import MSPRT, AlwaysValidMethod, ConfidenceSequence, MethodName

#: Each public name and the module that defines it, imported on first use.
_EXPORTS: dict[str, str] = {
    "Arm": "shadow.stats._assignment",
    "SRMResult": "shadow.stats._assignment",
    "assign": "shadow.stats._assignment",
    "assignment_bucket": "shadow.stats._assignment",
    "srm_check": "shadow.stats._assignment",
    "PoissonBootstrap": "shadow.stats._bootstrap",
    "DELONG_MIN_PER_CLASS": "shadow.stats._delong",
    "DeLongResult": "shadow.stats._delong",
    "delong_arrays": "shadow.stats._delong",
    "delong_test": "shadow.stats._delong",
    "StateVersionError": "shadow.stats._errors",
    "StatsError": "shadow.stats._errors",
    "FailureRateLook": "shadow.stats._failure_rate",
    "failure_rate_look": "shadow.stats._failure_rate",
    "GroupSequentialDeLong": "shadow.stats._group_sequential",
    "GroupSequentialLook": "shadow.stats._group_sequential",
    "GuardrailConfig": "shadow.stats._guardrails",
    "GuardrailResult": "shadow.stats._guardrails",
    "ServingProfile": "shadow.stats._guardrails",
    "check_guardrails": "shadow.stats._guardrails",
    "Decision": "shadow.stats._look",
    "Look": "shadow.stats._look",
    "LookArrays": "shadow.stats._look",
    "TwoSampleLook": "shadow.stats._look",
    "family_decision": "shadow.stats._look",
    "ChallengerLook": "shadow.stats._multiple",
    "Correction": "shadow.stats._multiple",
    "MultiChallengerComparison": "shadow.stats._multiple",
    "MultiChallengerLook": "shadow.stats._multiple",
    "adjust": "shadow.stats._multiple",
    "DEFAULT_MIN_N": "shadow.stats._paired",
    "PairedSequentialTest": "shadow.stats._paired",
    "paired_differences": "shadow.stats._paired",
    "PowerResult": "shadow.stats._simulation",
    "SimulationResult": "shadow.stats._simulation",
    "aa_false_positive_rate": "shadow.stats._simulation",
    "power_simulation": "shadow.stats._simulation",
    "wilson_interval": "shadow.stats._simulation",
    "group_sequential_bounds": "shadow.stats._spending",
    "obrien_fleming_spending": "shadow.stats._spending",
    "TwoSampleSequentialTest": "shadow.stats._two_sample",
    "UnitUpdate": "shadow.stats._two_sample",
    "MSPRT": "shadow.stats.always_valid",
    "AlwaysValidMethod": "shadow.stats.always_valid",
    "ConfidenceSequence": "shadow.stats.always_valid",
    "MethodName": "shadow.stats.always_valid",
}

__all__ = [
    "DEFAULT_MIN_N",
    "DELONG_MIN_PER_CLASS",
    "MSPRT",
    "AlwaysValidMethod",
    "Arm",
    "ChallengerLook",
    "ConfidenceSequence",
    "Correction",
    "DeLongResult",
    "Decision",
    "FailureRateLook",
    "GroupSequentialDeLong",
    "GroupSequentialLook",
    "GuardrailConfig",
    "GuardrailResult",
    "Look",
    "LookArrays",
    "MethodName",
    "MultiChallengerComparison",
    "MultiChallengerLook",
    "PairedSequentialTest",
    "PoissonBootstrap",
    "PowerResult",
    "SRMResult",
    "ServingProfile",
    "SimulationResult",
    "StateVersionError",
    "StatsError",
    "TwoSampleLook",
    "TwoSampleSequentialTest",
    "UnitUpdate",
    "aa_false_positive_rate",
    "adjust",
    "assign",
    "assignment_bucket",
    "check_guardrails",
    "delong_arrays",
    "delong_test",
    "failure_rate_look",
    "family_decision",
    "group_sequential_bounds",
    "obrien_fleming_spending",
    "paired_differences",
    "power_simulation",
    "srm_check",
    "wilson_interval",
]

__getattr__, __dir__ = lazy_front(__name__, _EXPORTS)
