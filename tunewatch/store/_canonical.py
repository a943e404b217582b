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


def set_identity(params: Mapping[str, Any]) -> dict[str, Any]:
    """What a hyperparameter set is, which its id hashes and the store keeps as the set's
    parameters: the pipeline ``params`` build (:func:`retune.space.pipeline_parameters`:
    every name the pipeline reads, at its recorded value or default, each number as the
    pipeline casts it), or ``params`` as recorded when they do not say they are the
    pipeline's or it would not build them so (no ``estimator`` named, a model trained
    elsewhere, ``{}``). One pipeline had one id per spelling: per search space that tuned
    it, by hand, and ``C: 1`` apart from ``C: 1.0``. Revision 0027 re-keys the sets stored
    before; each version keeps its own record."""
    from retune.space import pipeline_parameters  # the store opens without retune's cost

    built = pipeline_parameters(params)
    return dict(params) if built is None else built


def hyperparameter_set_id(params: Mapping[str, Any]) -> str:
    """The id of the hyperparameter set ``params`` record: sha256 hex of the canonical
    JSON of :func:`set_identity`."""
    return hashlib.sha256(canonical_json(set_identity(params)).encode("utf-8")).hexdigest()


def json_roundtrip(obj: Any) -> Any:
    """``obj`` as it will read back from a JSON column (tuples→lists, keys→str)."""
    return json.loads(canonical_json(obj))
