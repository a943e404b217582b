"""Live scoring: ONNX sessions, input validation, candidate inspection, the
champion/challenger line-up and the shadow queue.

Scope: tunewatch serves **tabular models with exactly one 2-D input**
``[batch, n_features]`` (float32 usually), e.g. scikit-learn pipelines converted by
skl2onnx. Classifiers converted with ``zipmap=False`` output ``label`` ``[N]`` int64
and ``probabilities`` ``[N, C]`` float32; regressors output ``variable`` ``[N, 1]``.
"""

from __future__ import annotations

from shadow._candidate import CandidateInfo, inspect_candidate
from shadow._deployment import Deployment, Lineup, LoadedVersion, Role
from shadow._errors import (
    CandidateRejectedError,
    InvalidInputError,
    ModelLoadError,
    ShadowError,
    VersionNotLoadedError,
)
from shadow._onnx import OnnxModel, Signature, TensorSpec, signature_from_session
from shadow._queue import DropReason, ShadowJob, ShadowQueue, ShadowResult
from shadow._sched import use_batch_scheduling
from shadow._validation import FeatureRange, validate_batch
from shadow.stats import (
    ChallengerLook,
    Decision,
    DeLongResult,
    GroupSequentialDeLong,
    GroupSequentialLook,
    GuardrailConfig,
    GuardrailResult,
    Look,
    MultiChallengerComparison,
    MultiChallengerLook,
    PairedSequentialTest,
    PowerResult,
    ServingProfile,
    SimulationResult,
    SRMResult,
    StateVersionError,
    StatsError,
    TwoSampleLook,
    TwoSampleSequentialTest,
    aa_false_positive_rate,
    adjust,
    assign,
    check_guardrails,
    delong_test,
    paired_differences,
    power_simulation,
    srm_check,
)

__all__ = [
    "CandidateInfo",
    "CandidateRejectedError",
    "ChallengerLook",
    "DeLongResult",
    "DropReason",
    "Decision",
    "Deployment",
    "FeatureRange",
    "GroupSequentialDeLong",
    "GroupSequentialLook",
    "GuardrailConfig",
    "GuardrailResult",
    "InvalidInputError",
    "LoadedVersion",
    "Lineup",
    "Look",
    "ModelLoadError",
    "MultiChallengerComparison",
    "MultiChallengerLook",
    "OnnxModel",
    "PairedSequentialTest",
    "PowerResult",
    "Role",
    "SRMResult",
    "ServingProfile",
    "ShadowError",
    "ShadowJob",
    "ShadowQueue",
    "ShadowResult",
    "Signature",
    "SimulationResult",
    "StateVersionError",
    "StatsError",
    "TensorSpec",
    "TwoSampleLook",
    "TwoSampleSequentialTest",
    "VersionNotLoadedError",
    "aa_false_positive_rate",
    "adjust",
    "assign",
    "check_guardrails",
    "delong_test",
    "inspect_candidate",
    "paired_differences",
    "power_simulation",
    "signature_from_session",
    "srm_check",
    "use_batch_scheduling",
    "validate_batch",
]
