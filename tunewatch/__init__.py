"""tunewatch: production monitoring and warm-started re-tuning for ONNX models.

The configuration's names are imported on first use (:func:`monitor._lazy.lazy_front`):
``python -m tunewatch`` and the ``tunewatch`` script import this package before the
command line's entry point (:mod:`tunewatch._entry`) can catch a Ctrl-C, and the
configuration loader's pydantic and SQLAlchemy took a second or more of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor._lazy import lazy_front
from tunewatch._errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    TunewatchError,
)

if TYPE_CHECKING:
    from tunewatch._config import Config, build_config, load_config

__version__ = "0.1.0"

#: Each lazily imported public name and the module that defines it.
_EXPORTS: dict[str, str] = {
    "Config": "tunewatch._config",
    "build_config": "tunewatch._config",
    "load_config": "tunewatch._config",
}

__all__ = [
    "Config",
    "ConfigError",
    "ConflictError",
    "NotFoundError",
    "StoreError",
    "StoreUnavailableError",
    "TunewatchError",
    "__version__",
    "build_config",
    "load_config",
]

__getattr__, __dir__ = lazy_front(__name__, _EXPORTS)
