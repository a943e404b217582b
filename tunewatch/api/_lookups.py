"""Credential look-ups in the store, a few at once per process.

A bearer token the authenticator has no answer for, and a dashboard session, are each
one indexed read of the store, run in a worker thread so that a slow or hung database
holds the request only, not the event loop. Those threads are anyio's default pool (40),
which dashboard reads, listings, governance routes and a named version's inference share:
a flood of made-up credentials (each a distinct miss) took all of them. A
:class:`LookupBound` lets at most ``most`` look-ups of one kind run at once on an event
loop (one per process); the next waits on the loop for one to finish, holding no thread.

Bearer tokens (:func:`bounded_token_lookup`, :data:`MAX_TOKEN_LOOKUPS`) and dashboard
sessions (``tunewatch.dashboard._auth``) are bounded apart, so a flood of made-up tokens
does not hold up signed-in viewers' session look-ups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
from anyio.lowlevel import RunVar

# Bearer-token look-ups in progress at once, per event loop (one per process): a look-up
# is one indexed read, so a few keep the tokens in use answered (each is cached
# afterwards, ``auth.token_cache_ttl_s``) while made-up tokens take no more of the worker
# threads than this.
MAX_TOKEN_LOOKUPS = 4

T = TypeVar("T")


class LookupBound:
    """At most ``most`` look-ups of one kind in worker threads at once, per event loop.

    The limiter is the running loop's own (a :class:`~anyio.lowlevel.RunVar`): one shared
    by the loops of a process (tests serve many) deadlocked a waiter on one loop released
    from another."""

    def __init__(self, name: str, most: int) -> None:
        if most < 1:
            raise ValueError(f"`most` must be at least 1, got {most}")
        self.most = most
        self._limiter: RunVar[anyio.CapacityLimiter] = RunVar(name)

    def limiter(self) -> anyio.CapacityLimiter:
        """The running event loop's limiter of these look-ups."""
        try:
            return self._limiter.get()
        except LookupError:
            limiter = anyio.CapacityLimiter(self.most)
            self._limiter.set(limiter)
            return limiter

    async def run(self, look_up: Callable[[], T]) -> T:
        """``look_up()`` in a worker thread, once fewer than ``most`` run; until then it
        waits on the event loop, holding no thread."""
        return await anyio.to_thread.run_sync(look_up, limiter=self.limiter())


_tokens = LookupBound("tunewatch.api.token_lookups", MAX_TOKEN_LOOKUPS)


def token_lookups() -> anyio.CapacityLimiter:
    """The running event loop's bound on bearer-token look-ups (:data:`MAX_TOKEN_LOOKUPS`)."""
    return _tokens.limiter()


async def bounded_token_lookup(look_up: Callable[[], T]) -> T:
    """``look_up()`` (a token's look-up) in a worker thread, once fewer than
    :data:`MAX_TOKEN_LOOKUPS` run; until then it waits on the event loop, holding no
    thread."""
    return await _tokens.run(look_up)
