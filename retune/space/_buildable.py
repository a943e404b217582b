"""What the pipeline builds from a parameter set, and the check that a search space
holds only points it builds as recorded.

:mod:`retune.space._pipeline` turns each numeric parameter into an ``int`` or a
``float`` of a domain (:data:`_DOMAINS`, as scikit-learn's ``_parameter_constraints``
validate it) and reads some parameters only under some choices (:data:`READ_UNDER`).
:func:`built_parameters` fills a recorded set in as the pipeline builds it;
:func:`check_buildable` refuses a space with a name, a choice or a number the pipeline
does not take, which would load, and fail (or train another model than the one
recorded) in every trial that drew it, or one declaring a parameter no point of it reads
(which trials drew, recorded and promotion checked for a model that did not have it).
Neither imports scikit-learn.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from retune._errors import SearchSpaceError
from retune.space._conditional import reachable, walk
from retune.space._params import CategoricalParam, Choice, FloatParam, IntParam, Param
from retune.space._vocabulary import CHOICES, DEFAULTS, KNOWN_PARAMS, REGRESSORS, _resolve


@dataclass(frozen=True)
class _Domain:
    """The values a numeric pipeline parameter may take: ``integer`` when the pipeline
    builds it with ``int()`` (a fraction would be recorded but not trained), between
    ``low`` and ``high`` (open ends excluded)."""

    integer: bool
    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def broken_rule(self, value: float) -> str | None:
        """The rule ``value`` breaks (``">= 1"``), or ``None`` if it is in the domain."""
        if value < self.low or (self.low_open and value == self.low):
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if value > self.high or (self.high_open and value == self.high):
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return None


#: The most trees a boosted model or a forest may have, and the deepest tree. A trial runs
#: to the end of its fit (``wall_time_s`` is checked between trials), and a forest's ONNX
#: session grows with its trees (100 trees of unbounded depth measured ~194 MiB, so 1000
#: are of the order of 2 GiB). Boosting fits one tree after another (~50 s for 200 on 45k
#: rows measured, so 2000 of the order of 8 minutes a fit). A depth of 32 leaves room for
#: 4 billion leaves: a deeper bound bounds nothing. Shipped spaces stop at 200 trees, depth 12.
MAX_GB_TREES = 2000
MAX_FOREST_TREES = 1000
MAX_DEPTH = 32

#: Each numeric parameter's domain, as :mod:`retune.space._pipeline` builds it and as the
#: step it reaches validates it (scikit-learn's ``_parameter_constraints``), the tree
#: counts and depths capped as above.
_DOMAINS: dict[str, _Domain] = {
    "drop_threshold": _Domain(integer=False, low=0.0, high=1.0),  # a share of missing values
    "select_k": _Domain(integer=True, low=1),  # SelectKBest keeps >= 1 column
    "C": _Domain(integer=False, low=0.0, low_open=True),  # LogisticRegression: (0, inf)
    "alpha": _Domain(integer=False, low=0.0),  # Ridge: [0, inf)
    "gb_n_estimators": _Domain(integer=True, low=1, high=MAX_GB_TREES),
    "gb_max_depth": _Domain(integer=True, low=1, high=MAX_DEPTH),
    "gb_learning_rate": _Domain(integer=False, low=0.0),
    "gb_subsample": _Domain(integer=False, low=0.0, high=1.0, low_open=True),  # (0, 1]
    "forest_n_estimators": _Domain(integer=True, low=1, high=MAX_FOREST_TREES),
    "forest_max_depth": _Domain(integer=True, low=1, high=MAX_DEPTH),
    "forest_min_samples_leaf": _Domain(integer=True, low=1),  # a count: built with int()
}


_GB = frozenset({"gradient_boosting", "gradient_boosting_regressor"})
_FORESTS = frozenset(
    {"random_forest", "extra_trees", "random_forest_regressor", "extra_trees_regressor"}
)

#: The parameters a pipeline reads only under some choices, as
#: :mod:`retune.space._pipeline` builds its steps and estimators: ``name: (choice's
#: parameter, the values that read it)``. Every other name is read by every pipeline.
READ_UNDER: dict[str, tuple[str, frozenset[str]]] = {
    "drop_threshold": ("missing", frozenset({"drop_columns"})),
    "select_k": ("selector", frozenset({"k_best"})),
    "class_weight": ("estimator", frozenset(CHOICES["estimator"]) - REGRESSORS),
    "C": ("estimator", frozenset({"logistic"})),
    "alpha": ("estimator", frozenset({"ridge"})),
    "gb_n_estimators": ("estimator", _GB),
    "gb_max_depth": ("estimator", _GB),
    "gb_learning_rate": ("estimator", _GB),
    "gb_subsample": ("estimator", _GB),
    "forest_n_estimators": ("estimator", _FORESTS),
    "forest_max_depth": ("estimator", _FORESTS),
    "forest_min_samples_leaf": ("estimator", _FORESTS),
}


def built_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as the pipeline builds them: the recorded names as recorded (read by
    the pipeline or not), plus the default (:data:`DEFAULTS`) of each name left out that
    the pipeline reads under the choices made, an absent choice at its default.
    ``{"estimator": "gradient_boosting"}`` gains ``gb_subsample`` (1.0) and
    ``class_weight`` (``none``), not ``C``, which only ``logistic`` reads; ``{"C": 2.0}``
    gains ``class_weight``, since the pipeline builds the default ``logistic``. A set the
    pipeline would not build (a name outside its vocabulary, a choice it does not take)
    raises :class:`SearchSpaceError`."""
    resolved = _resolve(params)
    out = dict(params)
    for name, value in resolved.items():
        reader = READ_UNDER.get(name)
        if name not in out and (reader is None or resolved[reader[0]] in reader[1]):
            out[name] = value
    return out


