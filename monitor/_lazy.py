"""Package fronts that import a public name's module on first use.

``monitor``, ``shadow``, ``retune`` and ``retune.space`` re-export their public names
(``__all__``), but importing one small module of a package runs the package's
``__init__`` first: an eager front made ``tunewatch --help`` import SciPy,
scikit-learn, pandas and skl2onnx (6–8 s) because the config loader needs an
objective's name and a search space's vocabulary. A lazy front keeps the public face
(``from monitor import CBPE`` works, ``dir(monitor)`` lists it) and imports
``monitor._cbpe`` when ``CBPE`` is first asked for (PEP 562).

Each front lists its names twice, once for the type checker under ``TYPE_CHECKING``
and once in ``_EXPORTS`` for the runtime; ``tests/test_lazy_fronts.py`` checks that
the two lists agree with each other and with ``__all__``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_front(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose public names are the keys of
    ``exports`` and each value the module that defines it."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        vars(sys.modules[package])[name] = value  # asked once, then a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
