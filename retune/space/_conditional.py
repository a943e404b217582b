"""Walking a space's conditional parameters: a categorical declaration's ``when`` nests
the parameters one of its choices opens, so a space is a tree of declarations.

These functions read that tree for :class:`~retune.space._space.SearchSpace` and for
the checks of :mod:`retune.space._buildable`: every declaration with its key path, the
declarations a point's choices reach, the parent choices a point lacks (given the
pipeline's defaults), and the combinations of choices one point can hold.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from retune.space._params import CategoricalParam, Choice, FloatParam, IntParam, Param
from retune.space._vocabulary import DEFAULTS


def walk(
    params: Mapping[str, Param], path: str
) -> Iterator[tuple[str, str, IntParam | FloatParam | CategoricalParam]]:
    """Every declaration of ``params``, conditional ones included, as ``(name, key path,
    declaration)``, parents before their children; ``path`` is the key path of ``params``."""
    for name, decl in params.items():
        here = f"{path}.{name}"
        yield name, here, decl
        if isinstance(decl, CategoricalParam):
            for key, block in decl.when.items():
                yield from walk(block, f"{here}.when.{key}")


def add_active(
    params: Mapping[str, Param],
    values: Mapping[str, Any],
    out: dict[str, IntParam | FloatParam | CategoricalParam],
) -> None:
    """Add to ``out`` the declarations of ``params`` that exist for the choices made in
    ``values``, parents before their children."""
    for name, decl in params.items():
        out[name] = decl
        if isinstance(decl, CategoricalParam) and name in values and decl.contains(values[name]):
            add_active(decl.children(values[name]), values, out)


def fill_parents(params: Mapping[str, Param], values: dict[str, Any]) -> bool:
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
        if decl.contains(values[name]) and not fill_parents(decl.children(values[name]), values):
            return False
    return True


def reachable(
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
            options.update(own | sub for sub in reachable(decl.children(choice), names))
        combos = {a | b for a in combos for b in options}
    return combos
