"""A re-tuning job's training window: the newest labelled traffic when the job was
queued (labels old enough with ``comparison.label_maturity_s`` set), after the labelled
rows the champion it was queued against was tuned on that the window does not read again:
a hand-registered champion's whole reference; a tuned one's traffic part, not the rows
it inherited itself (every later generation trained on, and stored, the first one's).

The window's every request, labelled or not, is kept beside it (:class:`TuningWindow`):
the job's reference snapshot holds them all as its traffic part, which its version's
drift compares with (:mod:`tunewatch._tuning_reference`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from monitor.objectives import Objective, make_objective
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import ModelConfig
from tunewatch._errors import NotFoundError, TuningError
from tunewatch._evaluation_baseline import traffic_rows
from tunewatch._reference import Reference
from tunewatch._tuning_cv import cv_groups
from tunewatch.store import JobRow, ModelRow, Store, VersionRow, Window

logger = logging.getLogger(__name__)

#: The largest magnitude a regression label a job trains on may have (float32's).
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, eq=False)
class TuningWindow:
    """A job's window (:func:`tuning_window`): the rows it trains on, and every request
    of its traffic window, which its reference snapshot holds."""

    #: float32: the rows taken from the parent's reference, then the labelled traffic
    x: np.ndarray
    #: their labels (int64 for a classifier)
    y: np.ndarray
    #: how many of the rows trained on are traffic: the last ones
    n_traffic: int
    #: float32: every request row of the traffic window, in the order received
    traffic: np.ndarray
    #: per ``traffic`` row, whether it is trained on (``x``'s last rows, in order)
    trained: np.ndarray
    #: when the newest ``traffic`` row was received (``None``: the window holds none)
    through: datetime | None

    @property
    def training(self) -> tuple[np.ndarray, np.ndarray, int]:
        """What the job trains on: features, labels, and how many of the rows are traffic."""
        return self.x, self.y, self.n_traffic

    @property
    def n_inherited(self) -> int:
        """How many of the rows trained on were taken from the parent's reference."""
        return int(self.x.shape[0]) - self.n_traffic


