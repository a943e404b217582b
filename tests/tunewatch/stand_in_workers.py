"""Launchers of stand-in workers: small Python processes run in place of ``tunewatch
worker --job N`` (each test module has its own script: how it claims and ends its job), so
that a launcher's reaping is tested on processes that start in milliseconds."""

from __future__ import annotations

from pathlib import Path

from tunewatch._launcher import JobLauncher
from tunewatch.store import Store


class StandIns:
    """Queues a job of model ``m`` per :meth:`launch` and starts its worker with a launcher
    of its own; :meth:`stop` stops every launcher made."""

    def __init__(self, store: Store, config_path: Path) -> None:
        self._store = store
        self._config_path = config_path
        self._launchers: list[JobLauncher] = []

    def launch(
        self, command: list[str], *, retry_after_s: float | None = None
    ) -> tuple[JobLauncher, int, int]:
        """Start ``command`` (the job id appended) as the new job's worker and wait for it
        to exit; ``(launcher, job id, worker pid)``. The worker is not reaped yet: only the
        reap settles the job within a test (no job goes stale)."""
        job, _ = self._store.create_job(model="m", kind="retune", trigger={}, spec={})
        launcher = JobLauncher(
            store=self._store,
            config_path=self._config_path,
            workers=1,
            stale_after_s=3600.0,
            command=command,
            **({} if retry_after_s is None else {"retry_after_s": retry_after_s}),
        )
        self._launchers.append(launcher)
        assert launcher.tick() == [job.id]
        proc = launcher._procs[job.id]
        proc.wait(30)
        return launcher, job.id, proc.pid

    def stop(self) -> None:
        for launcher in self._launchers:
            launcher.stop()
