"""The monitor package's exception root (STYLE #8)."""

from __future__ import annotations


class MonitorError(Exception):
    """Root of the errors raised by :mod:`monitor` (objectives keep their own
    :class:`~monitor.objectives.ObjectiveError`)."""


class DriftError(MonitorError, ValueError):
    """Invalid drift configuration or a reference profile that cannot be used."""


class ProfileFormatError(DriftError):
    """A serialised reference profile is malformed or written by a newer format version.

    ``found`` and ``supported`` carry the versions involved (``found`` is ``None`` when the
    payload has no version at all)."""

    def __init__(self, message: str, *, found: int | None, supported: int) -> None:
        super().__init__(message)
        self.found = found
        self.supported = supported


class EstimationError(MonitorError, ValueError):
    """Inputs a decay, performance or cost estimator cannot use (shapes, empty data,
    estimators used before ``fit``)."""
