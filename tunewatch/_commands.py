"""The ``tunewatch`` command line's handlers: each takes the parsed arguments (see
:func:`tunewatch._cli.build_parser`) and returns the process's exit status."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunewatch._artefacts import ArtefactStore
from tunewatch._auth import check_role, hash_token, new_token
from tunewatch._config import Config, load_config
from tunewatch._errors import TunewatchError
from tunewatch._registry import Reference, Registry, VersionMetadata, feature_names_from

if TYPE_CHECKING:
    from tunewatch.comparison import ComparisonRunner
    from tunewatch.store import Store
    from tunewatch.store._comparisons import ComparisonLookRow


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config or os.environ.get("TUNEWATCH_CONFIG"))


def _actor(args: argparse.Namespace) -> str:
    """``--actor`` (checked by the parser), else ``$USER`` if the audit log can hold it."""
    from tunewatch.store import MAX_ACTOR_LENGTH, valid_actor

    if args.actor:
        return str(args.actor)
    user = os.environ.get("USER") or "cli"
    if not valid_actor(user):
        raise TunewatchError(
            f"$USER must be 1 to {MAX_ACTOR_LENGTH} printable characters to name the actor, "
            f"got {len(user)} characters: {user!r:.60}; pass --actor",
            code="invalid_argument",
        )
    return user


def _shown(text: str) -> str:
    """``text`` as a line of output shows it: as it is when printable, else quoted with
    its control characters escaped, so that no stored name (one from before names had to
    be printable) starts a line of its own."""
    return text if text.isprintable() else repr(text)


def _registry(config: Config, store: Store) -> Registry:
    return Registry(
        store,
        ArtefactStore(config.artefact_dir),
        memory_limit_bytes=config.scoring.candidate_memory_limit_mb * 1024 * 1024,
        timeout_s=config.scoring.candidate_timeout_s,
        regulated_models=[m.name for m in config.models if m.regulated],
        check_features=config.check_drift_columns,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from tunewatch._daemon import serve

    serve(_config(args), host=args.host, port=args.port)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from tunewatch._daemon import open_store
    from tunewatch.store import redact_url

    config = _config(args)
    open_store(config).close()
    print(f"store at {redact_url(config.store_url)} is at the latest schema")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from tunewatch._daemon import open_store
    from tunewatch._governance import check_champion_registration

    config = _config(args)
    store = open_store(config)
    try:
        registry = _registry(config, store)
        hyperparameters = json.loads(args.hyperparameters) if args.hyperparameters else {}
        if not isinstance(hyperparameters, dict):
            raise TunewatchError("--hyperparameters must be a JSON object", code="invalid_argument")
        metadata = VersionMetadata(
            task=args.task,
            feature_names=feature_names_from(args.features),
            hyperparameters=hyperparameters,
            dataset_version=args.dataset_version,
        )
        if args.stage == "champion":
            check_champion_registration(
                store,
                config,
                args.model,
                task=args.task,
                regulated=None,
                hyperparameters=hyperparameters,
            )
        reference = None
        if args.reference:
            reference = Reference.from_bytes(Path(args.reference).read_bytes())
        row = registry.register(
            args.model,
            Path(args.file).read_bytes(),
            metadata,
            actor=_actor(args),
            stage=args.stage,
            reference=reference,
        )
    finally:
        store.close()
    print(
        f"registered {row.model} version {row.version} ({row.stage}), "
        f"sha256 {row.artefact_sha256[:12]}, hyperparameter set {row.hyperparameter_set_id[:12]}"
    )
    print("a running daemon picks it up on restart or via the API registration route")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from tunewatch._daemon import open_store
    from tunewatch._governance import promote

    config = _config(args)
    store = open_store(config)
    try:
        outcome = promote(
            store, config, args.model, args.version, actor=_actor(args), reason=args.reason
        )
    finally:
        store.close()
    if outcome.approval is not None:
        a = outcome.approval
        print(
            f"promotion of {a.model} version {a.version} waits for an approver "
            f"(request {a.id}): {'; '.join(a.rules)}"
        )
        print(f"another person runs: tunewatch approve {a.id} --reason '...'")
        return 0
    assert outcome.champion is not None
    was = f" (was version {outcome.previous.version})" if outcome.previous else ""
    print(f"{outcome.champion.model} version {outcome.champion.version} is champion{was}")
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    from tunewatch._daemon import open_store

    store = open_store(_config(args))
    try:
        decided, promoted = store.decide_approval(
            args.approval,
            approver=_actor(args),
            approve=args.command == "approve",
            reason=args.reason,
        )
    finally:
        store.close()
    print(f"approval {decided.id} {decided.status} by {decided.decided_by}")
    if promoted is not None:
        print(f"{promoted[0].model} version {promoted[0].version} is champion")
    elif args.command == "approve":  # closed unpromoted: the champion changed since
        print(
            f"tunewatch: error: {decided.model} version {decided.version} was "
            f"{decided.decision_reason}",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from tunewatch._daemon import open_store

    store = open_store(_config(args))
    try:
        restored, rolled = store.rollback(args.model, actor=_actor(args), reason=args.reason)
    finally:
        store.close()
    print(
        f"{restored.model} version {restored.version} is champion again; "
        f"version {rolled.version} rolled back"
    )
    return 0


def cmd_approvals(args: argparse.Namespace) -> int:
    from tunewatch._daemon import open_store

    store = open_store(_config(args))
    try:
        for a in store.list_approvals(status=args.status):
            print(
                f"{a.id:<5} {a.model} v{a.version:<4} {a.status:<9} by {_shown(a.requested_by)}: "
                f"{'; '.join(a.rules)}"
            )
    finally:
        store.close()
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from tunewatch._daemon import open_store

    store = open_store(_config(args))
    try:
        for model in store.list_models():
            print(f"{model.name}  task={model.task}  features={len(model.feature_names)}")
            for v in store.list_versions(model.name):
                print(
                    f"  v{v.version:<4} {v.stage:<11} hp={v.hyperparameter_set_id[:12]} "
                    f"sha256={v.artefact_sha256[:12]} created={v.created_at:%Y-%m-%d %H:%M}"
                )
    finally:
        store.close()
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from tunewatch._daemon import open_store

    store = open_store(_config(args))
    try:
        entries = store.audit_log(limit=args.limit)
        broken = store.verify_audit()
    finally:
        store.close()
    for e in reversed(entries):  # oldest of them first, as the chain runs
        # json.dumps escapes what the details (reasons) hold
        details = json.dumps(e.details, sort_keys=True) if e.details else ""
        print(
            f"{e.id:>6}  {e.at:%Y-%m-%d %H:%M:%S}  {_shown(e.actor)}  {_shown(e.action)}  "
            f"{_shown(e.target)}  {details}"
        )
    if broken is not None:
        print(f"audit chain broken ({broken.kind}): {broken.message}")
        return 1
    print("audit chain intact")
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    from tunewatch._daemon import open_store

    actor = _actor(args)
    store = open_store(_config(args))
    try:
        if args.action == "create":
            token = new_token()
            row = store.add_token(
                name=args.name,
                role=check_role(args.role),
                token_hash=hash_token(token),
                actor=actor,
            )
            print(token)
            print(
                f"token {row.name!r} ({row.role}) created; it is shown only once", file=sys.stderr
            )
        elif args.action == "revoke":
            row = store.revoke_token(args.name, actor=actor)
            print(f"token {row.name!r} revoked")
        else:
            for t in store.list_tokens():
                state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
                print(f"{_shown(t.name):<30} {t.role:<13} {state}")
    finally:
        store.close()
    return 0


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
        "labels": ("alarm", "coverage", "median_delay_s", "n_labelled", "n"),
        "telemetry": ("versions",),
    }.get(kind, tuple(payload))
    return ", ".join(f"{k}={payload.get(k)}" for k in keys if k in payload) or str(
        payload.get("reason", "")
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from monitor import ServingMetrics
    from tunewatch._actions import Dispatcher
    from tunewatch._daemon import open_store
    from tunewatch._evaluation import Evaluator

    config = _config(args)
    store = open_store(config)
    try:
        metrics = ServingMetrics()
        evaluator = Evaluator(
            store=store,
            artefacts=ArtefactStore(config.artefact_dir),
            config=config,
            metrics=metrics,
            dispatcher=Dispatcher(store, config, metrics=metrics),
        )
        for row in evaluator.evaluate(args.model):
            print(f"{row.kind:<10} {row.status:<17} {_summary(row.kind, row.payload)}")
        for event in store.list_events(model=args.model, limit=5):
            print(f"event {event.created_at:%Y-%m-%d %H:%M:%S} {event.type} {event.payload}")
    finally:
        store.close()
    return 0


def cmd_show_evaluations(args: argparse.Namespace) -> int:
    from tunewatch._daemon import open_store

    store = open_store(_config(args))
    try:
        store.get_model(args.model)  # NotFoundError: "not registered" rather than "none yet"
        rows = store.list_evaluations(
            args.model, kind=args.command, version=args.version, limit=args.limit
        )
        for row in rows:
            print(
                f"{row.window_end:%Y-%m-%d %H:%M:%S} v{row.version} {row.status:<17} "
                f"{_summary(row.kind, row.payload)}"
            )
        if not rows:
            print(f"no {args.command} evaluations of {args.model} yet")
    finally:
        store.close()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import os

    from tunewatch._daemon import open_store
    from tunewatch._launcher import worker_id
    from tunewatch._tuning import TuningJobRunner

    config = _config(args)
    store = open_store(config)
    stop = threading.Event()

    def bar(progress: dict[str, Any]) -> None:
        done, total = int(progress.get("trials") or 0), int(progress.get("max_trials") or 1)
        filled = min(30, 30 * done // max(total, 1))
        best = progress.get("best_value")
        print(
            f"\rjob {args.job} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} trials"
            f"  best {best if best is None else f'{best:.4f}'}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    try:
        runner = TuningJobRunner(
            store=store,
            config=config,
            artefacts=ArtefactStore(config.artefact_dir),
            registry=_registry(config, store),
            worker=worker_id(os.getpid()),
            stop=stop,
        )
        # the launcher stops workers with SIGTERM: finish the running trial, then queue
        # the job again for the next worker to resume
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        job = runner.run(args.job, on_progress=bar)
    except KeyboardInterrupt:
        print(f"\njob {args.job} interrupted: queued again for the next worker", file=sys.stderr)
        return 130
    finally:
        store.close()
    print(file=sys.stderr)
    if job.status == "queued":
        print(f"job {job.id} stopped: queued again for the next worker", file=sys.stderr)
        return 0
    if job.status != "succeeded":
        print(f"job {job.id} {job.status}: {job.error}", file=sys.stderr)
        return 1
    assert job.result is not None
    print(
        f"job {job.id} succeeded: {job.model} version {job.result['version']} registered in "
        f"shadow (study {job.result['study']}, {job.result['n_trials']} trials, best "
        f"{job.result['best_value']:.4f})"
    )
    return 0


def cmd_retune(args: argparse.Namespace) -> int:
    from tunewatch._actions import Dispatcher
    from tunewatch._daemon import open_store

    config = _config(args)
    store = open_store(config)
    try:
        outcome = Dispatcher(store, config).handle(
            args.model, "manual", {"reason": args.reason}, actor=_actor(args)
        )
    finally:
        store.close()
    print(outcome.describe())
    if outcome.job_id is not None and args.run:
        args.job = outcome.job_id
        return cmd_worker(args)
    return 0 if outcome.status in ("taken", "duplicate") else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    from tunewatch._daemon import open_store

    store = open_store(_config(args))
    try:
        if args.model is not None:
            store.get_model(args.model)  # NotFoundError: "not registered" rather than nothing
        for j in store.list_jobs(model=args.model, limit=args.limit):
            progress = j.progress
            done = f"{progress.get('trials', 0)}/{progress.get('max_trials', '?')} trials"
            extra = j.error or (
                f"-> v{j.result['version']}" if j.result else progress.get("phase", "")
            )
            print(
                f"{j.id:<5} {j.model:<16} {j.status:<10} {done:<14} {j.trigger.get('event')}"
                f" {extra}"
            )
    finally:
        store.close()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tunewatch._bundle import export_bundle
    from tunewatch._daemon import open_store

    config = _config(args)
    store = open_store(config)
    try:
        written = export_bundle(
            store,
            ArtefactStore(config.artefact_dir),
            config,
            args.model,
            args.path,
            versions=args.version,
        )
    finally:
        store.close()
    print(f"exported {args.model} versions {written} to {args.path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    import yaml

    from tunewatch._bundle import import_bundle
    from tunewatch._daemon import open_store

    config = _config(args)
    store = open_store(config)
    try:
        model, imported, model_config = import_bundle(
            store,
            _registry(config, store),
            config,
            args.path,
            actor=_actor(args),
            max_artefact_bytes=config.server.max_artefact_bytes,
            name=args.name,
        )
    finally:
        store.close()
    for i in imported:
        state = "already present" if i.already_present else i.stage
        print(f"{model} v{i.source_version} -> v{i.version} ({state})")
    if args.config_out and model_config is not None:
        model_config["name"] = model
        Path(args.config_out).write_text(
            yaml.safe_dump({"models": [model_config]}, sort_keys=False), encoding="utf-8"
        )
        print(f"the model's config from the bundle is in {args.config_out}: merge it into yours")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tunewatch._daemon import open_store
    from tunewatch._report import build_report, write_report

    config = _config(args)
    store = open_store(config)
    try:
        md, page = write_report(store, config, args.model, args.version)
        if args.print:
            print(build_report(store, config, args.model, args.version).markdown())
    finally:
        store.close()
    print(f"wrote {md} and {page}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tunewatch._demo import run_demo

    return run_demo(data_dir=Path(args.data_dir), seed=args.seed)


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
    from tunewatch._daemon import open_store

    config = _config(args)
    store = open_store(config)
    try:
        runner = _comparison_runner(config, store)
        results = runner.run(args.model)
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
    from tunewatch._daemon import open_store

    config = _config(args)
    store = open_store(config)
    try:
        runner = _comparison_runner(config, store)
        if args.challenger is not None:
            for look in runner.history(args.model, args.challenger, limit=args.limit):
                print(
                    f"{look.created_at:%Y-%m-%d %H:%M:%S} v{look.champion_version} "
                    f"{_look_line(look)}"
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
