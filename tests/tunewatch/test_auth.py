from __future__ import annotations

import pytest

from tunewatch import _auth as auth_module
from tunewatch._auth import ROLE_PERMISSIONS, ROLES, Authenticator, AuthError, hash_token
from tunewatch._errors import StoreUnavailableError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _auth(tokens: dict[str, tuple[str, str]], clock: Clock, ttl: float = 5.0) -> Authenticator:
    table = {hash_token(t): (name, role, hash_token(t)) for t, (name, role) in tokens.items()}
    return Authenticator(table.get, ttl_s=ttl, clock=clock)


def test_every_role_is_mapped_and_admin_holds_every_permission() -> None:
    assert set(ROLE_PERMISSIONS) == set(ROLES)
    assert ROLE_PERMISSIONS["admin"] >= set().union(*ROLE_PERMISSIONS.values())


def test_each_role_holds_exactly_the_permissions_the_api_table_gives_it() -> None:
    """Written out from the README's API table (DESIGN §6 names the roles), not read
    from the table the daemon enforces: a viewer given ``register`` passed every test.
    GET routes are a viewer's, and the roles that act on what they read (operator,
    approver) read too; the machine roles (scorer, labeller, alertmanager) only send."""
    assert ROLE_PERMISSIONS == {
        "viewer": {"read"},
        "scorer": {"score"},  # OIP inference and mirror records
        "labeller": {"label"},  # feedback
        "alertmanager": {"alert"},  # the Alertmanager webhook
        # register; promote, rollback, retire, evaluate, compare, retune
        "operator": {"read", "register", "operate"},
        "approver": {"read", "approve"},  # approve, reject
        "admin": {"read", "score", "label", "alert", "register", "operate", "approve"},
    }


def test_missing_malformed_unknown_and_wrong_role_tokens_are_refused() -> None:
    auth = _auth({"tw_good": ("s", "scorer")}, Clock())
    cases = [
        (None, 401, "unauthenticated"),
        ("Basic abc", 401, "unauthenticated"),
        ("Bearer ", 401, "unauthenticated"),
        ("Bearer tw_bad", 401, "invalid_token"),
        ("Bearer tw_gööd", 401, "invalid_token"),
    ]
    for header, status, code in cases:
        with pytest.raises(AuthError) as info:
            auth.authenticate(header, "score")
        assert (info.value.status, info.value.code) == (status, code), header
    with pytest.raises(AuthError) as info:
        auth.authenticate("Bearer tw_good", "label")
    assert (info.value.status, info.value.code) == (403, "forbidden")
    assert auth.authenticate("Bearer tw_good", "score").name == "s"


def test_revoked_token_stops_working_after_the_cache_ttl() -> None:
    clock = Clock()
    table = {hash_token("tw_x"): ("x", "viewer", hash_token("tw_x"))}
    auth = Authenticator(table.get, ttl_s=5.0, clock=clock)
    assert auth.authenticate("Bearer tw_x", "read").role == "viewer"
    table.clear()
    clock.now = 4.0
    assert auth.authenticate("Bearer tw_x", "read").role == "viewer"
    clock.now = 5.5
    with pytest.raises(AuthError):
        auth.authenticate("Bearer tw_x", "read")


def test_the_cached_check_answers_as_authenticate_or_asks_for_a_lookup() -> None:
    """The scoring path's one-hash check: the same answers as :meth:`authenticate` for a
    token whose answer is cached, ``None`` (look it up) for one whose is not or expired,
    never asking the store itself."""
    clock = Clock()
    lookups: list[str] = []
    table = {hash_token("tw_s"): ("s", "scorer", hash_token("tw_s"))}

    def lookup(digest: str) -> tuple[str, str, str] | None:
        lookups.append(digest)
        return table.get(digest)

    auth = Authenticator(lookup, ttl_s=5.0, clock=clock)
    for header in ("Bearer tw_s", "Bearer tw_bad"):
        assert auth.authenticate_cached(header, "score") is None
    assert lookups == []
    for header, status, code in (
        (None, 401, "unauthenticated"),
        ("Basic x", 401, "unauthenticated"),
    ):
        with pytest.raises(AuthError) as info:
            auth.authenticate_cached(header, "score")
        assert (info.value.status, info.value.code) == (status, code)
    auth.resolve("Bearer tw_s")
    auth.resolve("Bearer tw_bad")
    assert len(lookups) == 2
    principal = auth.authenticate_cached("Bearer tw_s", "score")
    assert principal is not None and principal.name == "s"
    for header, permission, status, code in (
        ("Bearer tw_bad", "score", 401, "invalid_token"),
        ("Bearer tw_s", "label", 403, "forbidden"),
    ):
        with pytest.raises(AuthError) as info:
            auth.authenticate_cached(header, permission)
        assert (info.value.status, info.value.code) == (status, code)
    clock.now = 5.5  # expired: looked up again, off the caller's loop
    assert auth.authenticate_cached("Bearer tw_s", "score") is None
    assert len(lookups) == 2


