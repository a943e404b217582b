"""Errors raised by :mod:`shadow.stats`, under the :class:`shadow.ShadowError` root."""

from __future__ import annotations

from shadow._errors import ShadowError


class StatsError(ShadowError, ValueError):
    """A statistical test was configured or fed with values it cannot use."""

    default_code = "invalid_statistics_input"


class StateVersionError(StatsError):
    """A persisted test state was written by a newer (or unknown) format version."""

    default_code = "unsupported_state_version"

    def __init__(self, kind: str, found: object, supported: int) -> None:
        super().__init__(
            f"{kind} state has `format_version` {found!r}, but this tunewatch reads "
            f"versions up to {supported}; upgrade tunewatch to load it"
        )
        self.kind = kind
        self.found = found
        self.supported = supported
