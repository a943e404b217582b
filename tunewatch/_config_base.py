"""The base of every configuration model: frozen, a misspelt key is an error, a number
setting refuses a flag and an integer one takes a 64-bit integer; and the longest duration
a setting may take."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

#: The integers a setting may take: a 64-bit signed integer's, as SQLite's INTEGER and
#: PostgreSQL's BIGINT keep one. ``window_rows: 9223372036854775808`` (2**63) loaded, and
#: every evaluation failed with "Python int too large to convert to SQLite INTEGER".
MIN_INT64, MAX_INT64 = -(2**63), 2**63 - 1

#: The keys of an error's context that carry where inside a field's value it was found
#: (``cost_matrix.0.1`` of ``objective.params``) and the item found there:
#: :func:`tunewatch._config_errors.format_errors` adds the one to the field's key path and
#: shows the other, as for an item pydantic checks itself.
WITHIN, WITHIN_INPUT = "within", "within_input"


def error_within(
    kind: str, message: str, at: Sequence[str | int], item: object
) -> PydanticCustomError:
    """Error ``kind`` saying ``message`` about ``item``, found at ``at`` inside a field's
    value (the value itself when ``at`` is empty)."""
    if not at:
        return PydanticCustomError(kind, message)
    return PydanticCustomError(kind, message, {WITHIN: ".".join(map(str, at)), WITHIN_INPUT: item})


class Frozen(BaseModel):
    # No setting means anything by NaN or an infinity: `.nan` passes every bound (a
    # comparison with NaN is false), `.inf` overflows the arithmetic it meets.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_flag_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """A number setting refuses ``true`` and ``false``, which pydantic reads as 1 and 0:
        ``port: true`` was port 1."""
        if (
            isinstance(value, bool)
            and info.field_name is not None
            and _takes_a_number(cls.model_fields[info.field_name].annotation)
        ):
            raise PydanticCustomError("number_type", "Input should be a number, not a flag")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _a_64_bit_integer(cls, value: Any) -> Any:
        """An integer, anywhere in a setting's value (a safe range's ``choices``), is a
        64-bit one. Refused after the field's own bounds (``port`` says its own), before
        its model's rules read it."""
        found = first_item(value, _past_64_bits)
        if found is not None:
            at, number = found
            bound = f"at most {MAX_INT64}" if number > MAX_INT64 else f"at least {MIN_INT64}"
            raise error_within("int64", f"Input should be a 64-bit integer, {bound}", at, number)
        return value


def _past_64_bits(item: Any) -> bool:
    return (
        isinstance(item, int) and not isinstance(item, bool) and not MIN_INT64 <= item <= MAX_INT64
    )


def first_item(
    value: Any, test: Callable[[Any], bool], at: tuple[str | int, ...] = ()
) -> tuple[tuple[str | int, ...], Any] | None:
    """The first item of ``value`` (itself, or one in the lists and mappings it nests, at
    any depth) that passes ``test``, and where it is (``("cost_matrix", 0, 1)``); a nested
    model is not entered, checked as it was built."""
    if test(value):
        return at, value
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = first_item(item, test, (*at, key))
        if found is not None:
            return found
    return None


def _takes_a_number(annotation: Any) -> bool:
    """Whether a field of this type takes a number and not a flag."""
    if annotation in (int, float):
        return True
    args = get_args(annotation)
    if get_origin(annotation) is Literal:
        return any(type(arg) in (int, float) for arg in args)
    if get_origin(annotation) in (Union, UnionType):
        return bool not in args and any(_takes_a_number(arg) for arg in args)
    return False


#: The longest a duration setting (a cool-down, a schedule, a window) may be: ten years.
#: ``.inf`` or a longer one does not mean "never": it overflows the datetime arithmetic
#: it meets (``timedelta(minutes=...)``, ``now - cooldown``) and fails every run.
MAX_DURATION_S = 10 * 365.25 * 86_400
MAX_DURATION_MINUTES = MAX_DURATION_S / 60
MAX_DURATION_HOURS = MAX_DURATION_S / 3600
MAX_DURATION_DAYS = MAX_DURATION_S / 86_400
