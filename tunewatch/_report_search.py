"""How a version was searched, for its rationale report (:mod:`tunewatch._report`): the
search space the study sampled, the warm-start plan it ran by and the hyperparameter
importances of its trials, read back from the version's stored ``details``.

A version's ``details`` are free JSON (the API, a bundle): every reader here takes odd
values and still builds its section.
"""

from __future__ import annotations

from typing import Any

from tunewatch._report_document import Row, Section, fmt
from tunewatch._version_metadata import finite_float


def mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a mapping, else an empty one: a version's ``details`` are free
    JSON (the API, a bundle), and a report of odd details still builds."""
    return value if isinstance(value, dict) else {}


def sequence(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _shares(value: Any) -> list[tuple[str, float]]:
    """Importance shares (a mapping of parameter to share), largest first; entries that
    are not numbers are left out."""
    pairs = ((str(k), finite_float(v)) for k, v in mapping(value).items())
    return sorted(((k, v) for k, v in pairs if v is not None), key=lambda kv: (-kv[1], kv[0]))


def no_history(details: dict[str, Any], imported: dict[str, Any] | None) -> str:
    """Why a version's plan learned from no earlier study: no job tuned it, the job's
    ``tuning.warm_start`` was ``none``, or there was none to learn from (a version tuned
    before jobs recorded their warm-start mode: only that it learned from none)."""
    record: Any = details if imported is None else imported
    while isinstance(record, dict) and record.get("job") is None:
        record = record.get("via")  # imported from a store that had imported it
    if not isinstance(record, dict):
        return "No tuning job: registered by hand."
    mode = details.get("warm_start_mode")
    if mode == "none":
        return "Warm start off (tuning.warm_start: none)."
    if mode is None:
        return "Cold start: the study learned from no earlier one."
    return "Cold start: no earlier study to learn from."


def space_named(details: dict[str, Any]) -> Any:
    """The search space row: the file a job read, and, for a version that stored the space
    it searched (``details["searched_space"]``), the space's name: the file may have been
    edited since, and the "Searched space" section says what the study sampled."""
    path = details.get("search_space")
    searched = mapping(details.get("searched_space"))
    if not searched:
        return path
    return (
        f"{fmt(searched.get('name'))} (read from {fmt(path)} when the version was tuned; "
        "what the study searched is under Searched space, whatever the file holds now)"
    )


def searched_space(value: Any) -> tuple[Section, ...]:
    """The space the study searched, as :meth:`retune.space.SearchSpace.model_dump` stores
    it (``details["searched_space"]``): a row per parameter, conditional ones with the
    choices they are searched under. None for a version that stored none (tuned before
    versions stored it, or registered by hand)."""
    space = mapping(value)
    if not space:
        return ()
    header = ("parameter", "type", "range or choices", "log", "safe", "searched when")
    return (
        Section(
            "Searched space",
            text=str(space.get("description") or ""),
            rows=(("name", space.get("name")),),
            table=(header, *_param_rows(mapping(space.get("params")), ())),
        ),
    )


def _param_rows(params: dict[str, Any], when: tuple[str, ...]) -> list[tuple[str, ...]]:
    """One row per declaration in ``params``, each followed by its conditional children;
    ``when`` holds the choices the declarations are searched under."""
    rows: list[tuple[str, ...]] = []
    for name, value in params.items():
        decl = mapping(value)
        kind = decl.get("type")
        if kind == "categorical":
            span, log = fmt(sequence(decl.get("choices"))), "—"
        else:
            span, log = _numeric_range(decl), "yes" if decl.get("log") is True else "no"
        safe = decl.get("safe")
        shown = fmt(safe) if kind == "categorical" or not isinstance(safe, list) else _pair(safe)
        rows.append((str(name), fmt(kind), span, log, shown, "; ".join(when) or "—"))
        for key, block in mapping(decl.get("when")).items():
            choices = " or ".join(str(key).split("|"))
            rows += _param_rows(mapping(block), (*when, f"{name} = {choices}"))
    return rows


def _numeric_range(decl: dict[str, Any]) -> str:
    """``[low, high]``, with the grid's step when there is one (an int's step of 1 is
    every integer: not shown)."""
    step = decl.get("step")
    grid = step is not None and not (decl.get("type") == "int" and step == 1)
    return _pair([decl.get("low"), decl.get("high")]) + (f" step {fmt(step)}" if grid else "")


def _pair(bounds: list[Any]) -> str:
    return "[" + ", ".join(fmt(b) for b in bounds) + "]"


def plan_section(value: Any, n_cost_rejected: Any, no_history: str) -> Section:
    """The warm-start plan as :meth:`WarmStartPlan.to_dict <retune.warmstart.WarmStartPlan>`
    stores it: the box (numeric ranges, and the choices a categorical is restricted to),
    frozen values, the history's importances, the cost ceilings and what they rejected;
    ``no_history`` says why, for a plan that learned from no earlier study. A plan of a
    format newer than this release reads (a bundle of a newer release), or of no format
    at all, is not shown: the section says so."""
    plan = mapping(value)
    if not plan:
        return Section("Warm-start plan", text=no_history)
    # imported here: retune.warmstart imports scipy, which the daemon's start-up avoids
    from retune.warmstart import PLAN_FORMAT_VERSION

    unread = _unread_format(plan.get("format_version", PLAN_FORMAT_VERSION), PLAN_FORMAT_VERSION)
    if unread is not None:  # its fields may mean what this release cannot tell
        return Section("Warm-start plan", text=unread)
    box = plan.get("numeric_box")
    bounds: list[tuple[Any, ...]] = [
        (b.get("name", "?"), b.get("low"), b.get("high"), None)
        for b in (box if isinstance(box, list) else [])
        if isinstance(b, dict)
    ]
    bounds += [
        (str(name), None, None, choices if isinstance(choices, list) else str(choices))
        for name, choices in mapping(plan.get("choice_box")).items()
    ]
    history_shares = ", ".join(f"{k} {v:.1%}" for k, v in _shares(plan.get("importances")))
    text = ""
    if not plan.get("history_studies"):
        left_out = any(
            isinstance(n, str) and "tuned for another objective" in n
            for n in sequence(plan.get("notes"))
        )
        text = (
            "Cold start: every earlier study was tuned for another objective (see the notes)."
            if left_out
            else no_history
        )
    return Section(
        "Warm-start plan",
        text=text,
        rows=(
            ("strategies", plan.get("strategies")),
            ("serving-cost ceiling", plan.get("cost") or "none"),
            ("configurations rejected for their serving cost (untrained)", n_cost_rejected),
            ("history studies", plan.get("history_studies")),
            ("history trials", plan.get("n_history_trials")),
            ("importances in the history (fANOVA)", history_shares or "none"),
            ("configurations re-scored first", len(sequence(plan.get("enqueue")))),
            ("explore the full space every n-th trial", plan.get("explore_every")),
            ("frozen", plan.get("frozen") or "none"),
            ("notes", plan.get("notes")),
        ),
        table=(("narrowed parameter", "low", "high", "choices"), *bounds) if bounds else (),
    )


def _unread_format(version: Any, newest: int) -> str | None:
    """Why a plan stored in format ``version`` is not shown, or None when this release
    reads it (a plan stored before plans had a format is read as the first)."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return f"Unreadable plan format: {version!r}, not a whole number from 1 to {newest}."
    if version > newest:
        return (
            f"Stored by a newer release: plan format {version}, this release reads up to "
            f"{newest}; upgrade tunewatch to show it."
        )
    return None


def importances_section(value: Any) -> Section:
    """The tuned study's fANOVA importances (``details["importances"]``, as
    :meth:`retune.StudyImportances.to_dict` stores them), or why there are none."""
    title = "Hyperparameter importances (fANOVA)"
    stored = mapping(value)
    shares = _shares(stored.get("shares"))
    unrated = stored.get("not_rated")
    not_rated: tuple[Row, ...] = (
        (("not rated (not in every completed trial)", unrated),) if unrated else ()
    )
    if not shares:
        reason = stored.get("reason")
        if not isinstance(reason, str) or not reason:
            return Section(title, text="None recorded for this version.")
        return Section(title, text=f"Not computed: {reason.rstrip('.')}.", rows=not_rated)
    n, seed = stored.get("n_complete"), stored.get("seed")
    return Section(
        title,
        rows=(("computed from", f"{fmt(n)} completed trials (seed {fmt(seed)})"), *not_rated),
        table=(("parameter", "share"), *((k, f"{v:.1%}") for k, v in shares)),
    )
