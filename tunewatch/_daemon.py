"""Composition root: builds the store, runtime, registry, auth and web app from a Config."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from sqlalchemy.engine import make_url

from monitor import ServingMetrics
from tunewatch._actions import Dispatcher
from tunewatch._approval_rules import store_configured_safe_ranges
from tunewatch._artefact_sweep import start_sweep
from tunewatch._artefacts import ArtefactStore
from tunewatch._auth import Authenticator
from tunewatch._bootstrap_token import ensure_bootstrap_token, warn_of_bootstrap_lookalikes
from tunewatch._config import Config
from tunewatch._errors import TunewatchError, os_reason
from tunewatch._evaluation import Evaluator
from tunewatch._heap import freeze_startup_heap
from tunewatch._launcher import STALE_HEARTBEATS, JobLauncher
from tunewatch._open_store import check_stored_models, open_store, warn_of_unlisted_models
from tunewatch._outage_log import OutageLog
from tunewatch._recorder import Recorder
from tunewatch._registry import Registry
from tunewatch._report import refresh_reports
from tunewatch._runtime import ScoringRuntime
from tunewatch._scheduler import PerModelJob, Scheduler, Task
from tunewatch._standing_schedule import OWED_RETRY_S, StandingSchedule, schedule_of
from tunewatch._worker_config_file import WorkerConfigFile
from tunewatch.api import AppContext, create_asgi
from tunewatch.api._alert_shutdown import WebhookStop
from tunewatch.api._front import InferenceFront
from tunewatch.comparison import ComparisonRunner
from tunewatch.store import Store
from tunewatch.store._write_deadline import WRITE_DEADLINE_MARGIN_S

logger = logging.getLogger(__name__)


def request_grace_s(config: Config) -> int:
    """How long requests in flight at SIGTERM get to be answered before uvicorn cancels
    them (40 s with the default ``store.lock_timeout_s``, 30 s).

    A scoring request is answered once its records are committed, and a commit waits up
    to the store's lock timeout for a lock (on PostgreSQL at most the write's client-side
    deadline, :data:`WRITE_DEADLINE_MARGIN_S` more): given 5 s past that, a request held up
    by another process's lock ends in its acknowledgement or the recorder's 503
    ``store_unavailable``. Cancelled (in 10 s, before), it got uvicorn's text/plain 500 and
    a traceback in the log, while its record could still be committed as the recorder
    closed: a retry was then refused as a duplicate.
    """
    return math.ceil(config.store.lock_timeout_s + WRITE_DEADLINE_MARGIN_S) + 5


def warn_of_unshared_tuning_storage(config: Config, store: Store) -> None:
    """On a store other hosts share, warn when the Optuna storage is the default file under
    this host's ``data_dir``: a replica or worker elsewhere (a new leader after a failover)
    cannot resume or warm-start from the studies tuned here."""
    if store.dialect == "sqlite" or config.tuning.storage_url is not None:
        return
    logger.warning(
        "tuning.storage_url is unset: studies go to %s on this host only; replicas and "
        "workers on other hosts cannot join or learn from them — set tuning.storage_url to "
        "a storage every host shares (PostgreSQL, or a journal file on shared storage)",
        make_url(config.tuning_storage_url).database,
    )


class Daemon:
    """One tunewatch process: its store, artefacts, scoring runtime and HTTP app."""

    def __init__(
        self,
        config: Config,
        *,
        env: Mapping[str, str] | None = None,
        recording: bool = True,
        shadowing: bool = True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        # ``now``: the wall clock the scheduled jobs count their runs by (and the refresh
        # loop times an outage by)
        self.config = config
        self.store = open_store(config)
        with contextlib.ExitStack() as refused:  # no store left open behind an error
            refused.callback(self.store.close)
            check_stored_models(config, self.store)
            warn_of_unlisted_models(config, self.store)
            ensure_bootstrap_token(self.store, os.environ if env is None else env)
            warn_of_bootstrap_lookalikes(self.store)
            refused.pop_all()
        self.artefacts = ArtefactStore(config.artefact_dir, store=self.store)
        shared = share_cached_artefacts(self.store, self.artefacts)
        if shared:
            logger.info("kept %d artefacts cached here in the store, for every host", shared)
        self.metrics = ServingMetrics()
        self.recorder = Recorder(
            self.store,
            metrics=self.metrics,
            max_batch=config.recording.max_batch,
            max_pending_bytes=config.recording.max_pending_bytes,
        )
        self.runtime = ScoringRuntime(
            config=config,
            store=self.store,
            artefacts=self.artefacts,
            metrics=self.metrics,
            recorder=self.recorder,
            on_champion_change=self._champion_changed,
        )
        self.registry = Registry(
            self.store,
            self.artefacts,
            memory_limit_bytes=config.scoring.candidate_memory_limit_mb * 1024 * 1024,
            timeout_s=config.scoring.candidate_timeout_s,
            regulated_models=[m.name for m in config.models if m.regulated],
            check_features=config.check_registered_model,
        )
        # the safe ranges and regulation its config sets, which a promotion and a
        # registration under any config check; first, so that a model another process
        # registers meanwhile is regulated by its registration or by the next line
        store_configured_safe_ranges(self.store, config)
        self.registry.regulate_configured()  # models stored unregulated before the config
        self.dispatcher = Dispatcher(self.store, config, metrics=self.metrics)
        self.schedule = StandingSchedule(
            self.store,
            config,
            self.dispatcher,
            now=now,
            recount=lambda model: self.scheduler.recount("retune_schedule", model),
        )
        self.evaluator = Evaluator(
            store=self.store,
            artefacts=self.artefacts,
            config=config,
            metrics=self.metrics,
            dispatcher=self.dispatcher,
        )
        self.comparisons = ComparisonRunner(
            self.store,
            config,
            dispatcher=self.dispatcher,
            metrics=self.metrics,
            on_lineup_change=self._lineup_changed,
        )
        # this process's own (see tunewatch._worker_config_file); a file it cannot write
        # refuses the start of a daemon whose scheduler may launch workers
        self._worker_config_file = WorkerConfigFile(Path(config.data_dir).resolve())
        self._launcher: JobLauncher | None = None
        self._making_launcher = threading.Lock()
        if config.scheduler.enabled:
            self._make_launcher()
        # Always on: with no local workers it still queues again jobs whose remote worker died.
        tasks = [Task("launch_jobs", 2.0, lambda: self.launcher.tick())]
        self.scheduler = Scheduler(
            store=self.store,
            config=config,
            metrics=self.metrics,
            now=now,
            jobs=[
                # counted from the last run the store recorded: a new leader counted each
                # from its takeover, and frequent failovers or restarts meant none at all
                PerModelJob(
                    "evaluate",
                    lambda m: m.evaluation.interval_s,
                    self.evaluator.evaluate,
                    last_run=self._last_evaluation,
                ),
                # queueing a retune takes milliseconds: a thread of their own, so that
                # evaluations filling the shared pool do not hold a scheduled retune back
                PerModelJob(
                    "retune_schedule",
                    schedule_of,
                    self.schedule.run,
                    last_run=self.schedule.last_run,
                    threads=1,
                ),
                PerModelJob(
                    "retune_owed",
                    lambda m: OWED_RETRY_S if schedule_of(m) is not None else None,
                    self.schedule.catch_up,
                    threads=1,
                ),
                # scheduled with comparison off too: the run then only releases, ending the
                # watches left open and retiring a version a promotion kept in shadow for
                # one (under another config: a CLI's defaults), which else shadowed forever
                PerModelJob(
                    "compare",
                    lambda m: m.comparison.interval_s,
                    self.comparisons.run,
                    last_run=self._last_comparison,
                ),
            ],
            tasks=tasks,
        )
        self.auth = Authenticator(
            self._lookup_token, disabled=config.auth.disabled, ttl_s=config.auth.token_cache_ttl_s
        )
        # the Alertmanager webhook's stop, begun by `tunewatch serve` as it shuts down
        self.alert_stop = WebhookStop()
        # set by `tunewatch serve` at SIGTERM/SIGINT: readiness answers 503 `shutting_down`
        # from then on, while requests are still served (`server.shutdown_delay_s`)
        self.stopping = threading.Event()
        self.app: InferenceFront = create_asgi(
            AppContext(
                runtime=self.runtime,
                registry=self.registry,
                auth=self.auth,
                dispatcher=self.dispatcher,
                evaluator=self.evaluator,
                comparisons=self.comparisons,
                recording=recording,
                shadowing=shadowing,
                alert_stop=self.alert_stop,
            ),
            on_start=self.start,
            on_stop=self.close,
            stopping=self.stopping,
        )
        self._started = False
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        #: the sweep of the temporary files killed artefact writes left, started at the
        #: first start and ended (between two shard directories) by :meth:`close`
        self.temporaries_sweep: threading.Thread | None = None
        self._sweep_stop = threading.Event()
        self._refresh_outage = OutageLog(
            logger,
            what="lineup refresh",
            retry=f"serving the current lineups, retrying every {config.scoring.refresh_s} s",
            now=now,
        )

    def _champion_changed(self, model: str) -> None:
        """After the runtime loaded another champion of ``model`` (a promotion or a
        rollback, here or by another process): the leader exports the model's evaluation
        figures and alarms as the store holds them for the new champion (none of the
        replaced one's, whose alarms no streak carries over), not an interval later."""
        self.evaluator.export_stored(model)

    def _lineup_changed(self, model: str) -> None:
        """After the loop promoted or rolled back: serve the new lineup and write the
        rationale reports of the champion and of the version the latest change moved
        out (the champion a promotion replaced, the version a rollback rolled back)."""
        self.runtime.try_load(model)  # a fault: the line-up it had stays, marked stale
        champion = self.store.champion(model)
        if champion is None:
            return
        versions = [champion.version]
        last = self.store.list_events(model=model, types=("promoted", "rolled_back"), limit=1)
        if last and last[0].payload.get("version") == champion.version:
            moved_out = last[0].payload.get(
                "previous" if last[0].type == "promoted" else "rolled_back"
            )
            if moved_out is not None:
                versions.append(int(moved_out))
        refresh_reports(self.store, self.config, model, versions)

    def _last_evaluation(self, model: str) -> datetime | None:
        """When ``model`` was last evaluated, if ever: every evaluation stores a
        ``telemetry`` row; the one stored last (not the latest ``window_end``, the
        evaluating host's clock, which a clock step back left on an older run)."""
        newest = self.store.recent_evaluations(model, kind="telemetry", limit=1)
        return newest[0].created_at if newest else None

    def _last_comparison(self, model: str) -> datetime | None:
        """When a comparison of ``model`` last changed one of its tests (a look, requests
        consumed, a test opened or settled), if ever. A run with nothing new to look at
        records nothing: after one, a new leader compares soon rather than an interval on."""
        tests = self.comparisons.comparisons.list_tests(model)
        return max((t.updated_at for t in tests), default=None)

    @property
    def launcher(self) -> JobLauncher:
        """Starts this process's tuning workers, on the configuration file it writes for
        them (:meth:`_worker_config`). Made at construction where the scheduler is enabled
        (its leader's ``launch_jobs`` task ticks it); else when first used (the demo ticks
        it itself, its scheduler off): a scoring replica, which starts no worker, leaves no
        file holding its store URL on disk."""
        return self._make_launcher()

    @launcher.setter
    def launcher(self, launcher: JobLauncher) -> None:  # the caller's: ticked, stopped here
        self._launcher = launcher

    def _make_launcher(self) -> JobLauncher:
        with self._making_launcher:
            if self._launcher is None:
                self._launcher = JobLauncher(
                    store=self.store,
                    config_path=self._worker_config(),
                    workers=self.config.tuning.workers,
                    stale_after_s=STALE_HEARTBEATS * self.config.tuning.heartbeat_s,
                )
            return self._launcher

    def _worker_config(self) -> Path:
        """The effective configuration, written for this process's workers to read
        (:class:`~tunewatch._worker_config_file.WorkerConfigFile`, removed by
        :meth:`close`). A file that cannot be written (``data_dir`` full or read-only)
        raises a ``TunewatchError`` naming it and what it is for: the bare ``OSError`` of
        a full disk named no file."""
        text = yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False)
        try:
            return self._worker_config_file.write(text)
        except OSError as exc:
            raise TunewatchError(
                f"cannot write {self._worker_config_file.path}, the configuration the tuning "
                f"worker processes read (each daemon writes its own as it starts): "
                f"{os_reason(exc)}",
                code="worker_config_unwritable",
            ) from exc

    def _lookup_token(self, digest: str) -> tuple[str, str, str] | None:
        row = self.store.token_by_hash(digest)
        return None if row is None else (row.name, row.role, row.token_hash)

    def start(self) -> None:
        """Start scoring, the refresh loop and (if enabled) the scheduler. A start that
        fails stops what it had started before re-raising: the app's lifespan does not
        call :meth:`close` after a failed start."""
        if self._started:
            return
        warn_of_unshared_tuning_storage(self.config, self.store)
        try:
            if self.temporaries_sweep is None:  # in the background: serving does not wait
                self.temporaries_sweep = start_sweep(
                    self.config.artefact_dir, stop=self._sweep_stop
                )
            self.runtime.start()
            self._stop.clear()
            self._refresher = threading.Thread(
                target=self._refresh_loop, name="tunewatch-refresh", daemon=True
            )
            self._refresher.start()
            if self.config.scheduler.enabled:
                self.scheduler.start()  # releases the lease itself if it fails
            self._started = True
            freeze_startup_heap()  # the modules, the models and the app, walked no more
        finally:
            if not self._started:  # whatever stopped it: what had started is stopped
                self._stop.set()
                if self._refresher is not None:
                    self._refresher.join(10)
                    self._refresher = None
                self._stop_sweep()
                self.runtime.close()

    def close(self) -> None:
        workers_stopped = False
        if self._started:
            if self.config.scheduler.enabled:
                # Workers get their time to stop while the scheduler's running jobs get
                # theirs, not after it: 30 s and 20 s side by side, after up to
                # request_grace_s (40 s by default) for requests in flight, within a 100 s
                # stop (with the default lock timeout).
                workers = threading.Thread(target=self.launcher.stop, name="tunewatch-stop")
                workers.start()
                self.scheduler.shutdown()
                workers.join()
                workers_stopped = True
            self._stop.set()
            if self._refresher is not None:
                self._refresher.join(10)
            self._stop_sweep()
            self.runtime.close()
            self._started = False
        if self._launcher is not None and not workers_stopped:
            # the workers the demo's ticks started, before their configuration goes
            self._launcher.stop()
        self._worker_config_file.remove()
        self.store.close()

    def _stop_sweep(self) -> None:
        """End the sweep of temporary artefact files, if it still runs: it stops after the
        shard directory it is in."""
        self._sweep_stop.set()
        if self.temporaries_sweep is not None:
            self.temporaries_sweep.join(10)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.config.scoring.refresh_s):
            self._refresh_once()

    def _refresh_once(self) -> None:
        """One turn of the refresh loop, a loop boundary: a failure is logged (once an
        outage, :class:`OutageLog`) and the current lineups stay served."""
        try:
            # a model this config regulates that a replica whose config does not list it
            # added since: regulated before its lineup is served here
            self.registry.regulate_configured()
            changed = self.runtime.refresh()
        except Exception as exc:  # the loop's boundary: logged with its traceback, counted
            self._refresh_outage.failed(exc)
            return
        self._refresh_outage.succeeded()
        if changed:
            logger.info("lineups changed in the store, reloaded: %s", changed)


