"""A/B statistics: paired shadow comparisons, group-sequential DeLong, live-split tests,
sticky assignment and SRM, multiple challengers, guardrails and A/A simulations.

Decisions use always-valid (sequential) inference because the daemon looks at the data
continuously; fixed-horizon numbers are reported beside them only.
"""

from __future__ import annotations

from shadow.stats._assignment import Arm, SRMResult, assign, assignment_bucket, srm_check
from shadow.stats._bootstrap import PoissonBootstrap
from shadow.stats._delong import (
    DELONG_MIN_PER_CLASS,
    DeLongResult,
    delong_arrays,
    delong_test,
)
from shadow.stats._errors import StateVersionError, StatsError
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
    "family_decision",
    "group_sequential_bounds",
    "obrien_fleming_spending",
    "paired_differences",
    "power_simulation",
    "srm_check",
    "wilson_interval",
]
