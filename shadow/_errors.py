"""The exception hierarchy of :mod:`shadow`: one root, builtin dual inheritance.

Every error carries a short machine-readable ``code`` (stable, used by the HTTP layer
as the ``code`` field of ``{"error": ..., "code": ...}``) and a human ``message``
that names the field, the rule and the value.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

InvalidInputCode = Literal[
    "missing_input",
    "unknown_input",
    "shape_mismatch",
    "dtype_mismatch",
    "empty_batch",
    "batch_too_large",
    "non_finite",
    "out_of_range",
]
CandidateRejectedCode = Literal[
    "not_onnx",
    "external_data",
    "unsupported_signature",
    "load_failed",
    "load_timeout",
    "load_memory",
]

INVALID_INPUT_CODES: Final[frozenset[str]] = frozenset(get_args(InvalidInputCode))
CANDIDATE_REJECTED_CODES: Final[frozenset[str]] = frozenset(get_args(CandidateRejectedCode))


class ShadowError(Exception):
    """Root of every error raised by :mod:`shadow`."""

    default_code: str = "shadow_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code: str = code if code is not None else self.default_code

    def __str__(self) -> str:
        return self.message


class InvalidInputError(ShadowError, ValueError):
    """A request's input does not fit the model signature (HTTP 400)."""

    default_code = "shape_mismatch"

    def __init__(self, message: str, *, code: InvalidInputCode) -> None:
        super().__init__(message, code=code)


class ModelLoadError(ShadowError):
    """onnxruntime could not create a session from the given model bytes."""

    default_code = "load_failed"


class CandidateRejectedError(ShadowError):
    """A candidate ONNX file is unfit to be served; ``code`` says why."""

    default_code = "load_failed"

    def __init__(self, message: str, *, code: CandidateRejectedCode) -> None:
        super().__init__(message, code=code)


class VersionNotLoadedError(ShadowError, KeyError):
    """A deployment holds no loaded version with the requested number (a KeyError,
    hence a LookupError)."""

    default_code = "version_not_loaded"

    def __init__(self, model: str, version: int) -> None:
        super().__init__(f"model {model!r} has no loaded version {version}")
        self.model = model
        self.version = version