def test_a_header_checked_again_is_not_hashed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client sends one token with each request, checked before and after its body:
    hashed each time (SHA-256 through OpenSSL), the checks cost the event loop ~4 µs a
    request. The last header's digest is kept; any other header is hashed, and each
    answers as its own token."""
    auth = _auth({"tw_s": ("s", "scorer"), "tw_v": ("v", "viewer")}, Clock())
    hashed: list[str] = []

    def counted(token: str) -> str:
        hashed.append(token)
        return hash_token(token)

    monkeypatch.setattr(auth_module, "hash_token", counted)
    auth.resolve("Bearer tw_s")
    for _ in range(3):
        principal = auth.authenticate_cached("Bearer tw_s", "score")
        assert principal is not None and principal.name == "s"
    assert auth.authenticate("Bearer tw_s", "score").name == "s"
    assert hashed == ["tw_s"]
    assert auth.authenticate("Bearer tw_v", "read").name == "v"
    for header in ("Bearer tw_sx", "Bearer tw_", "Bearer tw_s\xe9"):
        with pytest.raises(AuthError):  # none of them is the last one's token
            auth.authenticate(header, "score")
    assert auth.authenticate("bearer  tw_s ", "score").name == "s"  # another header
    principal = auth.authenticate_cached("Bearer tw_s", "score")
    assert principal is not None and principal.name == "s"
    assert hashed == ["tw_s", "tw_v", "tw_sx", "tw_", "tw_s\xe9", "tw_s", "tw_s"]


def test_disabled_auth_acts_as_admin_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    auth = Authenticator(lambda h: None, disabled=True)
    assert auth.authenticate(None, "approve").role == "admin"
    assert "authentication is DISABLED" in caplog.text


def test_a_flood_of_unknown_tokens_does_not_evict_the_known_ones() -> None:
    """The cache was cleared whole past 10,000 entries, so random tokens sent a valid
    token's every request back to the database."""
    lookups: list[str] = []
    table = {hash_token("tw_x"): ("x", "viewer", hash_token("tw_x"))}

    def lookup(digest: str) -> tuple[str, str, str] | None:
        lookups.append(digest)
        return table.get(digest)

    auth = Authenticator(lookup, ttl_s=60.0, clock=Clock())
    assert auth.authenticate("Bearer tw_x", "read").name == "x"
    for i in range(25_000):
        with pytest.raises(AuthError):
            auth.authenticate(f"Bearer tw_random_{i}", "read")
    assert auth.resolved("Bearer tw_x")
    before = len(lookups)
    assert auth.authenticate("Bearer tw_x", "read").name == "x"
    assert len(lookups) == before  # still cached


@pytest.mark.parametrize("ttl", [0.0, 1.0, 5.0])
def test_an_answer_looked_up_slowly_is_still_cached_for_the_request(ttl: float) -> None:
    """The entry's lifetime was counted from when the lookup started: a lookup slower
    than the ttl (or any lookup with ttl 0) stored an entry that had already expired, so
    the request's own check looked the token up again, on the event loop."""
    clock = Clock()
    lookups: list[str] = []
    table = {hash_token("tw_x"): ("x", "viewer", hash_token("tw_x"))}

    def slow(digest: str) -> tuple[str, str, str] | None:
        lookups.append(digest)
        clock.now += 6.0  # a database answering in 6 s
        return table.get(digest)

    auth = Authenticator(slow, ttl_s=ttl, clock=clock)
    auth.resolve("Bearer tw_x")  # the front, in a worker thread
    assert auth.resolved("Bearer tw_x")
    assert auth.authenticate("Bearer tw_x", "read").name == "x"  # the request, on the loop
    assert len(lookups) == 1


def test_a_store_that_fails_slowly_is_remembered_for_the_request() -> None:
    """The failure memory (1 s) was counted from the lookup's start: a store that took
    4 s to fail was asked again from the event loop by the request's own check."""
    clock = Clock()
    calls: list[str] = []

    def failing(digest: str) -> tuple[str, str, str] | None:
        calls.append(digest)
        clock.now += 4.0
        raise StoreUnavailableError("database is down")

    auth = Authenticator(failing, clock=clock)
    auth.resolve("Bearer tw_x")
    with pytest.raises(StoreUnavailableError):
        auth.authenticate("Bearer tw_x", "read")
    assert len(calls) == 1
    clock.now += 1.5  # past the memory: asked again
    with pytest.raises(StoreUnavailableError):
        auth.authenticate("Bearer tw_x", "read")
    assert len(calls) == 2
