"""Canonical JSON: the one serialisation used for content ids and audit hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def canonical_json(obj: Any) -> str:
    """Serialise ``obj`` deterministically: sorted keys, no whitespace, no NaN/Infinity.

    Floats are written as Python's shortest round-tripping ``repr``, so the text (and
    any hash of it) is stable across processes and machines. Raises ``ValueError`` for
    non-finite floats and ``TypeError`` for values JSON cannot represent.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def hyperparameter_set_id(params: Mapping[str, Any]) -> str:
    """The id of a hyperparameter set: sha256 hex of its canonical JSON."""
    return hashlib.sha256(canonical_json(dict(params)).encode("utf-8")).hexdigest()


def json_roundtrip(obj: Any) -> Any:
    """``obj`` as it will read back from a JSON column (tuples→lists, keys→str)."""
    return json.loads(canonical_json(obj))
