"""tunewatch: production monitoring and warm-started re-tuning for ONNX models."""

__version__ = "0.1.0"

from tunewatch._config import Config, build_config, load_config  # noqa: E402
from tunewatch._errors import (  # noqa: E402
    ConfigError,
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    TunewatchError,
)

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
