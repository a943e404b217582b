"""A search space: parameter declarations loaded once from YAML into frozen models.

Parameter names are one flat namespace (conditional ones included), so a parameter
set is a plain ``{name: value}`` mapping, the same shape Optuna stores. Sampling goes
through :class:`Suggester` (an Optuna trial fits it), so this module knows no tuner.

This module is the front: :class:`SearchSpace`, :func:`parse_search_space` and
:func:`load_search_space`. It delegates the walk over conditional declarations to
:mod:`retune.space._conditional`, and what the pipeline builds (each numeric
parameter's domain, :func:`built_parameters`, the check that a space holds only points
the pipeline builds as recorded) to :mod:`retune.space._buildable`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from retune._errors import SearchSpaceError
from retune.space._buildable import _DOMAINS as _DOMAINS  # re-exported: tests read it here
from retune.space._buildable import built_parameters as built_parameters
from retune.space._buildable import check_buildable
from retune.space._conditional import add_active, fill_parents, walk
from retune.space._params import (
    CategoricalParam,
    Choice,
    FloatParam,
    IntParam,
    Param,
    shown,
)
from retune.space._vocabulary import CHOICES, DEFAULTS, _resolve
from retune.space._yaml import DuplicateKeyError, read_yaml

FORMAT_VERSION = 1


class Suggester(Protocol):
    """What sampling needs from a trial (``optuna.Trial`` has this shape)."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int, log: bool) -> int: ...

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None, log: bool
    ) -> float: ...

    def suggest_categorical(self, name: str, choices: tuple[Choice, ...]) -> Choice: ...


def outside_safe(
    name: str,
    value: Any,
    *,
    choices: Sequence[Any] | None = None,
    bounds: tuple[float, float] | None = None,
) -> str | None:
    """What is wrong with ``value`` of parameter ``name`` against its ``safe:`` declaration
    (``choices`` of a categorical parameter, ``bounds`` of a numeric one), ``None`` when it
    is safe: as :meth:`SearchSpace.outside_safe_ranges` says it, and a daemon's stored copy
    of those declarations is checked (a value that is not a number is outside a numeric
    range)."""
    shown = f"`{name}` = {value!r}"
    if choices is not None:
        return None if value in choices else f"{shown} is not a safe choice {list(choices)}"
    if bounds is None:
        return None
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{shown} is not a number, so not in its safe range [{low}, {high}]"
    if not low <= value <= high:
        return f"{shown} is outside its safe range [{low}, {high}]"
    return None


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
        for name, path, _ in walk(self.params, "params"):
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
        return {name: param for name, _, param in walk(self.params, "params")}

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
        add_active(self.params, params, out)
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
            if name not in declared and name in CHOICES and value != DEFAULTS[name]:
                return None  # the space builds the default choice instead
        values = dict(params)
        if not fill_parents(self.params, values):
            return None
        active = self.active(values)
        for name, value in params.items():
            if name in declared and name not in active and name in CHOICES:
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
            if isinstance(decl, CategoricalParam):
                problem = outside_safe(name, value, choices=decl.safe)
            else:
                problem = outside_safe(name, value, bounds=(decl.safe[0], decl.safe[1]))
            if problem is not None:
                problems.append(problem)
        return problems

    # -- sampling ------------------------------------------------------------------
    def sample(self, suggester: Suggester) -> dict[str, Any]:
        """Draw one point, parents before their conditional children."""
        out: dict[str, Any] = {}
        _sample(self.params, suggester, out)
        return out


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
    check_buildable(space.params)
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


def load_search_space(path: str | Path) -> SearchSpace:
    """Read a search-space YAML file (see ``configs/search_spaces/binary_tabular.yaml``);
    a key given twice in a mapping is an error.

    A file whose text is unchanged is parsed once per process (a daemon loads its models'
    spaces for their safe ranges and for every approval rule it checks: ~5 ms of CPU a
    parse of the shipped space), so callers share the frozen space returned."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SearchSpaceError(f"cannot read search space {str(path)!r}: {exc}") from exc
    return _parsed(text, str(path))


@functools.lru_cache(maxsize=64)
def _parsed(text: str, path: str) -> SearchSpace:
    """The space ``text``, read from ``path``, holds (a refusal is raised, not kept)."""
    try:
        data = read_yaml(text)
    except DuplicateKeyError as exc:
        raise SearchSpaceError(exc.detail, path=exc.path) from exc
    except yaml.YAMLError as exc:
        raise SearchSpaceError(f"cannot read search space {path!r}: {exc}") from exc
    except RecursionError as exc:  # PyYAML recurses once per level of nesting
        raise SearchSpaceError(
            f"cannot read search space {path!r}: nested deeper than the YAML reader can "
            "follow (a few hundred levels of `[`, `{` or indentation; a search space needs "
            "fewer than ten)"
        ) from exc
    if not isinstance(data, dict):
        raise SearchSpaceError(f"search space {path!r} must be a mapping at the top level")
    return parse_search_space(data)
