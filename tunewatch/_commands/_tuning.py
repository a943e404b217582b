"""Re-tuning: queue a job (``retune``), run or join one (``worker``), list them (``jobs``),
cancel one (``cancel``)."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config
from tunewatch._config_file import read_config_text
from tunewatch._errors import ConfigError, ConflictError, NotFoundError
from tunewatch._objective_display import configured_objective, labelled
from tunewatch._signal_safe_set import signal_safe_setter
from tunewatch.store import Store

from ._context import actor_of, config_of, next_page, registry_of, say_held_back
from ._shown import shown


def cmd_worker(args: argparse.Namespace) -> int:
    from tunewatch._launcher import worker_id
    from tunewatch._open_store import open_store
    from tunewatch._parent_watch import stop_with_launcher
    from tunewatch._tuning import TuningJobRunner
    from tunewatch._tuning_results import registered_version
    from tunewatch._worker_priority import lower_priority

    # a crash (SIGSEGV, SIGABRT) writes every thread's traceback to stderr, whose tail the
    # launcher logs; fd 2: sys.stderr may have none
    faulthandler.enable(file=2, all_threads=True)
    _refuse_an_empty_config(args)
    config = config_of(args)
    # before the store opens and tuning starts its threads, which inherit it
    lower_priority(config.tuning.worker_nice)
    store = open_store(config, create=False)
    stop = threading.Event()
    # the job's losses are shown as values of the objective it is tuned for: a ROC AUC of
    # 0.745, not its loss -0.745 (a worker tunes for its configuration's objective)
    objective = _objective_of_job(config, store, args.job)

    if not args.verbose:  # Optuna's line per trial would break the bar on stderr
        logging.getLogger("optuna").setLevel(logging.WARNING)

    def bar(progress: dict[str, Any]) -> None:
        from tunewatch._tuning_progress import budget_note  # loaded with the runner

        done, rejected = _trained(progress)
        total = int(progress.get("max_trials") or 1)
        filled = min(30, 30 * done // max(total, 1))
        best = labelled(progress.get("best_value"), objective)
        print(
            f"\rjob {args.job} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} trials"
            f"{_rejected_note(rejected)}  best {best}{budget_note(progress)}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    try:
        runner = TuningJobRunner(
            store=store,
            config=config,
            artefacts=ArtefactStore(config.artefact_dir, store=store),
            registry=registry_of(config, store),
            worker=worker_id(os.getpid()),
            stop=stop,
        )
        # the launcher stops workers with SIGTERM: finish the running trial, then queue
        # the job again for the next worker to resume
        if threading.current_thread() is threading.main_thread():
            stop_on_sigterm(stop)
            # and a worker it launched stops so when its daemon dies (or has died)
            stop_with_launcher(stop)
        try:
            job = runner.run(args.job, on_progress=bar)
        except ConflictError as exc:
            ended = store.get_job(args.job) if exc.code == "job_finished" else None
            if ended is not None and ended.status == "cancelled":
                # cancelled while queued, after the launcher started this worker: not a
                # failed start
                print(f"job {ended.id} {shown(ended.error)}; not run", file=sys.stderr)
                return 0
            if ended is None or ended.status != "succeeded" or ended.result is None:
                raise
            # a worker started after another finished the job: its outcome is this one's
            print(
                f"job {ended.id} had succeeded already: {ended.model} version "
                f"{ended.result['version']} registered in shadow (study {ended.result['study']})"
            )
            return 0
        # left running by this worker: another one has it (it registered the study's
        # version first and finishes the job, or claimed it since this one was stopped)
        elsewhere = registered_version(store, job) if job.status == "running" else None
    except KeyboardInterrupt:
        # Ctrl-C: the runner queued the job again. Raised on for the entry point, which
        # ends this command as every other: `tunewatch: interrupted`, exit 130
        print(f"\njob {args.job} interrupted: queued again for the next worker", file=sys.stderr)
        raise
    finally:
        store.close()
    print(file=sys.stderr)
    if job.status == "queued":
        print(f"job {job.id} stopped: queued again for the next worker", file=sys.stderr)
        return 0
    if job.status == "cancelled":  # this worker stopped after its running trial
        print(
            f"job {job.id} {shown(job.error)}; this worker stopped after its running trial, "
            "registering nothing",
            file=sys.stderr,
        )
        return 0
    if job.status == "running":
        if elsewhere is not None:
            print(
                f"job {job.id}: {job.model} version {elsewhere.version} of study "
                f"{elsewhere.study} was registered by another worker, which finishes the job"
            )
        elif stop.is_set():
            print(f"job {job.id} stopped: another worker has claimed it since", file=sys.stderr)
        else:
            print(
                f"job {job.id}: another worker is registering its study's version and "
                "finishes the job"
            )
        return 0
    if job.status != "succeeded":
        print(f"job {job.id} {job.status}: {shown(job.error)}", file=sys.stderr)
        return 1
    assert job.result is not None
    # what stopped the study (a budget, no improvement, the space exhausted), which only
    # the job's result said: a study cut short by its wall time read as one run to the end
    stopped = (
        f"; stopped by {shown(job.result['stopped_by'])}" if job.result.get("stopped_by") else ""
    )
    print(
        f"job {job.id} succeeded: {job.model} version {job.result['version']} registered in "
        f"shadow (study {job.result['study']}, {job.result['n_trials']} trials, best "
        f"{labelled(job.result['best_value'], objective)}{stopped})"
    )
    return 0


def stop_on_sigterm(stop: threading.Event) -> None:
    """Have SIGTERM set ``stop`` (call it in the main thread). Through a thread, not in the
    handler: a burst of SIGTERMs (the kernel's, as a killed daemon's threads die) ran the
    handler inside its own ``stop.set()`` and hung the worker
    (:mod:`tunewatch._signal_safe_set`)."""
    set_stop = signal_safe_setter(stop, name="tunewatch-sigterm")
    signal.signal(signal.SIGTERM, lambda signum, frame: set_stop())


def _objective_of_job(config: Config, store: Store, job_id: int) -> str | None:
    """The objective job ``job_id`` is tuned for, or ``None`` for a job that does not exist
    (the runner says so)."""
    try:
        model = store.get_job(job_id).model
    except NotFoundError:
        return None
    return configured_objective(config, store, model)


def _refuse_an_empty_config(args: argparse.Namespace) -> None:
    """Refuse a worker's configuration file that is empty, rather than run on the built-in
    defaults as ``load_config`` reads it. A daemon's workers read the one it wrote for them,
    never empty; read on the defaults, a worker made and migrated a new store under its
    working directory, and exited with "job N does not exist". A file only: a pipe
    (``--config <(...)``) is read once, by ``load_config``."""
    named = args.config if args.config is not None else os.environ.get("TUNEWATCH_CONFIG")
    if not named or not Path(named).is_file():  # config_of says why, or load_config does
        return
    text = read_config_text(Path(named))
    if not text.strip() or _holds_no_document(text):
        raise ConfigError(
            f"configuration file {named} is empty (or comments only): a worker runs on its "
            "daemon's configuration (the worker-config.<pid>.<random>.yaml it wrote in its "
            "data_dir), not the built-in defaults"
        )


def _holds_no_document(text: str) -> bool:
    """Whether YAML ``text`` holds nothing (comments only, an empty document), which
    ``load_config`` reads as the built-in defaults too. Text that does not parse is left
    for ``load_config`` to refuse, with its message: read by its loader (PyYAML's own
    raised datetime's ValueError, a traceback, for a date no calendar has)."""
    import yaml

    from retune.space import read_yaml

    try:
        return read_yaml(text) is None
    except yaml.YAMLError:
        return False


def _trained(progress: dict[str, Any]) -> tuple[int, int]:
    """A job's trials trained, as ``max_trials`` counts them, and those rejected for their
    serving cost (untrained; progress counts them among its ``trials``)."""
    rejected = int(progress.get("cost_rejected") or 0)
    return int(progress.get("trials") or 0) - rejected, rejected


def _rejected_note(rejected: int) -> str:
    return f" (+{rejected} rejected for serving cost)" if rejected else ""


def cmd_retune(args: argparse.Namespace) -> int:
    from tunewatch._actions import Dispatcher
    from tunewatch._open_store import check_stored_models, open_store

    config = config_of(args)
    store = open_store(config, create=False)
    try:
        # as evaluate and compare do: a config the stored model does not fit queued a job
        # that failed (`objective 'rmse' does not apply to binary models`, a cost matrix
        # of another size after the whole study)
        check_stored_models(config, store)
        outcome = Dispatcher(store, config).handle(
            args.model, "manual", {"reason": args.reason}, actor=actor_of(args)
        )
    finally:
        store.close()
    if outcome.job_id is None:
        # nothing queued (the quota, a cool-down, no manual retune configured): a failure,
        # said on stderr, so that stdout holds only a queued job (see the command's help)
        print(outcome.describe(), file=sys.stderr)
        return 1
    print(outcome.describe())
    if outcome.job_id is not None and args.run:
        args.job = outcome.job_id
        return cmd_worker(args)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a queued or running job: exit 0; 1 when it had finished (nothing changed),
    2 for a job that does not exist (``TunewatchError``, said by the entry point)."""
    from tunewatch._open_store import open_store

    store = open_store(config_of(args), create=False)
    try:
        job = store.cancel_job(args.job, actor=actor_of(args), reason=args.reason)
    except ConflictError as exc:
        if exc.code != "job_finished":
            raise
        print(f"tunewatch: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()
    # cancelled while running: its workers see it at their next check between trials
    then = f"; its worker {job.worker} stops after its running trial" if job.worker else ""
    # the error holds the reason as given: one sent to the API may hold escape sequences
    print(f"job {job.id} {shown(job.error)}{then}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from tunewatch._open_store import open_store

    store = open_store(config_of(args), create=False)
    try:
        if args.model is not None:
            store.get_model(args.model)  # NotFoundError: "not registered" rather than nothing
        # one more than --limit: whether it held older jobs back
        rows = store.list_jobs(model=args.model, limit=args.limit + 1, before_id=args.before_id)
    finally:
        store.close()
    for j in rows[: args.limit]:  # newest first
        progress = j.progress
        trained, rejected = _trained(progress)
        done = f"{trained}/{progress.get('max_trials', '?')} trials{_rejected_note(rejected)}"
        # the error holds a cancel reason or a worker's stderr as given, and the trigger
        # what its caller sent: shown escaped, each job stays one row
        extra = (
            shown(j.error)
            if j.error
            else (f"-> v{j.result['version']}" if j.result else shown(progress.get("phase", "")))
        )
        event = shown(j.trigger.get("event"))
        print(f"{j.id:<5} {shown(j.model):<16} {j.status:<10} {done:<14} {event} {extra}")
    if len(rows) > args.limit:
        of = "" if args.model is None else f" of {shown(args.model)}"
        listed = f"newest jobs{of}"
        if args.before_id is not None:
            listed = f"jobs{of} before job {args.before_id}"
        say_held_back(f"{args.limit} {listed} shown", see=next_page(rows[args.limit - 1].id))
    return 0
