"""Versions whose artefact would not load, and when the refresh tries each again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

#: The first wait before a version that would not load is tried again; each failure
#: doubles it, up to :data:`RETRY_MAX_S`.
RETRY_FIRST_S: Final = 30.0
RETRY_MAX_S: Final = 3600.0
#: The longest wait of a champion that would not load: its model is served stale (or not
#: at all) meanwhile, so it is tried more often than a shadow version.
CHAMPION_RETRY_MAX_S: Final = 300.0


@dataclass(frozen=True, slots=True)
class _Failure:
    sha256: str
    failures: int
    retry_at: float


class Unloadable:
    """Versions, by ``(model, version)``, whose artefact failed to load.

    The refresh leaves a shadow version out of the line-up it wants, and leaves a model
    whose champion would not load as it is served, until the retry time, so it neither
    reloads (and logs) it every tick nor gives up on it: a fault that goes
    away (an artefact another host has not finished sharing, a full disk, a file
    restored from backup) ends with the version shadowed, at most
    :data:`RETRY_MAX_S` later. Another artefact under the same key (a re-registration
    after a restore) is tried at once. Loads run on several threads, so every method
    holds a lock.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        first_s: float = RETRY_FIRST_S,
        max_s: float = RETRY_MAX_S,
    ) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError(f"need 0 < `first_s` <= `max_s`, got {first_s} and {max_s}")
        self._clock, self._first_s, self._max_s = clock, first_s, max_s
        self._failed: dict[tuple[str, int], _Failure] = {}
        self._lock = threading.Lock()

    def failed(self, model: str, version: int, sha256: str, *, max_s: float | None = None) -> float:
        """Record that ``version`` (artefact ``sha256``) would not load; return how many
        seconds the refresh now waits before it tries again. Each failure at or after
        the retry time doubles the wait, up to ``max_s`` (default: the instance's); one
        before it (a reload for another reason) keeps the retry time."""
        with self._lock:
            now = self._clock()
            last = self._failed.get((model, version))
            if last is not None and last.sha256 == sha256 and now < last.retry_at:
                return last.retry_at - now  # tried early (a reload for another reason)
            failures = last.failures + 1 if last is not None and last.sha256 == sha256 else 1
            cap = self._max_s if max_s is None else min(self._max_s, max_s)
            wait: float = min(cap, self._first_s * 2.0 ** (failures - 1))
            self._failed[(model, version)] = _Failure(sha256, failures, now + wait)
            return wait

    def loaded(self, model: str, version: int) -> None:
        with self._lock:
            self._failed.pop((model, version), None)

    def waiting(self, model: str, version: int, sha256: str) -> bool:
        """Whether the refresh should still leave the version out: it failed to load
        with this artefact and its retry time has not come."""
        with self._lock:
            last = self._failed.get((model, version))
            return last is not None and last.sha256 == sha256 and self._clock() < last.retry_at

    def count(self, model: str) -> int:
        """How many of ``model``'s versions are not served because they would not load."""
        with self._lock:
            return sum(1 for name, _ in self._failed if name == model)

    def forget(self, model: str, keep: set[int]) -> None:
        """Drop ``model``'s versions other than ``keep`` (those the store still serves)."""
        with self._lock:
            for key in [k for k in self._failed if k[0] == model and k[1] not in keep]:
                del self._failed[key]
