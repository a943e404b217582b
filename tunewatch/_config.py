"""Configuration: one YAML file loaded once into frozen, validated pydantic models.

Raw dicts never travel past :func:`load_config`. Every error names the key path, the rule
and the offending value. Two environment variables may override the file:
``TUNEWATCH_STORE_URL`` (the store, e.g. a PostgreSQL URL carrying a password) and
``TUNEWATCH_DATA_DIR``. Secrets such as the bootstrap admin token are read from the
environment only (``TUNEWATCH_ADMIN_TOKEN``), never from the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.objectives import CostWeightedError, make_objective
from retune.space import read_yaml
from tunewatch._config_base import Frozen as _Frozen
from tunewatch._config_errors import format_errors
from tunewatch._config_evaluation import (
    LABEL_COLUMN as LABEL_COLUMN,
)
from tunewatch._config_evaluation import (
    PREDICTION_COLUMN as PREDICTION_COLUMN,
)
from tunewatch._config_evaluation import (
    ColumnDriftSpec as ColumnDriftSpec,
)
from tunewatch._config_evaluation import (
    DecayEvaluationConfig as DecayEvaluationConfig,
)
from tunewatch._config_evaluation import (
    DriftEvaluationConfig as DriftEvaluationConfig,
)
from tunewatch._config_evaluation import (
    EstimateEvaluationConfig as EstimateEvaluationConfig,
)
from tunewatch._config_evaluation import (
    EvaluationConfig as EvaluationConfig,
)
from tunewatch._config_evaluation import ReadBack, retention_reads
from tunewatch._config_file import read_config_text
from tunewatch._config_model import (
    DEFAULT_TRIGGERS as DEFAULT_TRIGGERS,
)
from tunewatch._config_model import (
    Action as Action,
)
from tunewatch._config_model import (
    EventType as EventType,
)
from tunewatch._config_model import (
    FeatureConfig as FeatureConfig,
)
from tunewatch._config_model import (
    ModelConfig as ModelConfig,
)
from tunewatch._config_model import (
    ObjectiveConfig as ObjectiveConfig,
)
from tunewatch._config_model import (
    SafeRange as SafeRange,
)
from tunewatch._config_model import (
    Task as Task,
)
from tunewatch._config_model import (
    TriggerConfig as TriggerConfig,
)
from tunewatch._config_paths import (
    AT_IN_HOST,
    anchored,
    beside,
    blank,
    data_dir_beside,
    host_holds_at,
    in_memory_sqlite,
    same_database,
    without_nul,
)
from tunewatch._config_sections import (
    AlertingConfig as AlertingConfig,
)
from tunewatch._config_sections import (
    ApprovalsConfig as ApprovalsConfig,
)
from tunewatch._config_sections import (
    AuthConfig as AuthConfig,
)
from tunewatch._config_sections import (
    RecordingConfig as RecordingConfig,
)
from tunewatch._config_sections import (
    SchedulerConfig as SchedulerConfig,
)
from tunewatch._config_sections import (
    ScoringConfig as ScoringConfig,
)
from tunewatch._config_sections import (
    ServerConfig as ServerConfig,
)
from tunewatch._config_sections import (
    StoreConfig as StoreConfig,
)
from tunewatch._config_sections import (
    TuningConfig as TuningConfig,
)
from tunewatch._config_sections import disabled_auth_refusal
from tunewatch._config_tuning import TuningJobConfig as TuningJobConfig
from tunewatch._errors import ConfigError

logger = logging.getLogger(__name__)

CONFIG_VERSION = 1
ENV_STORE_URL = "TUNEWATCH_STORE_URL"
ENV_DATA_DIR = "TUNEWATCH_DATA_DIR"
ENV_ADMIN_TOKEN = "TUNEWATCH_ADMIN_TOKEN"


class Config(_Frozen):
    version: Literal[1] = 1
    # not empty: '' (a template rendered blank) made the store the working directory's
    data_dir: str = Field(default=".tunewatch", min_length=1)
    store: StoreConfig = StoreConfig()
    server: ServerConfig = ServerConfig()
    recording: RecordingConfig = RecordingConfig()
    scoring: ScoringConfig = ScoringConfig()
    auth: AuthConfig = AuthConfig()
    alerting: AlertingConfig = AlertingConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    tuning: TuningConfig = TuningConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()
    models: tuple[ModelConfig, ...] = ()

    @field_validator("data_dir")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if blank(value):  # '' is refused by min_length; spaces named a directory of them
            raise ValueError("must not be blank (empty or spaces only)")
        return str(without_nul(value, "a directory name"))

    @model_validator(mode="after")
    def _data_dir_is_a_directory(self) -> Config:
        """A ``data_dir`` naming a file (``/etc/passwd``) was refused by the store's
        ``mkdir`` as "[Errno 17] File exists", naming neither the key nor the rule."""
        if (
            Path(self.data_dir).expanduser().exists()
            and not Path(self.data_dir).expanduser().is_dir()
        ):
            raise ValueError(f"`data_dir` must be a directory, got a file: {self.data_dir!r}")
        return self

    @model_validator(mode="after")
    def _stores_of_their_own(self) -> Config:
        """An in-memory SQLite store is each connection's own (the daemon reported ready
        while every other thread read an empty database), and the tuning storage in the
        store's own database shares Alembic's version table with it (Optuna's migrations
        and the store's refused each other)."""
        url = self.store.url
        if url is not None and in_memory_sqlite(url):
            raise ValueError(
                f"`store.url` {url!r} is an in-memory SQLite database, which each "
                "connection has its own of: give a file (sqlite:////path/tunewatch.db)"
            )
        storage = self.tuning.storage_url
        if storage is not None and same_database(storage, self.store_url):
            raise ValueError(
                "`tuning.storage_url` must not be the store's own database (`store.url`): "
                "Optuna's tables and the store's share Alembic's version table there; give "
                "it a database or schema of its own"
            )
        archive = self.tuning.archive_storage_url
        for other, named in (
            (self.tuning_storage_url, "the tuning storage (`tuning.storage_url`)"),
            (self.store_url, "the store's own database (`store.url`)"),
        ):
            if archive is not None and same_database(archive, other):
                raise ValueError(
                    f"`tuning.archive_storage_url` must not be {named}: archived studies are "
                    "moved out of the tuning storage into a database or schema of their own"
                )
        return self

    @model_validator(mode="after")
    def _disabled_auth_on_loopback(self) -> Config:
        """``auth.disabled: true`` with ``server.host: 0.0.0.0`` loaded with a warning in
        the log, and a client with no token registered and promoted versions."""
        refusal = disabled_auth_refusal(self.auth, self.server.host, source="server.host")
        if refusal is not None:
            raise ValueError(refusal)
        return self

    @model_validator(mode="after")
    def _unique_models(self) -> Config:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique, got duplicates {dupes}")
        return self

    @model_validator(mode="after")
    def _retention_outlasts_reads(self) -> Config:
        """``recording.retention_days`` must keep what the daemon reads back for each
        configured model: its decay horizon (``window_s`` × ``horizon_windows``),
        ``decay.maturity_s``, ``label_delay_alarm_s`` and ``comparison.label_maturity_s``;
        with ``evaluation.window_s`` set, the whole windows read at those ages: the current
        one (``window_s``), label drift's (``maturity_s`` + ``window_s``) and the label-delay
        alarm's (``label_delay_alarm_s`` + ``window_s``), each ``window_s`` long and ending
        that long ago (:func:`tunewatch._drift_report.aged_window`). Checked whether or not
        decay is enabled (it may be switched on later, reading a horizon already purged).

        Not covered (a shorter retention is accepted, and these lose their rows):
        models only registered (not in ``models``) read with the defaults, a 30-day
        decay horizon; a ``window_rows`` window reaches back as far as the traffic makes
        it (only the age it ends at is checked); a label arriving later than the
        retention is refused as for an unknown request; a tuning job's window
        (``tuning.window_rows``), once queued or running jobs are done, is the newest rows
        still kept (theirs are kept: :mod:`tunewatch._retention_task`); and a drift
        report of older traffic. A running comparison loses nothing: a paired test or a
        rollback watch keeps its sums in its state, and the purge keeps the requests an
        open ROC AUC test consumed (:mod:`tunewatch.store._retention`)."""
        days = self.recording.retention_days
        if days is None:
            return self
        kept = days * 86_400
        for i, cfg in enumerate(self.models):
            for where, what, parts in _reads_back(f"models.{i}", cfg):
                seconds = sum(parts)
                if kept < seconds:
                    summed = " + ".join(f"{p:.15g}" for p in parts)
                    values = f"{summed} = {seconds:.15g}" if len(parts) > 1 else summed
                    raise ValueError(
                        f"`recording.retention_days` ({days:.15g} days = {kept:.15g} s) must be at "
                        f"least what model {cfg.name!r} reads back, its {what} at {where} "
                        f"({values} s = {seconds / 86_400:.15g} days): older records are "
                        "deleted before they are read"
                    )
        return self

    @property
    def store_url(self) -> str:
        if self.store.url is not None:
            return self.store.url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'tunewatch.db'}"

    @property
    def tuning_storage_url(self) -> str:
        if self.tuning.storage_url is not None:
            return self.tuning.storage_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'optuna.db'}"

    @property
    def tuning_archive_url(self) -> str | None:
        """Where old studies are archived (``tuning.archive_storage_url``); by default,
        with the tuning storage this host's own SQLite file, one beside it
        (``optuna-archive.db``); ``None`` with a ``tuning.storage_url`` set and no archive
        named: a storage other hosts share needs an archive they all read, which only the
        operator can name, so studies are not archived."""
        if self.tuning.archive_storage_url is not None:
            return self.tuning.archive_storage_url
        if self.tuning.storage_url is None:
            return f"sqlite:///{Path(self.data_dir).resolve() / 'optuna-archive.db'}"
        return None

    @property
    def artefact_dir(self) -> Path:
        return Path(self.data_dir).resolve() / "artefacts"

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

    def model_or_default(self, name: str, task: str) -> ModelConfig:
        """The model's configuration, or the defaults for a model only registered (its
        name as the store holds it, which is not checked again)."""
        return self.model(name) or ModelConfig.model_validate(
            {"name": name, "task": task}, context={"registered": True}
        )

    def check_registered_model(
        self,
        model: str,
        feature_names: Sequence[str],
        *,
        task: str,
        classes: int | None = None,
    ) -> None:
        """Refuse a ``task`` of ``model`` other than its versions' ``task``,
        ``evaluation.drift.columns`` naming a column its drift frame does not have (its
        features, the prediction and the label), ``features`` ranges naming no feature,
        a ``tuning.cv_group_column`` that is not one of its features, and, with
        ``classes`` (a multiclass version's primary output width), an objective of
        another number of classes (a ``cost_matrix``): a model's task, features and
        classes are known only once it registers, and such a setting made every
        evaluation (or job) of the model fail, or guarded nothing. Called when a version
        registers and, for stored models (``classes``: the champion's, when the objective
        counts them, :func:`objective_classes`), when the daemon starts and by the commands
        that evaluate, compare, retune, promote or decide an approval
        (:func:`tunewatch._open_store.check_stored_models`)."""
        for i, cfg in enumerate(self.models):
            if cfg.name != model:
                continue
            if cfg.task != task:
                # the evaluator and the comparisons build the config's objective for the
                # versions' scores: every run of the model failed
                raise ConfigError(
                    f"models.{i}.task: a model's task in the config must be its versions' "
                    f"task, got {cfg.task!r} for model {model!r}, whose versions are "
                    f"{task!r} (a model's task never changes: correct the config, or "
                    "register the version under another name)"
                )
            known = {*feature_names, PREDICTION_COLUMN, LABEL_COLUMN}
            unknown = [c for c in cfg.evaluation.drift.columns if c not in known]
            shown = ", ".join(list(feature_names)[:10])
            more = f", … ({len(feature_names)} in all)" if len(feature_names) > 10 else ""
            if unknown:
                raise ConfigError(
                    f"models.{i}.evaluation.drift.columns.{unknown[0]}: drift settings must "
                    f"name a column of model {model!r}, got {unknown}; its columns are its "
                    f"features ({shown}{more}), {PREDICTION_COLUMN} and {LABEL_COLUMN}"
                )
            for j, feature in enumerate(cfg.features):
                if feature.name not in feature_names:
                    # its range guarded nothing, with only a log warning
                    raise ConfigError(
                        f"models.{i}.features.{j}.name: a feature range must name a feature "
                        f"of model {model!r}, got {feature.name!r}; its features are "
                        f"{shown}{more}"
                    )
            group = cfg.tuning.cv_group_column
            if group is not None and group not in feature_names:
                raise ConfigError(
                    f"models.{i}.tuning.cv_group_column: the group column must be a feature "
                    f"of model {model!r}, got {group!r}; its features are {shown}{more}"
                )
            if classes is not None:
                _check_classes(i, cfg, classes)

    def trigger(self, model: str, event: str) -> TriggerConfig | None:
        """The model's trigger for ``event`` (the defaults for models not configured)."""
        cfg = self.model(model)
        triggers = cfg.triggers if cfg is not None else DEFAULT_TRIGGERS
        return next((t for t in triggers if t.on == event), None)


