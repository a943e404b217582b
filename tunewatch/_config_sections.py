"""The daemon-wide sections of the configuration (``store``, ``server``, ``recording``,
``scoring``, ``auth``, ``alerting``, ``scheduler``, ``tuning``, ``approvals``), each a
frozen model; the whole file is :class:`tunewatch._config.Config`."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tunewatch._config_base import MAX_DURATION_S
from tunewatch._config_base import Frozen as _Frozen
from tunewatch._config_paths import blank, openable_storage, without_nul
from tunewatch.store._engine import DEFAULT_LOCK_TIMEOUT_S


class StoreConfig(_Frozen):
    """Where records live. ``url`` defaults to SQLite under ``data_dir``."""

    url: str | None = None
    # NORMAL: in WAL mode a commit survives a process crash (kill -9); only an OS crash or
    # power loss can lose the last commits. FULL syncs the WAL on every commit.
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # How long a transaction waits for a lock: SQLite's busy_timeout, PostgreSQL's
    # lock_timeout, counted in whole milliseconds (hence at least 0.001). A stop gives
    # requests in flight this, the write deadline's margin and 5 s more (the daemon's
    # `request_grace_s`): at most ten minutes, as a request held that long is no answer.
    lock_timeout_s: float = Field(default=DEFAULT_LOCK_TIMEOUT_S, ge=0.001, le=600)

    @field_validator("url")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if blank(value):  # it read as none: a new SQLite store under data_dir, made, migrated
            raise ValueError(
                "must not be blank (empty or spaces only, as a template rendered blank "
                "writes it): leave the key out, or null, for SQLite under `data_dir`"
            )
        return without_nul(value, "a database URL", url=True)


class ServerConfig(_Frozen):
    # "" listened on every interface
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    max_artefact_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    max_batch_rows: int = Field(default=4096, gt=0)
    max_items: int = Field(default=10_000, gt=0, description="feedback items / mirror records")
    # A request's head and body must each arrive within this many seconds of their first
    # byte (the head of a connection's first request, of the connection's opening), or it
    # is answered 408 `request_timeout` and the connection closed: a client trickling a
    # byte every few seconds held its connection, and on the inference route up to
    # max_body_bytes, for as long as it liked. A request answered or read whole is not
    # timed; an idle kept-alive connection is uvicorn's timeout_keep_alive's (5 s).
    request_read_timeout_s: float = Field(default=30.0, gt=0, le=MAX_DURATION_S)
    # The addresses (or networks) whose X-Forwarded-Proto and X-Forwarded-For are read: a
    # TLS proxy's. The dashboard's session cookie is Secure when the page was served over
    # HTTPS, which only such a header says: behind a proxy on another host (an ingress
    # pod, a proxy container) the cookie went without Secure. Loopback by default, as
    # uvicorn's.
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    # A dashboard session ends after this many seconds without a request, by the
    # database's clock: a session lasted 8 h from sign-in however long the browser sat
    # unused, so one left signed in on a desk kept its token's rights all that time.
    # Each request carries it a full window on (written at most once a minute).
    dashboard_session_idle_s: float = Field(default=1800.0, gt=0, le=MAX_DURATION_S)
    # ... and after this many seconds from sign-in however busy it is (the cookie's
    # Max-Age too); at least dashboard_session_idle_s.
    dashboard_session_max_s: float = Field(default=8 * 3600.0, gt=0, le=MAX_DURATION_S)
    # On SIGTERM or SIGINT, readiness (/readyz, /v2/health/ready, a model's or version's
    # ready) answers 503 `shutting_down` at once, and the daemon goes on serving for this
    # many seconds, each answer with `Connection: close`, before it closes its listener
    # and gives the requests in flight their grace: time for a load balancer or a
    # Kubernetes endpoint to stop sending it requests, which would otherwise meet a closed
    # port (a request sent on a kept-alive connection just before was reset unanswered).
    # 0 closes the listener at once. The whole stop takes this much longer.
    shutdown_delay_s: float = Field(default=0.0, ge=0, le=MAX_DURATION_S)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"`trusted_proxies` must list IP addresses or networks, got {item!r}"
                ) from None
        return value

    @model_validator(mode="after")
    def _idle_within_max(self) -> ServerConfig:
        if self.dashboard_session_idle_s > self.dashboard_session_max_s:
            raise ValueError(
                f"`dashboard_session_idle_s` ({self.dashboard_session_idle_s}) must be at "
                f"most `dashboard_session_max_s` ({self.dashboard_session_max_s}): a session "
                "ends at its maximum however busy it is"
            )
        return self


class RecordingConfig(_Frozen):
    """Group commit: responses wait for their records to be durable; requests share commits."""

    max_batch: int = Field(default=512, gt=0)
    # The most bytes the records waiting for the store may hold (inputs and outputs, and an
    # estimate of each record's objects); past it a request is answered 503
    # `store_unavailable` at once, unrecorded, and counted (`tunewatch_record_refusals_total`).
    # While the store stalled (a lock held up to store.lock_timeout_s, a slow disk, a
    # failover) every request queued its record without limit and waited out the stall.
    # At most 1 TiB: a larger figure is a slip of the units, not a host's memory.
    max_pending_bytes: int = Field(default=256 * 2**20, ge=1, le=2**40)
    # Requests received longer ago than this many days are deleted, with their outputs
    # and labels, once a day by the scheduler's leader (by the database's clock); null
    # keeps every record. At least what the daemon reads back for each configured model
    # (checked when the config loads: see `Config._retention_outlasts_reads`).
    retention_days: float | None = Field(default=None, gt=0, le=MAX_DURATION_S / 86_400)


class ScoringConfig(_Frozen):
    # at most 256: a larger count started that many onnxruntime threads a session, and
    # one past 32 bits crashed `serve` at start with a traceback
    intra_op_threads: int = Field(default=1, ge=1, le=256)
    # A served run (champion, split arm, shadow) still going after this long is stopped
    # and answered 503 `run_timeout`: a graph can loop for as long as its input says, and
    # the champion runs on the event loop. None: no deadline.
    run_timeout_s: float | None = Field(default=5.0, gt=0, le=3600)
    shadow_queue_size: int = Field(default=10_000, ge=1)
    # The most bytes of request rows the shadow jobs waiting may hold; past it requests are
    # dropped from shadowing and counted (`tunewatch_shadow_dropped_total{reason="queue_full"}`),
    # as past shadow_queue_size. The job count alone let 100 default-size requests (4096 rows
    # x 512 float32) hold 800 MiB behind a slow challenger, 78 GiB at 10,000 jobs.
    shadow_queue_max_bytes: int = Field(default=256 * 2**20, ge=1)
    shadow_workers: int = Field(default=1, ge=1)
    # The most of one core's time the shadow workers may use (scoring and handing over the
    # outputs; writing them costs the recorder about as much again). Past it, each model's
    # requests beyond one drain's worth waiting are shed from shadowing and counted
    # (`tunewatch_shadow_dropped_total{reason="cpu_share"}`);
    # null = no limit. A guardrail against a costly challenger: three tree ensembles at
    # 3-4k requests/s use about 0.16 on the bench host. It counts the shadow threads' own
    # CPU, so with intra_op_threads > 1 onnxruntime's pool threads are not in it.
    shadow_cpu_share: float | None = Field(default=0.25, gt=0, le=1)
    # The candidate's loader process's address-space limit (setrlimit), whose byte count
    # is a signed 64-bit integer: a larger one failed every registration.
    candidate_memory_limit_mb: int = Field(default=2048, ge=64, le=(2**63 - 1) // 2**20)
    candidate_timeout_s: float = Field(default=60.0, gt=0, le=MAX_DURATION_S)
    # Every process re-reads lineups this often, so promotions made elsewhere (CLI,
    # another replica, the scheduler) reach it.
    refresh_s: float = Field(default=5.0, gt=0, le=MAX_DURATION_S)


class AuthConfig(_Frozen):
    # Auth-less mode exists for local demos only; it must be switched on here, is refused
    # unless the daemon listens on loopback (see `disabled_auth_refusal`), and logs a
    # warning at start.
    disabled: bool = False
    token_cache_ttl_s: float = Field(default=5.0, ge=0, le=MAX_DURATION_S)


#: The hosts :func:`is_loopback_host` reads as loopback, as messages list them.
LOOPBACK_HOSTS = "127.0.0.0/8, ::1, localhost"


def is_loopback_host(host: str) -> bool:
    """Whether a daemon listening on ``host`` is reachable from this machine only: an
    address in 127.0.0.0/8, ``::1``, or the name ``localhost``. Any other name is not,
    whatever it resolves to now (it is not looked up)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, or no address at all
        return False