def training_window(
    store: Store,
    artefacts: ArtefactStore,
    model: ModelRow,
    cfg: ModelConfig,
    job: JobRow,
    *,
    parent: VersionRow | None,
    on_window_start: Callable[[datetime], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """What ``job`` trains on (:attr:`TuningWindow.training` of :func:`tuning_window`)."""
    return tuning_window(
        store, artefacts, model, cfg, job, parent=parent, on_window_start=on_window_start
    ).training


def tuning_window(
    store: Store,
    artefacts: ArtefactStore,
    model: ModelRow,
    cfg: ModelConfig,
    job: JobRow,
    *,
    parent: VersionRow | None,
    on_window_start: Callable[[datetime], None] | None = None,
) -> TuningWindow:
    """The newest requests holding ``window_rows`` rows, and the labels known, when
    ``job`` was created (every worker that joins or resumes the job trains on the same
    data), after the reference rows of ``parent`` (the champion the job was queued
    against) it was tuned on and the window does not read again (:func:`_parent_rows`).
    With ``comparison.label_maturity_s`` set, only requests at least that old then:
    younger ones hold only their early labels (outcome-dependent delay), which would bias
    the training set towards the early class. Returns the features, the labels and how
    many of the rows are traffic (the last ones), and beside them every request of the
    window, those it does not train on too (:class:`TuningWindow`). With
    ``tuning.cv_group_column`` set, a row missing its group id is refused here
    (:func:`tunewatch._tuning_cv.cv_groups`), the reference's counted apart from the
    traffic's.

    Rows whose label no job can train on (:func:`_valid_labels`) or the objective does
    not score whatever the prediction (:meth:`Objective.valid_labels`: MAPE's labels of
    0, RMSE's past ±5e24 such as a 3.4e38 "missing" sentinel) are left out of both parts
    trained on, each count logged: monitoring and the comparisons leave the latter out by
    the same rule (:meth:`Objective.valid_rows`), and a trial scoring a fold holding one
    failed, or tuned towards the sentinel (the window's traffic keeps such a request, as
    one it does not train on).

    ``on_window_start`` is called with the time of the earliest request the window read
    (not with an empty window): a worker reading it again reads the same rows as long as
    none received from then on is deleted (the retention purge keeps them for a queued or
    running job, :mod:`tunewatch._retention_task`)."""
    tj = cfg.tuning
    objective = make_objective(cfg.objective.name, task=model.task, **cfg.objective.params)
    matured_before = cfg.comparison.matured_before(job.created_at)
    window = store.window(
        model.name,
        n_features=len(model.feature_names),
        last_n=tj.window_rows,
        end=matured_before or job.created_at,
    )
    if on_window_start is not None and window.received_at.size:
        # epoch seconds as float64 hold a microsecond exactly: the row's own time
        on_window_start(datetime.fromtimestamp(float(window.received_at.min()), UTC))
    labelled = window.labelled() & (window.label_received_at < job.created_at.timestamp())
    labelled = _trainable(window, labelled, model, job, objective)
    x, y = window.features[labelled], window.labels[labelled]
    n_traffic = int(labelled.sum())
    sha = parent.details.get("reference_sha256") if parent else None
    if tj.include_reference and sha:
        assert parent is not None
        reference = Reference.from_bytes(artefacts.get(sha, ".npz"))
        if reference.labels is not None:
            start, stop = _parent_rows(
                store,
                cfg,
                parent,
                reference.labels.shape[0],
                window,
                labelled,
                job=job,
                format_version=reference.format_version,
            )
            labels = np.asarray(reference.labels[start:stop], dtype=np.float64)
            known = ~np.isnan(labels)  # NaN: unknown (a job's version did not train on it)
            usable = known & _valid_labels(labels, model.task)
            if (known & ~usable).any():
                logger.warning(
                    "job=%d model=%s: %d of the %d reference rows taken from version %d "
                    "have a label not valid for a %s model (%s); left out",
                    job.id,
                    model.name,
                    int((known & ~usable).sum()),
                    stop - start,
                    parent.version,
                    model.task,
                    _RULES.get(model.task, "not finite"),
                )
            if not known.all():
                logger.info(
                    "job=%d model=%s: %d of the %d reference rows taken from version %d "
                    "have no label; left out",
                    job.id,
                    model.name,
                    int((~known).sum()),
                    stop - start,
                    parent.version,
                )
            usable[usable] = _scorable(
                labels[usable],
                objective,
                f"reference rows taken from version {parent.version}",
                stop - start,
                model=model,
                job=job,
            )
            features = reference.features[start:stop][usable].astype(np.float32)
            x = np.vstack([features, x])
            y = np.concatenate([labels[usable], y])
    # too little traffic: say whether the label maturity left the rest out
    immature, maturity = 0, ""
    if matured_before is not None and n_traffic < tj.min_rows:
        immature = _immature_rows(store, model, cfg, job, matured_before)
        maturity = (
            f"comparison.label_maturity_s ({cfg.comparison.label_maturity_s:.10g} s) left "
            f"out {immature} labelled rows received less than that before the job was "
            "queued"
        )
    if immature and x.shape[0] >= tj.min_rows:
        logger.warning(
            "job=%d model=%s: the window holds %d traffic rows and trains on %d reference rows; %s",
            job.id,
            model.name,
            n_traffic,
            x.shape[0] - n_traffic,
            maturity,
        )
    if x.shape[0] < tj.min_rows:
        raise TuningError(
            f"model {model.name!r} has {x.shape[0]} labelled rows; a job "
            f"needs at least {tj.min_rows} (tuning.min_rows)"
            + (f"; {maturity}" if immature else "")
        )
    # grouped CV's ids, checked here, where each row's part is known: a reference row
    # missing its id is not one the operator finds in the traffic
    cv_groups(
        tj,
        model.feature_names,
        x,
        n_inherited=x.shape[0] - n_traffic,
        parent_version=parent.version if parent is not None else None,
    )
    if model.task != "regression":
        y = y.astype(np.int64)
    return TuningWindow(
        x=np.ascontiguousarray(x, dtype=np.float32),
        y=y,
        n_traffic=n_traffic,
        traffic=np.ascontiguousarray(window.features, dtype=np.float32),
        trained=labelled,
        through=(
            datetime.fromtimestamp(float(window.received_at.max()), UTC)
            if window.received_at.size
            else None
        ),
    )


def _immature_rows(
    store: Store, model: ModelRow, cfg: ModelConfig, job: JobRow, matured_before: datetime
) -> int:
    """Labelled requests of the newest ``window_rows`` the label maturity left out of
    ``job``'s window: received after ``matured_before``, labelled before the job."""
    young = store.window(
        model.name,
        n_features=len(model.feature_names),
        last_n=cfg.tuning.window_rows,
        start=matured_before,
        end=job.created_at,
        with_features=False,
    )
    labelled = young.labelled() & (young.label_received_at < job.created_at.timestamp())
    return int(labelled.sum())


def _trainable(
    window: Window, labelled: np.ndarray, model: ModelRow, job: JobRow, objective: Objective
) -> np.ndarray:
    """``labelled`` less the window's rows whose label no job can train on
    (:func:`_valid_labels`): stored before the labels API refused them (a regression label
    of 1e300 failed every trial of every job with an infinite loss while its request was
    in the window), or by a store written to directly; and less those ``objective``
    cannot score (:func:`_scorable`)."""
    usable = labelled.copy()
    usable[labelled] = _valid_labels(np.asarray(window.labels[labelled]), model.task)
    left_out = int(labelled.sum() - usable.sum())
    if left_out:
        logger.warning(
            "job=%d model=%s: %d of the %d labelled traffic rows in the window have no "
            "label valid for a %s model (not finite, or %s); left out",
            job.id,
            model.name,
            left_out,
            int(labelled.sum()),
            model.task,
            _RULES.get(model.task, "not finite"),
        )
    n = int(usable.sum())
    usable[usable] = _scorable(
        np.asarray(window.labels[usable]),
        objective,
        "labelled traffic rows in the window",
        n,
        model=model,
        job=job,
    )
    return usable


def _scorable(
    labels: np.ndarray,
    objective: Objective,
    what: str,
    n: int,
    *,
    model: ModelRow,
    job: JobRow,
) -> np.ndarray:
    """Which ``labels`` ``objective`` scores whatever the prediction
    (:meth:`Objective.valid_labels`, the rule :meth:`Objective.valid_rows` applies in
    monitoring and the comparisons; a count of the others, of ``n`` ``what``, logged
    with the objective's :attr:`Objective.label_rule`)."""
    scorable = np.asarray(objective.valid_labels(labels), dtype=bool)
    left_out = int((~scorable).sum())
    if left_out:
        logger.warning(
            "job=%d model=%s: %d of the %d %s have a label the objective %s cannot score "
            "(%s); left out, as monitoring and the comparisons leave them out",
            job.id,
            model.name,
            left_out,
            n,
            what,
            objective.describe(),
            objective.label_rule,
        )
    return scorable


#: What :func:`_valid_labels` holds a task's labels to, as its warnings say.
_RULES = {
    "binary": "not 0 or 1",
    "multiclass": "not a class index",
    "regression": f"past float32's range of ±{_FLOAT32_MAX:.6g}",
}


def _valid_labels(labels: np.ndarray, task: str) -> np.ndarray:
    """Which ``labels`` a job can train on, by the rules the labels API enforces for the
    task: finite; 0 or 1 (binary); a class index (multiclass); within float32's range
    (regression: the range every stored input and output is held to)."""
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(labels)
        if task == "binary":
            usable &= (labels == 0) | (labels == 1)
        elif task == "multiclass":
            usable &= (labels >= 0) & (labels < 2**31) & (labels == np.floor(labels))
        else:
            usable &= np.abs(labels) <= _FLOAT32_MAX
    return np.asarray(usable)


def _parent_rows(
    store: Store,
    cfg: ModelConfig,
    parent: VersionRow,
    n: int,
    window: Window,
    labelled: np.ndarray,
    *,
    job: JobRow,
    format_version: int,
) -> tuple[int, int]:
    """Which of ``parent``'s ``n`` reference rows ``job`` trains on, as ``[start, stop)``:
    the rows ``parent`` was tuned on, the regime it serves.

    A version a job of this store registered holds its training rows: the rows it took
    from its own parent, then the traffic it was tuned on, its details' ``traffic_rows``
    (:func:`tunewatch._evaluation_baseline.traffic_rows`, the part its monitors compare
    with). Only that traffic is taken: the rows before it are an older regime (after a
    drift, the one before it), and taking them carried the first version's rows into
    every later generation. Of that traffic, the newest rows this job's window reads again
    are left out, so no row is trained on twice (shuffled CV would score copies in training
    and test folds): the window's rows received before ``parent``'s job's window ended,
    which were its window's newest. A snapshot whose traffic part holds every request of
    that window (:attr:`Reference.FORMAT_VERSION` 2), labelled or not, tells when the
    newest was received (``traffic_through``): the window's rows received by then are
    those. One that held only the labelled rows (format 1) does not, and those are its
    window's rows labelled before that job was queued (request times may be a client's;
    a label's is the store's). A version registered by hand or imported (its traffic was
    another store's: none is read here), or one whose details tell no traffic part, gives
    all its rows."""
    if "imported" in parent.details:  # imports once kept the source's `traffic_rows` here
        return 0, n
    own = traffic_rows(parent.details, n)
    if own is None:
        return 0, n
    source = parent.details.get("job")
    try:
        queued = store.get_job(source).created_at if isinstance(source, int) else None
    except NotFoundError:
        queued = None
    if queued is None:
        logger.warning(
            "job=%d model=%s: version %d's job (%r) cannot be read, so which of its %d "
            "traffic rows this window reads again is not known; none of them is taken",
            job.id,
            parent.model,
            parent.version,
            source,
            own,
        )
        return n - own, n - own
    # its window ended at its queueing less the label maturity: this config's, as no
    # version records the one its job ran with
    ended = cfg.comparison.matured_before(queued) or queued
    through = _through(parent) if format_version >= 2 else None
    if through is not None:  # its traffic part: every request of its window
        again = window.received_at <= through.timestamp()
    else:  # its window's labelled rows only
        again = (
            labelled
            & (window.received_at < ended.timestamp())
            & (window.label_received_at < queued.timestamp())
        )
    taken = own - min(int(again.sum()), own)
    logger.info(
        "job=%d model=%s: takes %d of the %d traffic rows of version %d's reference (its "
        "window reads the other %d again) and none of the %d rows it inherited",
        job.id,
        parent.model,
        taken,
        own,
        parent.version,
        own - taken,
        n - own,
    )
    return n - own, n - own + taken


def _through(version: VersionRow) -> datetime | None:
    """When the newest request of the traffic window ``version``'s job was tuned on was
    received, as its details tell (``traffic_through``); ``None`` when they do not."""
    told = version.details.get("traffic_through")
    try:
        through = datetime.fromisoformat(told) if isinstance(told, str) else None
    except ValueError:
        through = None
    return through if through is None or through.tzinfo is not None else None
