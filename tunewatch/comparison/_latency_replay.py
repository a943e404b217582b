"""The latency ratio guardrail's measurement: recorded requests replayed through fresh
sessions of the champion and the challenger, interleaved in one thread.

The recorded latencies are not like for like: the champion's are timed on the request
path, a shadow's in a deprioritised worker thread that also waits for the GIL. The same
logistic artefact as champion v1 and shadow v2, 3,000 single-row requests over loopback
HTTP, read p99 90 against 384 µs (4.26x, refused at 1.2x); the example gradient boosting
192 against 2,590 µs. Replayed here the two take turns on the same rows in the same
thread (each request scored by one, then the other, the first alternating), and only the
run is timed, as :meth:`tunewatch._runtime.Runtime.score` times it: the same artefact
twice reads ~1.0x, the example logistic against gradient boosting ~1.0x (13 µs p99 each,
2,000 runs), a 300-tree forest ~8x.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from shadow import OnnxModel
from shadow._errors import ShadowError
from shadow._validation import cast_rows
from tunewatch._errors import StoreError

if TYPE_CHECKING:
    from tunewatch._artefacts import ArtefactStore
    from tunewatch.store import Store, VersionRow

#: The newest recorded rows replayed (whole requests: up to one request's rows more),
#: each request cut to its first as many rows: one request of 4,096 rows ran a 300-tree
#: forest 0.13 s a run, and the replay took 5.6 s against a 2 s limit.
REPLAY_ROWS = 200
#: Untimed runs of each session first (its first runs allocate).
WARM_UP_RUNS = 20


@dataclass(frozen=True, slots=True)
class ReplayedLatency:
    """What a replay measured: each version's p99 over ``requests`` of the median of
    each request's runs (``runs`` in all per version)."""

    champion_p99_s: float
    challenger_p99_s: float
    runs: int
    requests: int
    elapsed_s: float

    def note(self, champion: int, challenger: int, *, subject: str = "latency ratio") -> str:
        """The replay as the decision records it (its evidence and audit notes), for
        ``subject``: the latency ratio, or the latency (the cap alone)."""
        ratio = self.challenger_p99_s / self.champion_p99_s
        return (
            f"{subject} by replay: v{challenger} p99 {self.challenger_p99_s:.6g} s is "
            f"{ratio:.3g}x v{champion}'s {self.champion_p99_s:.6g} s over the newest "
            f"{self.requests} recorded requests, each the median of its up to "
            f"{-(-self.runs // self.requests)} runs ({self.runs} runs each, interleaved in one "
            f"thread, 1 intra-op thread, the run alone timed, {self.elapsed_s:.2g} s)"
        )


class ReplayUnavailable(Exception):
    """The replay could not run; the message says why."""


class ReplayTimedOut(Exception):
    """A replayed run of the challenger passed ``scoring.run_timeout_s`` and was stopped:
    its latency is at least ``run_timeout_s`` (censored), not unmeasured."""

    def __init__(self, version: int, run_timeout_s: float) -> None:
        super().__init__(
            f"a replayed run of v{version} passed the {run_timeout_s:g} s deadline "
            "(scoring.run_timeout_s) and was stopped"
        )
        self.version = version
        self.run_timeout_s = run_timeout_s