def disabled_auth_refusal(auth: AuthConfig, host: str, *, source: str) -> str | None:
    """Why ``auth`` may not serve on ``host`` (given by ``source``: ``server.host`` or
    ``--host``), or ``None`` when it may: with ``auth.disabled`` every request acts as
    admin, so anyone who can reach the port may register and promote versions. The Docker
    image's ``--host 0.0.0.0`` is refused with it too."""
    if not auth.disabled or is_loopback_host(host):
        return None
    return (
        f"`auth.disabled: true` is allowed only on a loopback host ({LOOPBACK_HOSTS}), got "
        f"`{source}` {host!r}: every request would act as admin for anyone reaching it; "
        "create tokens (`tunewatch tokens create`) and leave auth on, or listen on loopback"
    )


class AlertingConfig(_Frozen):
    """Alertmanager webhook: which alert label names the model."""

    model_label: str = "model"


class SchedulerConfig(_Frozen):
    # Only the process holding the store's lease runs scheduled work.
    enabled: bool = True
    lease_ttl_s: float = Field(default=30.0, gt=1, le=MAX_DURATION_S)


class TuningConfig(_Frozen):
    # A quota across the whole daemon: more queued-or-running jobs are suppressed.
    max_concurrent_jobs: int = Field(default=2, ge=1)
    # Worker processes the leader starts for queued jobs (0: only `tunewatch worker`).
    workers: int = Field(default=1, ge=0)
    # Optuna storage shared by all workers; default: its own SQLite file under data_dir,
    # so tuning never holds the scoring log's write lock. PostgreSQL for several machines.
    storage_url: str | None = None
    # Workers heartbeat their job (and Optuna its trials, on an RDB storage) this often; a
    # running job silent for 6 heartbeats is queued again for the next worker to resume.
    heartbeat_s: int = Field(default=10, ge=1, le=int(MAX_DURATION_S // 6))  # 6: stale
    # The niceness a worker process lowers itself to when it starts (every thread of it;
    # one started lower keeps its own): workers ran at the daemon's priority, and on one
    # host a retune's trials took the cores from scoring (bench/worker_priority.py: p50
    # 3.12 ms at nice 0 against 0.69 ms without workers; 0.72 ms at 19). 0 leaves it.
    worker_nice: int = Field(default=19, ge=0, le=19)
    # The studies of jobs that finished (succeeded, failed or were cancelled) more than this
    # many days ago, by the database's clock, are moved to `archive_storage_url` once a day
    # by the scheduler's leader (tunewatch._study_archive); warm start, the dashboard and
    # the report read them there. null keeps every study in `storage_url`.
    archive_after_days: float | None = Field(default=90.0, gt=0, le=MAX_DURATION_S / 86_400)
    # Where archived studies go (Config.tuning_archive_url): default, with `storage_url`
    # unset, SQLite under data_dir (optuna-archive.db); with `storage_url` set (shared by
    # hosts), none: archiving is off until this names a storage every host reads.
    archive_storage_url: str | None = None

    @field_validator("storage_url", "archive_storage_url")
    @classmethod
    def _openable(cls, value: str | None, info: ValidationInfo) -> str | None:
        if blank(value):  # it read as none: a new SQLite file under data_dir
            default = "optuna.db" if info.field_name == "storage_url" else "optuna-archive.db"
            raise ValueError(
                "must not be blank (empty or spaces only, as a template rendered blank "
                "writes it): leave the key out, or null, for SQLite under `data_dir` "
                f"({default})"
            )
        value = without_nul(value, "a database URL or journal file", url=True)
        return None if value is None else openable_storage(value)


class ApprovalsConfig(_Frozen):
    # A pending approval request expires this many days after it was made: its evidence is
    # that old. Approving it then closes it unpromoted (stored as rejected, the reason
    # saying so), and the scheduler's leader closes every expired one hourly
    # (tunewatch._approval_expiry). A request was approvable for ever, and approved four
    # months on it promoted a version on evidence no one had looked at since. Each request
    # keeps the deadline it was made under (approvals.expires_at). null: this process adds
    # no limit; a request made under a limit keeps its deadline, and the sweep closes it.
    expire_after_days: float | None = Field(default=30.0, gt=0, le=MAX_DURATION_S / 86_400)
