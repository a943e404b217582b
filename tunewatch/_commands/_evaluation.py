"""Evaluating and comparing a model: ``evaluate`` and its evaluations by kind (``drift``,
``decay``, ``estimate``, ``labels``, ``telemetry``), ``compare`` and ``comparisons``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING
from urllib.parse import quote

from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config
from tunewatch._policies import stored_decision

from ._context import actor_of, config_of, next_page, say_held_back

if TYPE_CHECKING:
    from tunewatch.comparison import ComparisonRunner
    from tunewatch.store import Store
    from tunewatch.store._comparisons import ComparisonLookRow


#: The events ``evaluate`` ends with: the model's newest, a summary.
_EVENTS_SHOWN = 5


def _summary(kind: str, payload: dict[str, object]) -> str:
    keys = {
        "drift": ("alarm", "drifted_share", "drifted_columns", "rule", "n_current"),
        "decay": (
            "alarm",
            "status",
            "objective",
            "slope_per_day",
            "slope_ci",
            "projected_crossing",
            "recommended_retune_interval_days",
        ),
        "estimate": ("alarm", "metric", "estimated", "ci", "realised", "reference", "n"),
        "labels": ("alarm", "coverage", "n_matured", "labelled_so_far", "median_delay_s", "n"),
        "telemetry": ("versions",),
    }.get(kind, tuple(payload))
    return ", ".join(f"{k}={payload.get(k)}" for k in keys if k in payload) or str(
        payload.get("reason", "")
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from monitor import ServingMetrics
    from tunewatch._actions import Dispatcher
    from tunewatch._evaluation import Evaluator
    from tunewatch._open_store import check_stored_models, open_store

    config = config_of(args)
    store = open_store(config, create=False)
    try:
        check_stored_models(config, store)  # as the daemon does when it starts
        metrics = ServingMetrics()
        evaluator = Evaluator(
            store=store,
            artefacts=ArtefactStore(config.artefact_dir, store=store),
            config=config,
            metrics=metrics,
            dispatcher=Dispatcher(store, config, metrics=metrics),
        )
        for row in evaluator.evaluate(args.model, actor=actor_of(args)):
            print(f"{row.kind:<10} {row.status:<17} {_summary(row.kind, row.payload)}")
            policy = stored_decision(row.payload)
            if policy is not None:
                print(f"  {policy}")
        # the newest few as a summary, and one more: whether it held older ones back
        events = store.list_events(model=args.model, limit=_EVENTS_SHOWN + 1)
    finally:
        store.close()
    for event in events[:_EVENTS_SHOWN]:
        print(f"event {event.created_at:%Y-%m-%d %H:%M:%S}Z {event.type} {event.payload}")
    if len(events) > _EVENTS_SHOWN:
        say_held_back(
            f"the {_EVENTS_SHOWN} newest events of {args.model} shown",
            see=f"GET /v1/events?model={quote(args.model)}"
            f"&before_id={events[_EVENTS_SHOWN - 1].id} or the dashboard's events page",
        )
    return 0


def cmd_show_evaluations(args: argparse.Namespace) -> int:
    from tunewatch._open_store import open_store

    store = open_store(config_of(args), create=False)
    try:
        # NotFoundError: "not registered" rather than "none yet"
        task = store.get_model(args.model).task
        if args.version is not None:
            store.get_version(args.model, args.version)  # likewise for an unknown version
        # one more than --limit: whether it held older evaluations back; --version: the
        # evaluations of that version, per kind (a telemetry run is of every version it
        # measured: Store.list_evaluations)
        rows = store.list_evaluations(
            args.model,
            kind=args.command,
            version=args.version,
            before_id=args.before_id,
            limit=args.limit + 1,
        )
    finally:
        store.close()
    for row in rows[: args.limit]:  # newest first, one line each: what its policy did last
        decided = stored_decision(row.payload)
        print(
            f"{row.window_end:%Y-%m-%d %H:%M:%S}Z v{row.version} {row.status:<17} "
            f"{_summary(row.kind, row.payload)}{'' if decided is None else '; ' + decided}"
        )
    of = args.model if args.version is None else f"{args.model} version {args.version}"
    # past --before-id: the rows listed after that evaluation, older
    after = "" if args.before_id is None else f" listed after evaluation {args.before_id}"
    if not rows and args.command == "estimate" and task != "binary":
        # not "none yet": none is coming (tunewatch._evaluation runs it for binary models)
        print(
            f"no estimate evaluations of {of}: the label-free accuracy estimate (CBPE) "
            f"applies to binary models only, and {args.model} is a {task} model"
        )
    elif not rows:
        print(f"no {args.command} evaluations of {of}{after or ' yet'}")
    elif len(rows) > args.limit:
        newest = "newest " if args.before_id is None else ""
        say_held_back(
            f"{args.limit} {newest}{args.command} evaluations of {of}{after} shown",
            see=next_page(rows[args.limit - 1].id),
        )
    return 0


def _comparison_runner(config: Config, store: Store) -> ComparisonRunner:
    from monitor import ServingMetrics
    from tunewatch._actions import Dispatcher
    from tunewatch.comparison import ComparisonRunner

    metrics = ServingMetrics()
    return ComparisonRunner(
        store, config, dispatcher=Dispatcher(store, config, metrics=metrics), metrics=metrics
    )


def _look_line(look: ComparisonLookRow) -> str:
    return (
        f"n={look.n} estimate={look.estimate} ci=[{look.ci_low}, {look.ci_high}] "
        f"p={look.p_value:.4g} adjusted_p={look.adjusted_p_value:.4g} ({look.correction}, "
        f"k={look.family_size}) {look.decision}"
    )


def cmd_compare(args: argparse.Namespace) -> int:
    from tunewatch._open_store import check_stored_models, open_store

    config = config_of(args)
    requested_by = actor_of(args)  # named in what a promotion or rollback of the run records
    store = open_store(config, create=False)
    try:
        check_stored_models(config, store)
        runner = _comparison_runner(config, store)
        results = runner.run(args.model, requested_by=requested_by)
        for r in results:
            look = _look_line(r.look) if r.look is not None else "no new labelled requests"
            print(
                f"{r.kind:<14} v{r.challenger_version} vs v{r.champion_version} "
                f"{r.status:<8} fed={r.fed} {look} action={r.action}"
            )
            for line in r.detail:
                print(f"  {line}")
        if not results:
            print(f"nothing to compare for {args.model} (no shadow challengers or watch)")
        print("a running daemon reloads a changed lineup within scoring.refresh_s")
    finally:
        store.close()
    return 0


def cmd_comparisons(args: argparse.Namespace) -> int:
    from tunewatch._open_store import open_store

    config = config_of(args)
    store = open_store(config, create=False)
    try:
        runner = _comparison_runner(config, store)
        if args.challenger is not None:
            # the newest --limit looks and one more (the oldest of them, held back if it
            # is past the limit), printed oldest first as the evidence grew
            looks = runner.history(args.model, args.challenger, limit=args.limit + 1)
            for look in looks[-args.limit :]:
                print(
                    f"{look.created_at:%Y-%m-%d %H:%M:%S}Z v{look.champion_version} "
                    f"{_look_line(look)}"
                )
            if not looks:
                print(f"no looks at {args.model} version {args.challenger} yet")
            elif len(looks) > args.limit:
                say_held_back(
                    f"{args.limit} newest looks of {args.model} version {args.challenger} shown"
                )
            return 0
        items = runner.summary(args.model)
        for item in items:
            t = item.test
            latest = _look_line(item.look) if item.look is not None else "no looks yet"
            print(
                f"{t.kind:<14} v{t.challenger_version} vs v{t.champion_version} {t.status:<8} "
                f"{latest}"
            )
            if item.guardrails is not None and not item.guardrails.passed:
                print(f"  guardrails: {'; '.join(item.guardrails.violations)}")
            if t.outcome:
                print(f"  outcome: {t.outcome}")
        if not items:
            print(f"no comparisons of {args.model} yet")
    finally:
        store.close()
    return 0