def _reads_back(at: str, cfg: ModelConfig) -> list[ReadBack]:
    """How far back model ``cfg`` (at key path ``at``) reads requests: its evaluation's
    reads (:func:`tunewatch._config_evaluation.retention_reads`) and, when set, the
    comparison's ``label_maturity_s``."""
    reads = retention_reads(f"{at}.evaluation", cfg.evaluation)
    label_maturity = cfg.comparison.label_maturity_s
    if label_maturity is not None:
        reads.append(
            (f"`{at}.comparison.label_maturity_s`", "`label_maturity_s`", (label_maturity,))
        )
    return reads


def objective_classes(cfg: ModelConfig) -> int | None:
    """How many classes the objective ``cfg`` configures scores: a ``cost_matrix``'s rows;
    ``None`` for an objective of any number of classes (every other one)."""
    objective = make_objective(cfg.objective.name, task=cfg.task, **cfg.objective.params)
    if isinstance(objective, CostWeightedError):
        return int(objective.cost_matrix.shape[0])
    return None


def _check_classes(index: int, cfg: ModelConfig, classes: int) -> None:
    """The model's objective scores ``classes`` classes: a ``cost_matrix`` of another
    size failed every decay window (decay read insufficient_data for ever, silently)
    and every tuning trial."""
    k = objective_classes(cfg)
    if k is not None and k != classes:
        raise ConfigError(
            f"models.{index}.objective.params.cost_matrix: a cost matrix has a row and a "
            f"column per class of the model, got {k}x{k} for model {cfg.name!r}, whose "
            f"versions have {classes} classes (their output's columns)"
        )