def pipeline_parameters(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pipeline ``params`` build, as a hyperparameter set's identity: every name the
    pipeline reads under the choices made, at its recorded value or its default, none it
    does not read, each number as the pipeline casts it (a count an ``int``, any other
    number a ``float``, ``-0.0`` as ``0.0``). ``{"estimator": "logistic", "C": 1}``, a
    demo space's ``{..., "scaler": "none", "C": 1.0}`` and a wider space's record of the
    same point are one pipeline, and the same parameters.

    ``None`` for a set that does not say it is the pipeline's, or that the pipeline would
    not build as recorded, whose own spelling is its identity: one naming no
    ``estimator`` (``{"alpha": 5000.0}``, registered by hand for a regressor, read as the
    default logistic model, was one set with ``{"alpha": 1.0}``), a name outside the
    vocabulary (a model trained elsewhere), a choice the pipeline does not take, a number
    written otherwise than as a number, a fraction of a count, or a number beyond a
    float where the pipeline reads a float.

    Changing a default (:data:`DEFAULTS`) or a domain's type changes the identity of the
    sets that leave the name out or spell it otherwise: stored ids are re-keyed by a
    store migration (as revision 0027 of ``tunewatch.store`` does)."""
    if "estimator" not in params:
        return None
    try:
        resolved = _resolve(params)
    except SearchSpaceError:
        return None
    built: dict[str, Any] = {}
    for name, value in resolved.items():
        reader = READ_UNDER.get(name)
        if reader is not None and resolved[reader[0]] not in reader[1]:
            continue  # not read under the choices made
        domain = _DOMAINS.get(name)
        if domain is None:
            built[name] = value
            continue
        number = _number(value, integer=domain.integer)
        if number is None:
            return None
        built[name] = number
    return built


def _number(value: Any, *, integer: bool) -> int | float | None:
    """``value`` as the pipeline casts a number of a domain: a count an exact ``int``
    (however large: the pipeline caps it), any other number a ``float``, ``-0.0`` as
    ``0.0``; ``None`` for a bool, a non-number, a fraction of a count, or an integer
    beyond a float where a float is read."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if integer:
        if isinstance(value, int):
            return value
        return int(value) if value.is_integer() else None
    try:
        return float(value) + 0.0  # -0.0 + 0.0 is 0.0
    except OverflowError:
        return None


def check_buildable(params: Mapping[str, Param]) -> None:
    """Raise :class:`SearchSpaceError` for a name the pipeline does not have, a choice
    it does not take, a number outside the parameter's domain (:data:`_DOMAINS`), a
    ``class_weight`` that can meet a regressor, or a parameter no point drawing it reads
    (:data:`READ_UNDER`): it loaded, and every trial (or every one that drew the value)
    failed, trained another model than the one recorded, or recorded a value the model
    does not have (which promotion then checked against its safe range).

    ``params`` are a space's declarations; an error's ``path`` starts with ``params``."""
    for name, path, decl in walk(params, "params"):
        if name not in KNOWN_PARAMS:
            near = difflib.get_close_matches(name, KNOWN_PARAMS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise SearchSpaceError(
                f"{name!r} is not a parameter of the pipeline{hint}, one of {sorted(KNOWN_PARAMS)}",
                path=path,
            )
        known = CHOICES.get(name)
        if known is not None and not isinstance(decl, CategoricalParam):
            raise SearchSpaceError(
                f"`{name}` takes {list(known)}: declare it categorical, got type: {decl.type}",
                path=path,
            )
        if not isinstance(decl, CategoricalParam):
            continue
        if known is not None:
            unknown = [c for c in decl.choices if not (isinstance(c, str) and c in known)]
            if unknown:
                raise SearchSpaceError(
                    f"`{name}` takes {list(known)}, got {unknown}", path=f"{path}.choices"
                )
            continue
        text = [
            c
            for c in decl.choices
            if isinstance(c, bool)
            or not isinstance(c, int | float)
            or (isinstance(c, float) and not math.isfinite(c))
        ]
        if text:
            raise SearchSpaceError(f"`{name}` takes a number, got {text}", path=f"{path}.choices")
    for name, path, decl in walk(params, "params"):
        _check_domain(name, path, decl)
    _check_class_weight(params)
    _check_read(params, params, "params", ())


def _check_domain(name: str, path: str, decl: IntParam | FloatParam | CategoricalParam) -> None:
    """Raise :class:`SearchSpaceError` unless every value ``decl`` can draw is in the
    domain of ``name``: an integer where the pipeline builds one, within its bounds."""
    domain = _DOMAINS.get(name)
    if domain is None:  # a categorical of the vocabulary, checked by its choices
        return
    if isinstance(decl, CategoricalParam):
        values = [c for c in decl.choices if isinstance(c, int | float)]  # numbers: checked
        fractions = [c for c in values if not isinstance(c, int)]
        if domain.integer and fractions:
            raise SearchSpaceError(
                f"`{name}` is built as an integer: its choices must be integers, got {fractions}",
                path=f"{path}.choices",
            )
        broken = [(c, rule) for c in values if (rule := domain.broken_rule(c)) is not None]
        if broken:
            rule = broken[0][1]
            raise SearchSpaceError(
                f"`{name}` choices must be {rule}, got {[c for c, r in broken if r == rule]}",
                path=f"{path}.choices",
            )
        return
    if domain.integer and isinstance(decl, FloatParam):
        raise SearchSpaceError(
            f"`{name}` is built as an integer: declare it type: int, got type: {decl.type}",
            path=path,
        )
    for field in ("low", "high"):
        value = getattr(decl, field)
        rule = domain.broken_rule(value)
        if rule is not None:
            raise SearchSpaceError(
                f"`{name}` {field} must be {rule}, got {value}", path=f"{path}.{field}"
            )


def _check_class_weight(params: Mapping[str, Param]) -> None:
    """Raise :class:`SearchSpaceError` if a point of the space declaring ``params`` can
    weight classes (``class_weight`` other than ``none``) with a regressor, which the
    pipeline refuses."""
    where = {name: path for name, path, _ in walk(params, "params")}
    if "class_weight" not in where:
        return
    paired: set[Choice] = set()
    weights: set[Choice] = set()
    for combo in reachable(params, frozenset({"class_weight", "estimator"})):
        point = dict(combo)
        weight = point.get("class_weight", DEFAULTS["class_weight"])
        estimator = point.get("estimator", DEFAULTS["estimator"])
        if weight != "none" and estimator in REGRESSORS:
            weights.add(weight)
            paired.add(estimator)
    if paired:
        raise SearchSpaceError(
            f"`class_weight` applies to classifiers only, but the space can pair "
            f"{', '.join(sorted(map(repr, weights)))} with the regressor(s) "
            f"{sorted(map(str, paired))}; declare it under the classifiers' `estimator.when` "
            "choices, or leave it out",
            path=where["class_weight"],
        )


#: A declaration's branch: the ``(parent, labels of the choices opening it)`` of each
#: ``when`` it sits under, outermost first.
_Branch = tuple[tuple[str, frozenset[str]], ...]


def _check_read(
    space: Mapping[str, Param], params: Mapping[str, Param], path: str, branch: _Branch
) -> None:
    """Raise :class:`SearchSpaceError` for a declaration of ``params`` (a block of
    ``space`` under ``branch``, at key path ``path``) that the pipeline reads only under
    some choices (:data:`READ_UNDER`) none of the points drawing it builds, a parent a
    point does not reach at the pipeline's default: `C` beside `estimator:
    [gradient_boosting]`, `select_k` with no `k_best` selector."""
    for name, decl in params.items():
        here = f"{path}.{name}"
        reader = READ_UNDER.get(name)
        if reader is not None:
            parent, readers = reader
            built = _built_choices(space, branch, parent)
            if not built & readers:
                raise SearchSpaceError(
                    f"`{name}` is read only where {parent} is one of {sorted(readers)}, which "
                    f"no point drawing it picks (they build {parent} {sorted(built)}); declare "
                    f"it under `{parent}.when` of one of them, or leave it out",
                    path=here,
                )
        if isinstance(decl, CategoricalParam):
            for key, block in decl.when.items():
                opened = ((name, frozenset(key.split("|"))),)
                _check_read(space, block, f"{here}.when.{key}", branch + opened)


def _built_choices(space: Mapping[str, Param], branch: _Branch, parent: str) -> set[str]:
    """The values of the vocabulary choice ``parent`` the pipeline builds at the points of
    ``space`` inside ``branch`` (the default where a point does not reach ``parent``)."""
    names = frozenset({parent, *(name for name, _ in branch)})
    built: set[str] = set()
    for combo in reachable(space, names):
        point = dict(combo)
        if all(name in point and str(point[name]) in labels for name, labels in branch):
            built.add(str(point.get(parent, DEFAULTS[parent])))
    return built
