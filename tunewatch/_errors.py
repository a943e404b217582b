"""The application's exception root; every error the daemon raises on purpose derives from it."""

from __future__ import annotations

import errno


class TunewatchError(Exception):
    """Root of tunewatch's own errors. ``code`` is the stable machine-readable name."""

    code = "tunewatch_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(TunewatchError, ValueError):
    """A configuration file or override is invalid; the message names the key path."""

    code = "invalid_config"


class StoreError(TunewatchError):
    """A store operation failed."""

    code = "store_error"


class StoreUnavailableError(StoreError):
    """The database could not be reached or could not commit; callers answer 503."""

    code = "store_unavailable"


class DatabaseUnavailableError(StoreUnavailableError):
    """The database driver's own failure, or the artefact directory's (full, read-only,
    failing, not writable): its message holds the driver's text (the database's host,
    port and user) or the directory's path and the system's reason, for the daemon's log
    and the CLI; the HTTP API answers callers a fixed message instead."""


class InvalidValueError(StoreError, ValueError):
    """The database cannot hold a value it was given (too long, a NUL, out of range)."""

    code = "invalid_value"


class NotFoundError(StoreError, LookupError):
    """The named row does not exist."""

    code = "not_found"


class ConflictError(StoreError):
    """The write contradicts what is stored (a duplicate, a stage rule, an append-only row)."""

    code = "conflict"


class TuningError(TunewatchError):
    """A job could not run (too little data, a bad search space …)."""

    code = "tuning_failed"


class RegistrationError(TunewatchError, ValueError):
    """A candidate or its metadata was refused; ``code`` says why."""

    code = "invalid_candidate"


def os_reason(exc: OSError) -> str:
    """The system's reason for ``exc`` and its errno's name: "No space left on device
    (ENOSPC)", for a message that names what failed and why."""
    name = errno.errorcode.get(exc.errno) if exc.errno is not None else None
    return f"{exc.strerror or exc}" + (f" ({name})" if name else "")
