"""One model's flood does not shed another model's few shadow jobs under a ``cpu_share``:
while the workers rest, each model may have one drain's worth (``max_batch``) of its own
jobs waiting, and only the jobs past that are shed.

On a daemon of forty models, 39 at a request a second and one saturated (4.5k
requests/s), at ``shadow_cpu_share: 0.05`` the light models lost 24-48 % of their shadow
jobs to ``cpu_share`` shedding (alone, none): the one drain's worth waiting while the
workers rested was counted over all models, the flood filled it, and every light job
offered meanwhile was shed."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
from shadow_models import N_FEATURES, Exported

from shadow import LoadedVersion, ShadowJob, ShadowQueue, ShadowResult

WAIT_S = 5.0  # upper bound for Event waits; tests never sleep

X = np.zeros((1, N_FEATURES), dtype=np.float32)


class _Clock:
    """The queue's clock, standing still at ``now``: once the workers rest they rest until
    :meth:`ShadowQueue.close`. :meth:`arm` from a drain's ``on_result``: the worker's next
    read of the clock, when it has charged that drain to the budget and asks how long to
    rest, sets :attr:`charged`."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.charged = threading.Event()
        self._armed = False

    def arm(self) -> None:
        self._armed = True

    def __call__(self) -> float:
        if self._armed and threading.current_thread() is not threading.main_thread():
            self.charged.set()
        return self.now


def _burn(cpu_s: float) -> None:
    """Spend ``cpu_s`` of this thread's CPU time."""
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass


class _Resting:
    """A started queue (``max_batch`` 4, 0.1 % of a core) whose workers rest: the first
    drain costs 4 ms of CPU, 4 s of budget against one second's credit, and its clock
    stands still. Records what was scored and what was refused, in order."""

    def __init__(self, exported: Exported, *, maxsize: int = 1000) -> None:
        self.challenger = LoadedVersion(version=2, model=exported.model, hyperparameter_set="hp")
        self.clock = _Clock(100.0)
        self.scored: list[str] = []
        self.refused: list[tuple[str, str]] = []
        self.queue = ShadowQueue(
            maxsize=maxsize,
            on_result=self._costly,
            max_batch=4,
            cpu_share=0.001,
            on_drop=self._on_drop,
            clock=self.clock,
        )

    def _costly(self, results: Sequence[ShadowResult]) -> None:
        self.scored.extend(r.request_id for r in results)
        _burn(0.004)
        self.clock.arm()

    def _on_drop(self, jobs: Sequence[ShadowJob], reason: str) -> None:
        self.refused.extend((j.request_id, reason) for j in jobs)

    def job(self, model: str, request_id: str) -> ShadowJob:
        return ShadowJob(model=model, request_id=request_id, x=X, challengers=(self.challenger,))

    def __enter__(self) -> _Resting:
        self.queue.start()
        assert self.queue.submit(self.job("heavy", "first"))
        assert self.clock.charged.wait(WAIT_S)
        assert self.queue.resting
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.queue.close(timeout=WAIT_S)  # wakes the resting worker, which scores the rest


def test_a_flooding_model_is_shed_while_a_light_model_s_jobs_are_all_scored(
    logistic: Exported,
) -> None:
    with _Resting(logistic) as rest:
        q = rest.queue
        for i in range(3):
            # one event-loop iteration's hand-off: the flood's requests with one light one
            flood = [rest.job("heavy", f"h{i}-{k}") for k in range(20)]
            offered = [*flood[:10], rest.job("light", f"l{i}"), *flood[10:]]
            # the flood holds one drain's worth waiting, the light request is taken beside it
            assert q.submit_many(offered) == (5 if i == 0 else 1)
        assert q.depth == 7
    heavy_taken = [f"h0-{k}" for k in range(4)]
    assert rest.scored == ["first", *heavy_taken, "l0", "l1", "l2"]
    shed = [f"h{i}-{k}" for i in range(3) for k in range(20) if f"h{i}-{k}" not in heavy_taken]
    assert rest.refused == [(r, "cpu_share") for r in shed]
    assert q.shed == 56 and q.dropped == 0 and q.processed == 8 and q.depth == 0


def test_each_model_holds_one_drain_s_worth_while_the_workers_rest_within_the_queue_s_bounds(
    logistic: Exported,
) -> None:
    """The flood alone is held as before; a light model offering more than a drain's worth
    at once is shed past its own; ``maxsize`` still bounds all the models' jobs together."""
    with _Resting(logistic, maxsize=10) as rest:
        q = rest.queue
        assert q.submit_many([rest.job("heavy", f"h{k}") for k in range(6)]) == 4
        assert q.submit_many([rest.job("light", f"l{k}") for k in range(6)]) == 4
        assert q.submit_many([rest.job("heavy", "h6"), rest.job("light", "l6")]) == 0
        assert q.submit_many([rest.job("third", f"t{k}") for k in range(4)]) == 2
        assert q.depth == 10
    assert rest.refused == [
        ("h4", "cpu_share"),
        ("h5", "cpu_share"),
        ("l4", "cpu_share"),
        ("l5", "cpu_share"),
        ("h6", "cpu_share"),
        ("l6", "cpu_share"),
        ("t2", "queue_full"),  # past maxsize, whatever the share
        ("t3", "queue_full"),
    ]
    assert rest.scored == ["first", "h0", "h1", "h2", "h3", "l0", "l1", "l2", "l3", "t0", "t1"]
    assert q.shed == 6 and q.dropped == 2 and q.processed == 11