def _warn_data_dir_overridden(ours: object, theirs: str, base: Path, source: str) -> None:
    """Log that ``$TUNEWATCH_DATA_DIR`` overrides another directory the file names: the
    image sets it, and a mounted config's own (the volume) was silently not used."""
    if not isinstance(ours, str) or blank(ours):
        return
    named, used = base / Path(ours).expanduser(), Path.cwd() / Path(theirs).expanduser()
    if os.path.normpath(named) != os.path.normpath(used):
        logger.warning(
            "$%s (%s) overrides the configuration's `data_dir` (%s) in %s: the store and "
            "artefacts are under %s; unset it to use the file's",
            ENV_DATA_DIR,
            used,
            named,
            source,
            used,
        )


def build_config(
    raw: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    source: str = "<config>",
    config_dir: str | Path | None = None,
) -> Config:
    """Validate ``raw`` (the parsed YAML) with environment overrides applied; relative
    paths in it (``data_dir``, ``tuning.search_space``) are under ``config_dir``, the
    config file's directory, else the working directory (as ``$TUNEWATCH_DATA_DIR``)."""
    data: dict[str, Any] = dict(raw or {})
    env = os.environ if env is None else env
    # Set but blank (a Kubernetes secret or a template rendered blank) read as unset: the
    # store became a new SQLite file under data_dir, made and migrated, served empty.
    for name, unset in (
        (ENV_STORE_URL, "the configuration's `store.url` (SQLite under data_dir by default)"),
        (ENV_DATA_DIR, "the configuration's `data_dir` (.tunewatch by default)"),
    ):
        if name in env and blank(env[name]):
            raise ConfigError(
                f"${name} is set but blank (empty or spaces only): give the value in it, "
                f"or unset it for {unset}"
            )
    # A relative data_dir is made absolute here, so that the config the daemon writes out
    # for its workers names the same one: the file's own is beside the file, as
    # `tuning.search_space` (read from another directory, the same config made and
    # migrated an empty store there, and listed no models); the environment's or the
    # default under the working directory.
    base = Path(config_dir) if config_dir is not None and "data_dir" in data else Path.cwd()
    if env.get(ENV_DATA_DIR):
        _warn_data_dir_overridden(data.get("data_dir"), env[ENV_DATA_DIR], base, source)
        data["data_dir"], base = env[ENV_DATA_DIR], Path.cwd()
    data_dir = data.get("data_dir", Config.model_fields["data_dir"].default)
    if isinstance(data_dir, str) and not blank(data_dir):  # validation refuses a blank one
        # it holds the store unless a URL names one; the file's relative one is refused where
        # only the working directory's holds it (an earlier release's store)
        store = data.get("store") or {}
        holds_store = isinstance(store, Mapping) and store.get("url") is None
        holds_store = holds_store and not env.get(ENV_STORE_URL)
        data["data_dir"] = data_dir_beside(data_dir, base, source, holds_store=holds_store)
    # A relative SQLite path in the store's URL, and in the Optuna storage's (a URL or a
    # journal file), is made absolute as data_dir is: the file's beside the file, the
    # environment's under the working directory (it followed the working directory).
    file_base = Path(config_dir) if config_dir is not None else Path.cwd()
    store = data.get("store") or {}
    if env.get(ENV_STORE_URL) and isinstance(store, Mapping):  # else validation says why
        data["store"] = {**store, "url": anchored(env[ENV_STORE_URL], Path.cwd())}
    elif isinstance(store, Mapping) and isinstance(store.get("url"), str):
        url = store["url"]
        if not blank(url):  # validation refuses a blank one (`beside` read it as a path)
            data["store"] = {**store, "url": beside(url, file_base, "store.url", source)}
    tuning = data.get("tuning")
    for key in ("storage_url", "archive_storage_url"):
        storage = tuning.get(key) if isinstance(tuning, Mapping) else None
        if isinstance(tuning, Mapping) and isinstance(storage, str) and not blank(storage):
            tuning = {**tuning, key: beside(storage, file_base, f"tuning.{key}", source)}
            data["tuning"] = tuning
    _refuse_at_in_host(data, env, source)
    version = data.get("version", CONFIG_VERSION)
    if isinstance(version, int) and version > CONFIG_VERSION:
        raise ConfigError(
            f"{source}: `version` {version} is newer than this tunewatch understands "
            f"({CONFIG_VERSION}); upgrade tunewatch"
        )
    try:
        context = None if config_dir is None else {"config_dir": str(config_dir)}
        return Config.model_validate(data, context=context)
    except ValidationError as exc:
        # not chained: a traceback rendered pydantic's whole input, YAML aliases expanded
        raise ConfigError(format_errors(exc, source)) from None


