"""Role-based bearer tokens: generated once, stored as SHA-256, compared in constant time.

Deny by default: every route names the permission it needs and only the roles listed in
:data:`ROLE_PERMISSIONS` grant it. ``admin`` holds every permission.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from tunewatch._errors import StoreError, TunewatchError

logger = logging.getLogger(__name__)

Role = Literal["viewer", "scorer", "labeller", "alertmanager", "operator", "approver", "admin"]
Permission = Literal["read", "score", "label", "alert", "register", "operate", "approve"]
ROLES: tuple[str, ...] = get_args(Role)
PERMISSIONS: tuple[str, ...] = get_args(Permission)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "scorer": frozenset({"score"}),
    "labeller": frozenset({"label"}),
    "alertmanager": frozenset({"alert"}),
    "operator": frozenset({"read", "register", "operate"}),
    "approver": frozenset({"read", "approve"}),
    "admin": frozenset(PERMISSIONS),
}

TOKEN_PREFIX = "tw_"


class AuthError(TunewatchError):
    """Authentication or authorisation failed; ``status`` is 401 or 403. A 403 names the
    caller whose role was refused (``principal``): the governance routes audit it."""

    def __init__(
        self, message: str, *, code: str, status: int, principal: Principal | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.principal = principal


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the token's name and role (``anonymous`` in auth-less mode)."""

    name: str
    role: str

    def can(self, permission: str) -> bool:
        return permission in ROLE_PERMISSIONS.get(self.role, frozenset())


ANONYMOUS_ADMIN = Principal(name="anonymous", role="admin")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # surrogateescape keeps any byte sequence a client sent hashable without raising.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"`role` must be one of {', '.join(ROLES)}, got {role!r}")
    return role


TokenLookup = Callable[[str], "tuple[str, str, str] | None"]
"""Maps a token hash to ``(name, role, stored_hash)`` or ``None`` when unknown or revoked."""

_MAX_CACHED = 10_000
_FAILURE_MEMORY_S = 1.0
#: The least time an answer is kept: the front looks a token up in a worker thread and
#: the request reads the answer from the cache when the event loop resumes it, so an answer
#: kept shorter (``ttl_s: 0``) sent every request's check back to the database, on the loop.
_MIN_KEEP_S = 1.0


class Authenticator:
    """Resolves ``Authorization`` headers to principals, with a short positive/negative cache.

    The cache keeps the hot scoring path off the database; a revoked token stops working
    within ``ttl_s`` seconds (at least one: see :data:`_MIN_KEEP_S`), counted from when
    its lookup answered.
    """

    def __init__(
        self,
        lookup: TokenLookup,
        *,
        disabled: bool = False,
        ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self.disabled = disabled
        self._ttl = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._failed: tuple[float, StoreError] | None = None  # the store's last refusal
        # The last Authorization header hashed (as bytes) and its token's digest: a
        # client sends one token with each request, which the front checks before and
        # after its body, and SHA-256 through OpenSSL cost the event loop ~2 µs a check.
        # Only that one header is kept: the last caller's token, until the next one's.
        self._last: tuple[bytes, str] | None = None
        self._lock = threading.Lock()
        if disabled:
            logger.warning(
                "authentication is DISABLED (auth.disabled: true): every request acts as admin; "
                "use this for local demos only"
            )

    def authenticate(self, header: str | None, permission: str) -> Principal:
        return _permitted(self.identify(header), permission)

    def identify(self, header: str | None) -> Principal:
        """The holder of the bearer token in ``header``, whatever it may do; 401 if none."""
        if self.disabled:
            return ANONYMOUS_ADMIN
        principal = self._resolve(self._digest(header))
        if principal is None:
            raise _invalid_token()
        return principal

    def authenticate_cached(self, header: str | None, permission: str) -> Principal | None:
        """:meth:`authenticate` answered from the cache alone: ``None`` when the token's
        answer is not cached (or has expired), to be looked up off the event loop
        (:meth:`resolve`) and asked again. The scoring path's check: at most one hash of
        the token (none when it is the last header's), where :meth:`resolved` then
        :meth:`authenticate` took two."""
        if self.disabled:
            return ANONYMOUS_ADMIN
        cached = self._cache.get(self._digest(header))
        if cached is None or cached[0] <= self._clock():
            return None
        if cached[1] is None:
            raise _invalid_token()
        return _permitted(cached[1], permission)

    def resolved(self, header: str | None) -> bool:
        """Whether :meth:`identify` can answer ``header`` without the database (auth is
        off, the header is not a bearer token, or the token's answer is cached)."""
        if self.disabled or not header or _bearer(header) is None:
            return True
        cached = self._cache.get(self._digest(header))
        return cached is not None and cached[0] > self._clock()

    def resolve(self, header: str | None) -> None:
        """Look ``header``'s token up and cache the answer: run off the event loop before
        a request that needs it. Errors are left for the request's own check to raise; a
        store that failed is remembered for a second, so that check does not wait on the
        database again from the event loop."""
        try:
            self.identify(header)
        except (AuthError, StoreError):
            pass

    def _digest(self, header: str | None) -> str:
        """:func:`_digest` of ``header``, hashed unless it is the last header hashed
        (compared in constant time, as the stored digests are)."""
        if not header:
            return _digest(header)  # raises
        raw = header.encode("utf-8", "surrogatepass")  # every str encodes, each its own
        last = self._last
        if last is not None and hmac.compare_digest(last[0], raw):
            return last[1]
        digest = _digest(header)
        self._last = (raw, digest)
        return digest

    def _resolve(self, digest: str) -> Principal | None:
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        failed = self._failed
        if failed is not None and failed[0] > now:
            raise failed[1]
        try:
            found = self._lookup(digest)
        except StoreError as exc:
            # from when it failed: a store that takes seconds to fail is not asked again
            # by the request that waited for it
            self._failed = (self._clock() + _FAILURE_MEMORY_S, exc)
            raise
        self._failed = None
        principal = None
        # Constant-time comparison of the stored digest, as bytes (compare_digest raises
        # TypeError on non-ASCII str).
        if found is not None and hmac.compare_digest(found[2].encode(), digest.encode()):
            principal = Principal(name=found[0], role=found[1])
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                # A flood of made-up tokens: forget them, not the tokens that exist.
                self._cache = {k: v for k, v in self._cache.items() if v[1] is not None}
                if len(self._cache) >= _MAX_CACHED:
                    self._cache.clear()
            self._cache[digest] = (self._clock() + max(self._ttl, _MIN_KEEP_S), principal)
        return principal

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()


def _permitted(principal: Principal, permission: str) -> Principal:
    if not principal.can(permission):
        raise AuthError(
            f"role {principal.role!r} may not {permission}",
            code="forbidden",
            status=403,
            principal=principal,
        )
    return principal


def _digest(header: str | None) -> str:
    """The hash of the bearer token in ``header``, the cache's and the store's key; 401
    if there is none."""
    if not header:
        raise AuthError("missing bearer token", code="unauthenticated", status=401)
    token = _bearer(header)
    if token is None:
        raise AuthError(
            "the Authorization header must be 'Bearer <token>'",
            code="unauthenticated",
            status=401,
        )
    return hash_token(token)


def _invalid_token() -> AuthError:
    return AuthError("invalid or revoked token", code="invalid_token", status=401)


def _bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (``None`` if it is not one)."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
