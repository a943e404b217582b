"""The HTTP interface: Open Inference Protocol v2, mirror, feedback, registry, metrics."""

from tunewatch.api._app import create_app, create_asgi
from tunewatch.api._context import AppContext
from tunewatch.api._errors import ApiError

__all__ = ["ApiError", "AppContext", "create_app", "create_asgi"]
