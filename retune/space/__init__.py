"""Search spaces: YAML-declared, conditional, with safe ranges; and the pipelines they build."""

from __future__ import annotations

from retune.space._params import CategoricalParam, Choice, FloatParam, IntParam, Param
from retune.space._pipeline import (
    DEFAULTS,
    KNOWN_PARAMS,
    build_pipeline,
    fit_pipeline,
    is_regression,
)
from retune.space._space import (
    FORMAT_VERSION,
    SearchSpace,
    Suggester,
    built_parameters,
    load_search_space,
    parse_search_space,
)
from retune.space._transformers import (
    KBestColumnSelector,
    MissingIndicatorAppender,
    SparseColumnDropper,
)
from retune.space._yaml import DuplicateKeyError, read_yaml

__all__ = [
    "DEFAULTS",
    "FORMAT_VERSION",
    "KNOWN_PARAMS",
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
    "parse_search_space",
    "read_yaml",
]
