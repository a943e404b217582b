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


class InsufficientMemoryError(ShadowError):
    """onnxruntime could not allocate the memory a run needs (HTTP 503): the host's
    condition and the batch's size, not the model's fault nor the input's. ``rows`` is
    the batch's, ``requested_bytes`` the allocation that failed, when onnxruntime said."""

    default_code = "insufficient_memory"

    def __init__(self, *, rows: int, requested_bytes: int | None) -> None:
        self.rows = rows
        self.requested_bytes = requested_bytes
        super().__init__(
            f"onnxruntime could not allocate the memory to score {self.scored}; retry later "
            "or with fewer rows"
        )

    @property
    def scored(self) -> str:
        """What could not be scored: ``3 rows (a buffer of 4,096 bytes)``."""
        if self.requested_bytes is None:
            return f"{self.rows} rows"
        return f"{self.rows} rows (a buffer of {self.requested_bytes:,} bytes)"


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
