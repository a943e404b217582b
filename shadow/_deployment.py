"""Champion/challenger line-up of one served model, swapped atomically.

Readers take :attr:`Deployment.lineup` once per request — a single attribute read, no
lock — and use that immutable :class:`Lineup` throughout, so a request is scored by
exactly one champion even while another thread promotes. Writers serialise on a lock
and publish a whole new :class:`Lineup` with one reference assignment.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from shadow._errors import ShadowError, VersionNotLoadedError
from shadow._onnx import OnnxModel

logger = logging.getLogger(__name__)

Role = Literal["champion", "challenger"]


@dataclass(frozen=True, slots=True)
class LoadedVersion:
    """A model version with a live session, and its role in the line-up."""

    version: int
    model: OnnxModel
    hyperparameter_set: str
    role: Role = "challenger"

    def with_role(self, role: Role) -> LoadedVersion:
        return self if self.role == role else dataclasses.replace(self, role=role)


@dataclass(frozen=True, slots=True)
class Lineup:
    """An immutable snapshot: at most one champion and any number of challengers."""

    champion: LoadedVersion | None
    challengers: tuple[LoadedVersion, ...] = ()

    @property
    def versions(self) -> tuple[int, ...]:
        head = () if self.champion is None else (self.champion.version,)
        return head + tuple(c.version for c in self.challengers)

    def find(self, version: int) -> LoadedVersion | None:
        if self.champion is not None and self.champion.version == version:
            return self.champion
        for challenger in self.challengers:
            if challenger.version == version:
                return challenger
        return None


def _build(champion: LoadedVersion | None, challengers: Iterable[LoadedVersion]) -> Lineup:
    lineup = Lineup(
        champion=None if champion is None else champion.with_role("champion"),
        challengers=tuple(c.with_role("challenger") for c in challengers),
    )
    versions = lineup.versions
    if len(set(versions)) != len(versions):
        raise ValueError(f"a line-up must not hold a version twice, got versions {versions}")
    return lineup


class Deployment:
    """The live line-up of the model ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lineup = Lineup(champion=None)
        self._write_lock = threading.Lock()

    @property
    def lineup(self) -> Lineup:
        """The current snapshot; read it once per request."""
        return self._lineup

    def get(self, version: int) -> LoadedVersion:
        found = self._lineup.find(version)
        if found is None:
            raise VersionNotLoadedError(self.name, version)
        return found

    def set_lineup(
        self, champion: LoadedVersion | None, challengers: Iterable[LoadedVersion] = ()
    ) -> Lineup:
        """Replace the whole line-up (roles are set from the positions)."""
        lineup = _build(champion, challengers)
        with self._write_lock:
            self._lineup = lineup
        return lineup

    def add_challenger(self, loaded: LoadedVersion) -> Lineup:
        with self._write_lock:
            current = self._lineup
            if current.find(loaded.version) is not None:
                raise ShadowError(
                    f"model {self.name!r} already has version {loaded.version} loaded",
                    code="version_already_loaded",
                )
            lineup = _build(current.champion, (*current.challengers, loaded))
            self._lineup = lineup
        return lineup

    def remove(self, version: int) -> Lineup:
        """Unload a challenger. The champion cannot be removed: promote or
        :meth:`set_lineup` instead, so a model never silently loses its champion."""
        with self._write_lock:
            current = self._lineup
            if current.champion is not None and current.champion.version == version:
                raise ShadowError(
                    f"version {version} is the champion of model {self.name!r}; promote "
                    "another version before removing it",
                    code="champion_removal",
                )
            if current.find(version) is None:
                raise VersionNotLoadedError(self.name, version)
            lineup = Lineup(
                champion=current.champion,
                challengers=tuple(c for c in current.challengers if c.version != version),
            )
            self._lineup = lineup
        return lineup

    def promote(self, version: int) -> Lineup:
        """Make challenger ``version`` the champion; the old champion leaves the line-up.

        One reference swap under the writer lock: readers see the old line-up or the
        new one, never a mix.
        """
        with self._write_lock:
            current = self._lineup
            if current.champion is not None and current.champion.version == version:
                raise ShadowError(
                    f"version {version} is already the champion of model {self.name!r}",
                    code="already_champion",
                )
            chosen = next((c for c in current.challengers if c.version == version), None)
            if chosen is None:
                raise VersionNotLoadedError(self.name, version)
            lineup = Lineup(
                champion=chosen.with_role("champion"),
                challengers=tuple(c for c in current.challengers if c.version != version),
            )
            self._lineup = lineup
        old = None if current.champion is None else current.champion.version
        logger.info("model=%s promoted version=%d (previous champion %s)", self.name, version, old)
        return lineup

    def __repr__(self) -> str:
        return f"Deployment(name={self.name!r}, versions={self._lineup.versions})"
