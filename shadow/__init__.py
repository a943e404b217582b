"""Live scoring: ONNX sessions, input validation, candidate inspection, the
champion/challenger line-up and the shadow queue.

Scope: tunewatch serves **tabular models with exactly one 2-D input**
``[batch, n_features]`` (float32 usually), e.g. scikit-learn pipelines converted by
skl2onnx. Classifiers converted with ``zipmap=False`` output ``label`` ``[N]`` int64
and ``probabilities`` ``[N, C]`` float32; regressors output ``variable`` ``[N, 1]``.

The comparison statistics live in :mod:`shadow.stats` and are not re-exported here:
the candidate probe child (``python -m shadow._probe``) imports this package, and
SciPy, scikit-learn and ``monitor`` would multiply its start-up time by five.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor._lazy import lazy_front

if TYPE_CHECKING:
    from shadow._batch_chunks import run_rows
    from shadow._candidate import CandidateInfo, inspect_candidate
    from shadow._deployment import Deployment, Lineup, LoadedVersion, Role
    from shadow._errors import (
        CandidateRejectedError,
        InsufficientMemoryError,
        InvalidInputError,
        ModelLoadError,
        ShadowError,
        VersionNotLoadedError,
    )
    from shadow._jobs import ShadowJob, ShadowResult
    from shadow._onnx import (
        OnnxModel,
        Signature,
        TensorSpec,
        primary_output,
        signature_from_session,
    )
    from shadow._onnx_proto import declared_primary_width
    from shadow._queue import DropReason, ShadowQueue
    from shadow._sched import use_batch_scheduling
    from shadow._validation import (
        FeatureRange,
        cast_rows,
        check_output,
        representable_rows,
        validate_batch,
    )

#: Each public name and the module that defines it, imported on first use.
_EXPORTS: dict[str, str] = {
    "run_rows": "shadow._batch_chunks",
    "CandidateInfo": "shadow._candidate",
    "inspect_candidate": "shadow._candidate",
    "Deployment": "shadow._deployment",
    "Lineup": "shadow._deployment",
    "LoadedVersion": "shadow._deployment",
    "Role": "shadow._deployment",
    "CandidateRejectedError": "shadow._errors",
    "InsufficientMemoryError": "shadow._errors",
    "InvalidInputError": "shadow._errors",
    "ModelLoadError": "shadow._errors",
    "ShadowError": "shadow._errors",
    "VersionNotLoadedError": "shadow._errors",
    "ShadowJob": "shadow._jobs",
    "ShadowResult": "shadow._jobs",
    "OnnxModel": "shadow._onnx",
    "Signature": "shadow._onnx",
    "TensorSpec": "shadow._onnx",
    "primary_output": "shadow._onnx",
    "declared_primary_width": "shadow._onnx_proto",
    "signature_from_session": "shadow._onnx",
    "DropReason": "shadow._queue",
    "ShadowQueue": "shadow._queue",
    "use_batch_scheduling": "shadow._sched",
    "FeatureRange": "shadow._validation",
    "cast_rows": "shadow._validation",
    "check_output": "shadow._validation",
    "representable_rows": "shadow._validation",
    "validate_batch": "shadow._validation",
}

__all__ = [
    "CandidateInfo",
    "CandidateRejectedError",
    "DropReason",
    "Deployment",
    "FeatureRange",
    "InsufficientMemoryError",
    "InvalidInputError",
    "LoadedVersion",
    "Lineup",
    "ModelLoadError",
    "OnnxModel",
    "Role",
    "ShadowError",
    "ShadowJob",
    "ShadowQueue",
    "ShadowResult",
    "Signature",
    "TensorSpec",
    "VersionNotLoadedError",
    "cast_rows",
    "check_output",
    "declared_primary_width",
    "inspect_candidate",
    "primary_output",
    "representable_rows",
    "run_rows",
    "signature_from_session",
    "use_batch_scheduling",
    "validate_batch",
]

__getattr__, __dir__ = lazy_front(__name__, _EXPORTS)
