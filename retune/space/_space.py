"""A search space: parameter declarations loaded once from YAML into frozen models.

Parameter names are one flat namespace (conditional ones included), so a parameter
set is a plain ``{name: value}`` mapping, the same shape Optuna stores. Sampling goes
through :class:`Suggester` (an Optuna trial fits it), so this module knows no tuner.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from retune._errors import SearchSpaceError
from retune.space._params import (
    CategoricalParam,
    Choice,
    FloatParam,
    IntParam,
    Param,
    shown,
)
from retune.space._vocabulary import _CHOICES, DEFAULTS, KNOWN_PARAMS, REGRESSORS, _resolve
from retune.space._yaml import DuplicateKeyError, read_yaml

FORMAT_VERSION = 1


class Suggester(Protocol):
    """What sampling needs from a trial (``optuna.Trial`` has this shape)."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int, log: bool) -> int: ...

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None, log: bool
    ) -> float: ...

    def suggest_categorical(self, name: str, choices: tuple[Choice, ...]) -> Choice: ...


class SearchSpace(BaseModel):
    """A validated, frozen search space. Build it with :func:`load_search_space`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = 1
    name: str
    description: str = ""
    params: dict[str, Param]

    @model_validator(mode="after")
    def _unique_names(self) -> SearchSpace:
        seen: dict[str, str] = {}
        for name, path, _ in _walk(self.params, "params"):
            if name in seen:
                raise ValueError(
                    f"parameter names must be unique across the whole space: {name!r} is "
                    f"declared at {seen[name]} and at {path}"
                )
            seen[name] = path
        return self

    # -- structure -----------------------------------------------------------------
    def declarations(self) -> dict[str, IntParam | FloatParam | CategoricalParam]:
        """Every parameter (conditional ones included) by name."""
        return {name: param for name, _, param in _walk(self.params, "params")}

    def branches(self) -> list[tuple[str, Choice]]:
        """Every ``(parameter, choice)`` that opens conditional parameters (an estimator
        family, a selector with its ``k``), parents before their children."""
        out: list[tuple[str, Choice]] = []
        for name, decl in self.declarations().items():
            if isinstance(decl, CategoricalParam):
                out.extend((name, c) for c in decl.choices if decl.children(c))
        return out

    def active(
        self, params: Mapping[str, Any]
    ) -> dict[str, IntParam | FloatParam | CategoricalParam]:
        """The declarations that exist for the choices made in ``params``."""
        out: dict[str, IntParam | FloatParam | CategoricalParam] = {}
        _active(self.params, params, out)
        return out

    # -- checks --------------------------------------------------------------------
    def check(self, params: Mapping[str, Any]) -> None:
        """Raise :class:`SearchSpaceError` unless ``params`` is exactly one point of the space."""
        active = self.active(params)
        missing = sorted(set(active) - set(params))
        extra = sorted(set(params) - set(active))
        if missing or extra:
            raise SearchSpaceError(
                f"parameters do not fit space {self.name!r}: missing {missing}, unexpected {extra}"
            )
        for name, decl in active.items():
            if not decl.contains(params[name]):
                raise SearchSpaceError(
                    f"`{name}` must be {_describe(decl)}, got {params[name]!r}", path=name
                )

    def project(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """``params`` restricted to this space, or ``None`` if a value is invalid here.

        ``params`` is read as the pipeline built it (absent names took :data:`DEFAULTS`).
        A parent choice the space gained (a choice that opens conditional parameters, such
        as ``estimator``) takes its default, so the history's children stay under it; a
        configuration whose default the space does not offer is invalid. A choice the
        space dropped (the pipeline builds its default then) is removed when it held its
        default, and makes the set invalid otherwise: a ``gradient_boosting`` winner is
        not the logistic model the space builds. A choice the space declares only under
        another branch than the configuration's is read alike, since the space builds its
        default there (``class_weight`` moved under ``estimator: logistic``: a
        ``gradient_boosting`` configuration that weighted its classes is invalid). Other
        parameters the space no longer has are dropped, and those it gained are left out
        (a sampler fills them). A number between grid points (the parameter gained a
        ``step``) moves to the nearest one, and a float past a bound by rounding to the
        bound (a configuration Optuna accepts as it is); a value outside its declaration
        (a removed choice, a bound that moved past it) makes the whole set invalid.
        """
        declared = self.declarations()
        for name, value in params.items():
            if name not in declared and name in _CHOICES and value != DEFAULTS[name]:
                return None  # the space builds the default choice instead
        values = dict(params)
        if not _fill_parents(self.params, values):
            return None
        active = self.active(values)
        for name, value in params.items():
            if name in declared and name not in active and name in _CHOICES:
                if value != DEFAULTS[name]:
                    return None  # declared under another branch: built at its default here
        out: dict[str, Any] = {}
        for name, decl in active.items():
            if name not in values:
                continue
            value = values[name]
            if isinstance(decl, FloatParam) or not decl.contains(value):
                if isinstance(decl, CategoricalParam):
                    return None
                # a float always: one past a bound by rounding comes back as that bound
                value = decl.snap(value)
                if value is None:
                    return None
            out[name] = value
        return out

    def outside_safe_ranges(self, params: Mapping[str, Any]) -> list[str]:
        """One message per recorded parameter whose value lies outside its safe range (a
        value that is not a number counts as outside a numeric one).

        Every name ``params`` records is checked against its declaration, whichever
        branch declares it: ``{"C": 1000.0}`` names no estimator, and the pipeline would
        build the default ``logistic`` one with C = 1000 (checked only under a recorded
        ``logistic``, it passed). A name not recorded is not checked: a tuned version
        records every parameter it was built with, and one registered by hand records
        what it describes (filling in the pipeline's defaults read a regression model's
        ``{}`` as the ``logistic`` estimator, never a safe regression choice). A set the
        pipeline would not build (a name outside its vocabulary such as ``model__C``, a
        choice it does not take) raises :class:`SearchSpaceError`: its safe ranges cannot
        be read, and it is not safe.
        """
        _resolve(params)  # refuses what the pipeline would not build
        declared = self.declarations()
        problems: list[str] = []
        for name, value in params.items():
            decl = declared.get(name)
            if decl is None or decl.safe is None:
                continue
            shown = f"`{name}` = {value!r}"
            if isinstance(decl, CategoricalParam):
                if value not in decl.safe:
                    problems.append(f"{shown} is not a safe choice {list(decl.safe)}")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(
                    f"{shown} is not a number, so not in its safe range "
                    f"[{decl.safe[0]}, {decl.safe[1]}]"
                )
            elif not decl.safe[0] <= value <= decl.safe[1]:
                problems.append(
                    f"{shown} is outside its safe range [{decl.safe[0]}, {decl.safe[1]}]"
                )
        return problems

    # -- sampling ------------------------------------------------------------------
    def sample(self, suggester: Suggester) -> dict[str, Any]:
        """Draw one point, parents before their conditional children."""
        out: dict[str, Any] = {}
        _sample(self.params, suggester, out)
        return out


def _walk(
    params: Mapping[str, Param], path: str
) -> Iterator[tuple[str, str, IntParam | FloatParam | CategoricalParam]]:
    for name, decl in params.items():
        here = f"{path}.{name}"
        yield name, here, decl
        if isinstance(decl, CategoricalParam):
            for key, block in decl.when.items():
                yield from _walk(block, f"{here}.when.{key}")


def _active(
    params: Mapping[str, Param],
    values: Mapping[str, Any],
    out: dict[str, IntParam | FloatParam | CategoricalParam],
) -> None:
    for name, decl in params.items():
        out[name] = decl
        if isinstance(decl, CategoricalParam) and name in values and decl.contains(values[name]):
            _active(decl.children(values[name]), values, out)


def _fill_parents(params: Mapping[str, Param], values: dict[str, Any]) -> bool:
    """Give each parent choice ``values`` lacks (one with conditional children, reached by
    the choices made) the pipeline's default, parents before their children; ``False``
    when that default is not one of its choices."""
    for name, decl in params.items():
        if not isinstance(decl, CategoricalParam) or not decl.when:
            continue
        if name not in values:
            if name not in DEFAULTS or not decl.contains(DEFAULTS[name]):
                return False
            values[name] = DEFAULTS[name]
        if decl.contains(values[name]) and not _fill_parents(decl.children(values[name]), values):
            return False
    return True


def _sample(params: Mapping[str, Param], s: Suggester, out: dict[str, Any]) -> None:
    for name, decl in params.items():
        if isinstance(decl, IntParam):
            out[name] = s.suggest_int(name, decl.low, decl.high, step=decl.step, log=decl.log)
        elif isinstance(decl, FloatParam):
            out[name] = s.suggest_float(name, decl.low, decl.high, step=decl.step, log=decl.log)
        else:
            value = s.suggest_categorical(name, decl.choices)
            out[name] = value
            _sample(decl.children(value), s, out)


def _describe(decl: IntParam | FloatParam | CategoricalParam) -> str:
    if isinstance(decl, CategoricalParam):
        return f"one of {list(decl.choices)}"
    kind = "an integer" if isinstance(decl, IntParam) else "a finite number"
    stepped = decl.step != 1 if isinstance(decl, IntParam) else decl.step is not None
    grid = f" on the grid of step {decl.step} from {decl.low}" if stepped else ""
    return f"{kind} in [{decl.low}, {decl.high}]{grid}"


def parse_search_space(data: Mapping[str, Any]) -> SearchSpace:
    """Validate a mapping (parsed YAML) into a :class:`SearchSpace` of the pipeline's
    vocabulary (:data:`KNOWN_PARAMS`, the choices a categorical parameter such as
    ``scaler`` takes, each numeric parameter's type and domain, and ``class_weight`` only
    beside classifiers), so a space loads only if the pipeline can build its every point
    as recorded.

    Errors are :class:`SearchSpaceError` whose ``path`` is the key path of the first
    problem, e.g. ``params.estimator.when.logistic.C.low``.
    """
    version = data.get("format_version", FORMAT_VERSION) if isinstance(data, Mapping) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise SearchSpaceError(
            f"format_version {version} is newer than this tunewatch understands "
            f"({FORMAT_VERSION}); upgrade tunewatch to read it",
            path="format_version",
        )
    try:
        space = SearchSpace.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SearchSpaceError(
            f"{first['msg']} (input {shown(first.get('input'))})"
            + (f"; {exc.error_count() - 1} more error(s)" if exc.error_count() > 1 else ""),
            path=_key_path(first["loc"]),
        ) from None  # chained, a traceback rendered pydantic's whole input (aliases expanded)
    _check_vocabulary(space)
    return space


#: The tags pydantic puts in an error's location after a parameter's name (its ``type``).
_TAGS = frozenset({"int", "float", "categorical"})


def _key_path(loc: tuple[int | str, ...]) -> str:
    """The key path in the file of a pydantic error location, without the tag of the
    parameter type (``...gb_max_depth.int.low`` is ``...gb_max_depth.low``) or the names of
    validator functions."""
    out: list[str] = []
    state = "top"  # what the next part is: top | name | tag | field | key
    for part in (str(p) for p in loc if not str(p).startswith("function-")):
        if state == "tag":
            state = "field"
            if part in _TAGS:
                continue
        out.append(part)
        if state == "top":
            state = "name" if part == "params" else "rest"
        elif state == "name":
            state = "tag"
        elif state == "field":
            state = "key" if part == "when" else "rest"
        elif state == "key":
            state = "name"
    return ".".join(out)


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


#: Each numeric parameter's domain, as :mod:`retune.space._pipeline` builds it and as the
#: step it reaches validates it (scikit-learn's ``_parameter_constraints``).
_DOMAINS: dict[str, _Domain] = {
    "drop_threshold": _Domain(integer=False, low=0.0, high=1.0),  # a share of missing values
    "select_k": _Domain(integer=True, low=1),  # SelectKBest keeps >= 1 column
    "C": _Domain(integer=False, low=0.0, low_open=True),  # LogisticRegression: (0, inf)
    "alpha": _Domain(integer=False, low=0.0),  # Ridge: [0, inf)
    "gb_n_estimators": _Domain(integer=True, low=1),
    "gb_max_depth": _Domain(integer=True, low=1),
    "gb_learning_rate": _Domain(integer=False, low=0.0),
    "gb_subsample": _Domain(integer=False, low=0.0, high=1.0, low_open=True),  # (0, 1]
    "forest_n_estimators": _Domain(integer=True, low=1),
    "forest_max_depth": _Domain(integer=True, low=1),
    "forest_min_samples_leaf": _Domain(integer=True, low=1),  # a count: built with int()
}


_GB = frozenset({"gradient_boosting", "gradient_boosting_regressor"})
_FORESTS = frozenset(
    {"random_forest", "extra_trees", "random_forest_regressor", "extra_trees_regressor"}
)

#: The parameters a pipeline reads only under some choices, as
#: :mod:`retune.space._pipeline` builds its steps and estimators: ``name: (choice's
#: parameter, the values that read it)``. Every other name is read by every pipeline.
_READ_UNDER: dict[str, tuple[str, frozenset[str]]] = {
    "drop_threshold": ("missing", frozenset({"drop_columns"})),
    "select_k": ("selector", frozenset({"k_best"})),
    "class_weight": ("estimator", frozenset(_CHOICES["estimator"]) - REGRESSORS),
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
        reader = _READ_UNDER.get(name)
        if name not in out and (reader is None or resolved[reader[0]] in reader[1]):
            out[name] = value
    return out


def _check_vocabulary(space: SearchSpace) -> None:
    """Raise :class:`SearchSpaceError` for a name the pipeline does not have, a choice
    it does not take, a number outside the parameter's domain (:data:`_DOMAINS`) or a
    ``class_weight`` that can meet a regressor: it loaded, and every trial (or every one
    that drew the value) failed, or trained another model than the one recorded."""
    for name, path, decl in _walk(space.params, "params"):
        if name not in KNOWN_PARAMS:
            near = difflib.get_close_matches(name, KNOWN_PARAMS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise SearchSpaceError(
                f"{name!r} is not a parameter of the pipeline{hint}, one of {sorted(KNOWN_PARAMS)}",
                path=path,
            )
        known = _CHOICES.get(name)
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
    for name, path, decl in _walk(space.params, "params"):
        _check_domain(name, path, decl)
    _check_class_weight(space)


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


def _check_class_weight(space: SearchSpace) -> None:
    """Raise :class:`SearchSpaceError` if a point of ``space`` can weight classes
    (``class_weight`` other than ``none``) with a regressor, which the pipeline refuses."""
    where = {name: path for name, path, _ in _walk(space.params, "params")}
    if "class_weight" not in where:
        return
    paired: set[Choice] = set()
    weights: set[Choice] = set()
    for combo in _reachable(space.params, frozenset({"class_weight", "estimator"})):
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


def _reachable(
    params: Mapping[str, Param], names: frozenset[str]
) -> set[frozenset[tuple[str, Choice]]]:
    """Every combination of choices of the categorical ``names`` that one point of
    ``params`` can hold (a name a point does not reach is absent from its combination)."""
    combos: set[frozenset[tuple[str, Choice]]] = {frozenset()}
    for name, decl in params.items():
        if not isinstance(decl, CategoricalParam):
            continue
        options: set[frozenset[tuple[str, Choice]]] = set()
        for choice in decl.choices:
            own = frozenset({(name, choice)}) if name in names else frozenset()
            options.update(own | sub for sub in _reachable(decl.children(choice), names))
        combos = {a | b for a in combos for b in options}
    return combos


def load_search_space(path: str | Path) -> SearchSpace:
    """Read a search-space YAML file (see ``configs/search_spaces/binary_tabular.yaml``);
    a key given twice in a mapping is an error."""
    try:
        data = read_yaml(Path(path).read_text(encoding="utf-8"))
    except DuplicateKeyError as exc:
        raise SearchSpaceError(exc.detail, path=exc.path) from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SearchSpaceError(f"cannot read search space {str(path)!r}: {exc}") from exc
    except RecursionError as exc:  # PyYAML recurses once per level of nesting
        raise SearchSpaceError(
            f"cannot read search space {str(path)!r}: nested deeper than the YAML reader can "
            "follow (a few hundred levels of `[`, `{` or indentation; a search space needs "
            "fewer than ten)"
        ) from exc
    if not isinstance(data, dict):
        raise SearchSpaceError(f"search space {str(path)!r} must be a mapping at the top level")
    return parse_search_space(data)