def _refuse_at_in_host(data: Mapping[str, Any], env: Mapping[str, str], source: str) -> None:
    """Refuse a database URL whose host holds an ``@`` (a password's unescaped one) here,
    before validation, whose message quotes the value: its host is the password's tail."""
    store, tuning = data.get("store"), data.get("tuning")
    named = f"${ENV_STORE_URL}" if env.get(ENV_STORE_URL) else "`store.url`"
    for key, section, field in (
        (named, store, "url"),
        ("`tuning.storage_url`", tuning, "storage_url"),
        ("`tuning.archive_storage_url`", tuning, "archive_storage_url"),
    ):
        url = section.get(field) if isinstance(section, Mapping) else None
        if isinstance(url, str) and host_holds_at(url):
            raise ConfigError(f"{source}: {key}: {AT_IN_HOST}")


def load_config(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Load the YAML file at ``path`` (or only defaults and environment when ``None``).
    Its relative paths are read beside ``path`` as given, made absolute but not through
    its symlinks (a file linked from another directory reads them beside the link)."""
    if path is None:
        return build_config({}, env=env, source="<defaults>")
    path = Path(path)
    text = read_config_text(path)  # at most MAX_CONFIG_BYTES: /dev/zero was read until OOM
    try:
        raw = read_yaml(text)
    except yaml.YAMLError as exc:  # line, column and problem: no text of the line (a password)
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except RecursionError as exc:  # PyYAML recurses once per level of nesting
        raise ConfigError(
            f"{path}: not readable YAML: nested deeper than the YAML reader can follow (a few "
            "hundred levels of `[`, `{` or indentation; a configuration needs fewer than ten)"
        ) from exc
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    # absolute, symlinks not resolved: a Kubernetes ConfigMap mounts each key as a symlink
    # through `..data` to a timestamped directory the next update deletes; resolved, the
    # relative paths (a search space) were pinned there, and every job failed after it
    config_dir = Path(os.path.abspath(path)).parent
    return build_config(raw, env=env, source=str(path), config_dir=config_dir)
