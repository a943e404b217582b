"""The base of every configuration model: frozen, and a misspelt key is an error; and the
longest duration a setting may take."""

from __future__ import annotations

from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError


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