def replay_latency(
    store: Store,
    artefacts: ArtefactStore,
    champion: VersionRow,
    challenger: VersionRow,
    *,
    runs: int,
    time_limit_s: float,
    min_runs: int,
    run_timeout_s: float | None,
) -> ReplayedLatency:
    """Replay the model's newest recorded requests through fresh sessions of both
    versions (1 intra-op thread each), champion and challenger taking turns per request
    in this thread, the first alternating; each run alone timed. Stops at ``runs`` per
    version, or once ``time_limit_s`` has passed with ``min_runs`` done: bounded by
    ``runs`` and the time limit (or ``min_runs`` slow runs), never by the traffic.
    :class:`ReplayUnavailable` when an artefact cannot be loaded, no request of the
    model's width is recorded, or a run fails; :class:`ReplayTimedOut` when a run of
    the challenger is stopped at ``run_timeout_s`` (one of the champion's is a failure)."""
    row = store.get_model(champion.model)
    window = store.window(champion.model, n_features=len(row.feature_names), last_n=REPLAY_ROWS)
    if window.n_rows == 0:
        raise ReplayUnavailable("no request of the model's features is recorded")
    ids = np.asarray(window.request_ids)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    requests = [x[:REPLAY_ROWS] for x in np.split(window.features, starts[1:])]
    sessions = [_session(artefacts, v, run_timeout_s) for v in (champion, challenger)]
    inputs = [
        [_cast(s, v.version, x) for x in requests]
        for s, v in zip(sessions, (champion, challenger), strict=True)
    ]
    # runs[side][rep, request]: each request replayed ``reps`` times by both sides, a
    # request's figure the median of its runs (an interrupt of the host lands on one
    # run, not on its request: a p99 of single runs of 10 µs models swung 1.0-1.5x)
    reps = max(runs // len(requests), 1)
    timed = np.full((2, reps, len(requests)), np.nan)
    began = time.perf_counter()
    deadline = began + time_limit_s
    done = 0  # runs of each version
    side = 0  # the side whose run is under way, for its failure
    try:
        for i in range(min(WARM_UP_RUNS, runs)):
            if time.perf_counter() > deadline:
                break
            for side in (0, 1):
                sessions[side].run(inputs[side][i % len(requests)])
        for rep, j in itertools.product(range(reps), range(len(requests))):
            # the clock read before every pair of runs, not every pass: a pass over large
            # requests went on seconds past the limit
            if done >= min_runs and time.perf_counter() > deadline:
                break
            for side in (0, 1) if (rep + j) % 2 == 0 else (1, 0):
                x = inputs[side][j]
                started = time.perf_counter()
                sessions[side].run(x)
                timed[side, rep, j] = time.perf_counter() - started
            done += 1
    except (ShadowError, ValueError) as exc:
        stopped = isinstance(exc, ShadowError) and exc.code == "run_timeout"
        if stopped and side == 1 and run_timeout_s is not None:
            raise ReplayTimedOut(challenger.version, run_timeout_s) from exc
        raise ReplayUnavailable(f"a replayed run failed: {exc}") from exc
    ran = ~np.isnan(timed[0]).all(axis=0)  # the requests replayed at least once
    per_request = np.nanmedian(timed[:, :, ran], axis=1)
    p99 = [max(float(np.quantile(per_request[side], 0.99)), 1e-9) for side in (0, 1)]
    return ReplayedLatency(
        champion_p99_s=p99[0],
        challenger_p99_s=p99[1],
        runs=done,
        requests=int(ran.sum()),
        elapsed_s=time.perf_counter() - began,
    )


def _session(
    artefacts: ArtefactStore, version: VersionRow, run_timeout_s: float | None
) -> OnnxModel:
    """A fresh session of ``version``'s artefact, as the runtime opens one (its own: the
    same artefact twice is two sessions, as two versions would be)."""
    try:
        data = artefacts.get(version.artefact_sha256)
        return OnnxModel.from_bytes(data, intra_op_threads=1, run_timeout_s=run_timeout_s)
    except (StoreError, ShadowError) as exc:
        raise ReplayUnavailable(f"v{version.version} cannot be loaded: {exc}") from exc


def _cast(session: OnnxModel, version: int, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Recorded rows (float32) in the session's input dtype, as a shadow's are cast."""
    spec = session.signature.input
    try:
        return cast_rows(x, spec.dtype, spec.name)
    except ShadowError as exc:
        raise ReplayUnavailable(f"the recorded rows do not fit v{version}'s input: {exc}") from exc
