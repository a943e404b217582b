"""The base of every configuration model: frozen, and a misspelt key is an error; and the
longest duration a setting may take."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    # No setting means anything by NaN or an infinity: `.nan` passes every bound (a
    # comparison with NaN is false), `.inf` overflows the arithmetic it meets.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: The longest a duration setting (a cool-down, a schedule, a window) may be: ten years.
#: ``.inf`` or a longer one does not mean "never": it overflows the datetime arithmetic
#: it meets (``timedelta(minutes=...)``, ``now - cooldown``) and fails every run.
MAX_DURATION_S = 10 * 365.25 * 86_400
MAX_DURATION_MINUTES = MAX_DURATION_S / 60
MAX_DURATION_HOURS = MAX_DURATION_S / 3600
MAX_DURATION_DAYS = MAX_DURATION_S / 86_400