#: How many drift reports :func:`share_cached_artefacts` reads per query.
DRIFT_REPORTS_PAGE = 1000


def share_cached_artefacts(store: Store, artefacts: ArtefactStore) -> int:
    """Keep in a PostgreSQL store the versions' artefacts, reference snapshots and drift
    reports cached here that it lacks, and return how many: stored before it kept
    artefacts, the other hosts could not read them (see
    :meth:`ArtefactStore.share_cached`). At every daemon start and ``tunewatch migrate``."""
    if store.dialect == "sqlite":
        return 0
    keys = set()
    for model in store.list_models():
        for version in store.list_versions(model.name):
            keys.add((version.artefact_sha256, ".onnx"))
            if isinstance(reference := version.details.get("reference_sha256"), str):
                keys.add((reference, ".npz"))
        keys |= _drift_report_keys(store, model.name)
    return artefacts.share_cached(keys)


def _drift_report_keys(store: Store, model: str) -> set[tuple[str, str]]:
    """The HTML files of ``model``'s drift reports (its ``drift_report`` evaluations), read
    newest first a page at a time, each page from the oldest window of the one before.
    Should one window hold more than a page of reports, those past the page are left
    (the windows before it are still read)."""
    keys: set[tuple[str, str]] = set()
    seen: set[int] = set()
    until: datetime | None = None
    while True:
        page = store.list_evaluations(
            model, kind="drift_report", until=until, limit=DRIFT_REPORTS_PAGE
        )
        fresh = [row for row in page if row.id not in seen]
        for row in fresh:
            seen.add(row.id)
            if isinstance(sha := row.payload.get("sha256"), str):
                keys.add((sha, ".html"))
        oldest = page[-1].window_end if page else None
        if len(page) < DRIFT_REPORTS_PAGE or oldest is None:
            return keys
        # a page holding nothing new is one window's reports alone: go on before it
        until = oldest if fresh else oldest - timedelta(microseconds=1)
