"""Search spaces: YAML-declared, conditional, with safe ranges; and the pipelines they build."""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor._lazy import lazy_front

if TYPE_CHECKING:
    from retune.space._buildable import READ_UNDER, pipeline_parameters
    from retune.space._conditional import reachable
    from retune.space._params import (
        CategoricalParam,
        Choice,
        FloatParam,
        IntParam,
        Param,
        shown,
    )
    from retune.space._pipeline import build_pipeline, fit_pipeline
    from retune.space._space import (
        FORMAT_VERSION,
        SearchSpace,
        Suggester,
        built_parameters,
        load_search_space,
        outside_safe,
        parse_search_space,
    )
    from retune.space._transformers import (
        KBestColumnSelector,
        MissingIndicatorAppender,
        SparseColumnDropper,
    )
    from retune.space._vocabulary import CHOICES, DEFAULTS, KNOWN_PARAMS, is_regression
    from retune.space._yaml import DuplicateKeyError, read_yaml

#: Each public name and the module that defines it, imported on first use.
_EXPORTS: dict[str, str] = {
    "CategoricalParam": "retune.space._params",
    "Choice": "retune.space._params",
    "FloatParam": "retune.space._params",
    "IntParam": "retune.space._params",
    "Param": "retune.space._params",
    "shown": "retune.space._params",
    "CHOICES": "retune.space._vocabulary",
    "DEFAULTS": "retune.space._vocabulary",
    "READ_UNDER": "retune.space._buildable",
    "reachable": "retune.space._conditional",
    "KNOWN_PARAMS": "retune.space._vocabulary",
    "build_pipeline": "retune.space._pipeline",
    "fit_pipeline": "retune.space._pipeline",
    "is_regression": "retune.space._vocabulary",
    "FORMAT_VERSION": "retune.space._space",
    "SearchSpace": "retune.space._space",
    "Suggester": "retune.space._space",
    "built_parameters": "retune.space._space",
    "load_search_space": "retune.space._space",
    "outside_safe": "retune.space._space",
    "parse_search_space": "retune.space._space",
    "pipeline_parameters": "retune.space._buildable",
    "KBestColumnSelector": "retune.space._transformers",
    "MissingIndicatorAppender": "retune.space._transformers",
    "SparseColumnDropper": "retune.space._transformers",
    "DuplicateKeyError": "retune.space._yaml",
    "read_yaml": "retune.space._yaml",
}

__all__ = [
    "CHOICES",
    "DEFAULTS",
    "FORMAT_VERSION",
    "KNOWN_PARAMS",
    "READ_UNDER",
    "CategoricalParam",
    "Choice",
    "DuplicateKeyError",
    "FloatParam",
    "IntParam",
    "KBestColumnSelector",
    "MissingIndicatorAppender",
    "Param",
    "SearchSpace",
    "SparseColumnDropper",
    "Suggester",
    "build_pipeline",
    "built_parameters",
    "fit_pipeline",
    "is_regression",
    "load_search_space",
    "outside_safe",
    "parse_search_space",
    "pipeline_parameters",
    "reachable",
    "read_yaml",
    "shown",
]

__getattr__, __dir__ = lazy_front(__name__, _EXPORTS)
