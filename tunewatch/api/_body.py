"""Reading request bodies: size limits before parsing, content codings, strict JSON."""

from __future__ import annotations

import json
import re
import traceback
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Final, ParamSpec, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunewatch._json_text import json_integer, repeated_key
from tunewatch.api._errors import ApiError, error_response
from tunewatch.api._uploads import registration_body_limit, registration_limit_source

#: What most bodies are read under: named in their ``body_too_large``.
BODY_SETTING: Final = "`server.max_body_bytes`"


class BodyTooLargeError(ApiError):
    """413 ``body_too_large``, naming what the limit is (``source``: the setting to raise).
    It named the bytes alone, and an operator could not tell which setting to change."""

    def __init__(
        self, limit: int, source: str = BODY_SETTING, *, decompressed: bool = False
    ) -> None:
        once = " once decompressed" if decompressed else ""
        super().__init__(
            413,
            "body_too_large",
            f"request body exceeds the limit of {limit} bytes{once} ({source})",
        )


class BodyLimitMiddleware:
    """Refuses bodies over the limit from ``Content-Length`` or while streaming (chunked),
    and hands routes a gzip or deflate body inflated.

    Neither uvicorn nor Starlette limit body size; this runs before any route parses.
    Registration uploads (``POST /v1/models/{model}/versions``) get the larger artefact
    limit: what an ONNX file and a reference snapshot of ``artefact_limit`` bytes each take
    base64-encoded, plus ``limit`` for the rest (:func:`registration_body_limit`; it was
    ``artefact_limit`` itself, which a file of three quarters of it filled once encoded).
    Each refusal names the setting to raise. A compressed body is read and inflated only
    when the route reads it, which a route does after its permission check: a caller
    without a token the route accepts costs no inflation. The dashboard's sign-in, open to
    anyone, reads its form before any check: its bodies get ``form_limit``, refused as they
    arrive and inflated no further (it read up to ``limit``, 8 MiB, and inflated a gzip
    body to it, before its own 4 KiB check refused the form).
    """

    def __init__(self, app: ASGIApp, *, limit: int, artefact_limit: int, form_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.registration_limit = registration_body_limit(
            max_artefact_bytes=artefact_limit, max_body_bytes=limit
        )
        self.registration_source = registration_limit_source(artefact_limit)
        self.form_limit = form_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        registration = scope["method"] == "POST" and _REGISTRATION.match(scope["path"])
        if registration:
            limit, source = self.registration_limit, self.registration_source
        elif scope["path"] in _FORMS:
            limit, source = self.form_limit, _FORM_SOURCE
        else:
            limit, source = self.limit, BODY_SETTING
        try:
            wbits = content_coding(content_encoding(scope["headers"]))
        except ApiError as exc:
            await error_response(exc.status, exc.code, str(exc))(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    await error_response(400, "invalid_request", "invalid Content-Length header")(
                        scope, receive, send
                    )
                    return
                if declared > limit:
                    refusal = BodyTooLargeError(limit, source)
                    await error_response(refusal.status, refusal.code, str(refusal))(
                        scope, receive, send
                    )
                    return
                break
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLargeError(limit, source)
            return message

        if wbits is None:
            await self.app(scope, limited, send)
            return
        pending = True

        async def inflated() -> Message:
            # Called when the route reads its body (after its permission check); the
            # errors raised here reach the app's error handlers as the route's own.
            nonlocal pending
            if not pending:
                return await receive()  # a disconnect, when it comes
            pending = False
            chunks = []
            while True:
                message = await limited()
                if message["type"] == "http.disconnect":
                    return message
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = await inflate(b"".join(chunks), wbits, limit, source)
            return {"type": "http.request", "body": body, "more_body": False}

        # The length is the compressed body's, and the route reads it decoded. Replaced in
        # the scope itself, not a copy: the router records the route it matched in the
        # scope, where the HTTP metrics (outside this) read its template; given a copy,
        # every compressed request was counted as `unmatched`.
        scope["headers"] = [
            (name, value)
            for name, value in scope["headers"]
            if name not in (b"content-encoding", b"content-length")
        ]
        await self.app(scope, inflated, send)


# The route whose bodies may reach the artefact limit: a version's registration.
_REGISTRATION: Final = re.compile(r"^/v1/models/[^/]+/versions$")
# The dashboard's form posts, whose bodies get the form limit (no setting: fixed).
_FORMS: Final = frozenset({"/dashboard/login", "/dashboard/logout"})
_FORM_SOURCE: Final = "a dashboard sign-in or sign-out form's, fixed"


def content_encoding(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The request's ``Content-Encoding``: its field lines joined into one, as RFC 9110
    §5.3 reads repeated lines (the comma-separated list); ``None`` without one. The
    first line alone was read, the rest ignored: ``gzip`` then ``br`` was inflated as
    gzip, where the one line ``gzip, br`` is refused."""
    lines = [value for name, value in headers if name == b"content-encoding"]
    if not lines:
        return None
    return lines[0] if len(lines) == 1 else b", ".join(lines)


# Content codings a request body may arrive in (RFC 9110 §8.4.1), as zlib window bits:
# tritonclient's ``request_compression_algorithm`` sends gzip or deflate (zlib format).
_CODINGS: Final = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS}
_CODINGS_ZLIB: Final = {b"deflate": zlib.MAX_WBITS}


def content_coding(value: bytes | None) -> int | None:
    """zlib's window bits for a request's ``Content-Encoding`` (every line of it:
    :func:`content_encoding`); ``None`` for none or ``identity``. Anything else, a list
    of codings included (``identity, gzip`` too), is 415 ``unsupported_content_encoding``."""
    if value is None:
        return None
    token = value.strip().lower()
    if token in (b"", b"identity"):
        return None
    wbits = _CODINGS.get(token, _CODINGS_ZLIB.get(token))
    if wbits is None:
        raise ApiError(
            415,
            "unsupported_content_encoding",
            f"Content-Encoding {value.decode('latin-1')!r} is not supported; "
            "send gzip, deflate or identity",
        )
    return wbits


# gzip members read in one body: tritonclient and gzip tools send one; a body of many
# empty 20-byte members costs a decoder each, and nothing is gained by taking them.
MAX_GZIP_MEMBERS: Final = 16
_READ = 65536  # compressed bytes fed to zlib at a time: what it copies at a member's end
# Inflated on the event loop: a body this small (compressed) when it inflates to no more
# than _INLINE_OUTPUT; any other is inflated in a worker thread.
_INLINE_INPUT = 65536
_INLINE_OUTPUT = 1024 * 1024


def decompress(body: bytes, wbits: int, limit: int, source: str = BODY_SETTING) -> bytes:
    """``body`` decoded, refused past ``limit`` bytes (``source``'s, named in the refusal)
    as it decompresses (a small body may expand a thousandfold). gzip may hold up to
    :data:`MAX_GZIP_MEMBERS` members, one after another."""
    decoded = _decompress(body, wbits, limit, limit, source)
    assert decoded is not None
    return decoded


async def inflate(body: bytes, wbits: int, limit: int, source: str = BODY_SETTING) -> bytes:
    """:func:`decompress` off the event loop, unless ``body`` is small and inflates
    small: then the thread's hand-off would cost more than the inflation."""
    if len(body) <= _INLINE_INPUT:
        decoded = _decompress(body, wbits, limit, _INLINE_OUTPUT, source)
        if decoded is not None:
            return decoded
    return await run_in_threadpool(decompress, body, wbits, limit, source)


def _decompress(body: bytes, wbits: int, limit: int, budget: int, source: str) -> bytes | None:
    """:func:`decompress`, or ``None`` once more than ``budget`` bytes came out (under
    ``limit``). The body is fed to zlib a read at a time: zlib copies what follows a
    member's end, and given the whole body it copied the rest of it at every member."""
    coding = "deflate" if wbits == zlib.MAX_WBITS else "gzip"
    view = memoryview(body)
    cap = min(limit, budget)
    parts: list[bytes] = []
    size = 0
    decoder = zlib.decompressobj(wbits)
    members = 1
    data: bytes | memoryview = view[:_READ]
    offset = len(data)
    while True:
        try:
            part = decoder.decompress(data, cap - size + 1)
        except zlib.error as exc:
            raise ApiError(
                400, "invalid_encoding", f"request body is not valid {coding}: {exc}"
            ) from exc
        size += len(part)
        if size > limit:
            raise BodyTooLargeError(limit, source, decompressed=True)
        if size > budget:
            return None
        parts.append(part)
        # under the cap, zlib took all of `data`: what it did not decode is unused_data
        data = decoder.unused_data if decoder.eof else b""
        if not data:
            data = view[offset : offset + _READ]
            offset += len(data)
        if not decoder.eof:
            if not data:
                raise ApiError(400, "invalid_encoding", f"request body is truncated {coding}")
            continue
        if not data:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if coding == "deflate":
            raise ApiError(
                400, "invalid_encoding", "request body has data after its deflate stream"
            )
        members += 1
        if members > MAX_GZIP_MEMBERS:
            raise ApiError(
                400,
                "invalid_encoding",
                f"request body has data after its gzip member {MAX_GZIP_MEMBERS}; at "
                f"most {MAX_GZIP_MEMBERS} members are read (send one)",
            )
        decoder = zlib.decompressobj(wbits)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    dupe = repeated_key(pairs)
    if dupe is not None:
        raise ApiError(400, "duplicate_key", f"duplicate JSON key {dupe!r}")
    return dict(pairs)


def _constant(name: str) -> Any:
    raise ApiError(400, "invalid_json", f"{name} is not valid JSON; send finite numbers only")


def _integer(text: str) -> int | float:
    """An integer as orjson reads it (:func:`~tunewatch._json_text.json_integer`); one
    beyond float64 (orjson refuses it) is refused. Past 4,300 digits ``int`` raises
    ``ValueError``, which :func:`parse_json` words."""
    try:
        return json_integer(text)
    except OverflowError:
        raise ApiError(
            400,
            "invalid_json",
            f"an integer of {len(text.lstrip('-'))} digits is larger than any number this "
            "API reads (float64's largest is about 1.8e308)",
        ) from None


# One decoder for every request: building it (and its C scanner) per call cost more
# than decoding a small request.
_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant, parse_int=_integer)

# A quote, JSON whitespace, a colon. In a document without backslashes every quote
# delimits a string, so this occurs once at the end of each key, and once more at the
# start of each string whose text begins with optional whitespace and a colon. Counted
# as `":` in the text with its whitespace deleted (:func:`_key_ends`).
_JSON_SPACE = b" \t\n\r"
_QUOTE_SPACE = re.compile(rb'"[ \t\n\r]')
_STRICT: Final = object()
# An escaped UTF-16 surrogate (\uD800-\uDFFF). Paired, the stdlib decodes it into one
# character; alone, into a str no UTF-8 encoder accepts (the store, the response, the log).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _fast(body: bytes) -> Any:
    """orjson's read of ``body``, or :data:`_STRICT` where only the strict parser can tell.

    orjson keeps the last of duplicate keys without a word, so the keys are counted:
    :data:`_KEY_END` matches every key in the body plus the strings starting with a
    colon, and in orjson's compact re-encoding of what it read the same, less every key
    a duplicate replaced (and the strings of its value). Equal counts mean no key was
    lost. Escapes (which could spell one key two ways), anything orjson refuses (NaN,
    Infinity, a BOM, bad UTF-8, nesting deeper than 1,024, a number beyond float64) and
    anything it cannot re-encode go to the strict parser, which also words the errors.
    An integer beyond 64 bits reads as the nearest float here (as in JavaScript), and
    the strict parser reads it so too (:func:`_integer`).
    """
    if b"\\" in body:
        return _STRICT
    try:
        tree = orjson.loads(body)
        again = orjson.dumps(tree)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return _STRICT
    if _QUOTE_SPACE.search(body) is None:
        # No quote in the body is followed by whitespace, so none in orjson's compact
        # re-encoding is either (its strings are the body's): in both, `":` is the match.
        same = body.count(b'":') == again.count(b'":')
    else:
        same = _key_ends(body) == _key_ends(again)
    return tree if same else _STRICT


def _key_ends(text: bytes) -> int:
    """How many times a quote is followed by optional JSON whitespace and a colon: with
    the whitespace deleted, each is a `":`. A regex's ``findall`` made an object per
    match: 8 MiB of ``{"a" :1}`` took 270 ms to count, this 10."""
    return text.translate(None, _JSON_SPACE).count(b'":')


def _refuse_lone_surrogates(tree: Any) -> None:
    try:
        json.dumps(tree, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(
            400,
            "invalid_json",
            f"invalid JSON: a string holds the lone surrogate \\u{ord(exc.object[exc.start]):04x}"
            ", which is not a Unicode character",
        ) from exc


def parse_json(body: bytes) -> Any:
    """Strict JSON: no NaN/Infinity literals, no duplicate keys, UTF-8 only, and no lone
    surrogate escapes (orjson refuses them; the stdlib decodes them into strings that no
    UTF-8 encoder takes). Only the strict parser sees escapes, so the fast read costs
    nothing more."""
    if not body:
        raise ApiError(400, "invalid_json", "request body is empty")
    tree = _fast(body)
    if tree is not _STRICT:
        return tree
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not UTF-8: {exc.reason}") from exc
    try:
        tree = _DECODER.decode(text)
        if _SURROGATE_ESCAPE.search(text) is not None:
            _refuse_lone_surrogates(tree)
        return tree
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json", f"invalid JSON: {exc.msg} at position {exc.pos}"
        ) from exc
    except RecursionError as exc:
        raise ApiError(400, "invalid_json", "JSON nested too deeply") from exc
    except ValueError as exc:  # an integer longer than Python converts (4,300 digits)
        raise ApiError(400, "invalid_json", "invalid JSON: a number has too many digits") from exc


def parse_json_object(body: bytes) -> dict[str, Any]:
    obj = parse_json(body)
    if not isinstance(obj, dict):
        raise ApiError(400, "invalid_request", "the request body must be a JSON object")
    return obj


# JSON bodies up to this size are parsed on the event loop (a small scoring request, the
# hot path, would pay more for the worker thread than for the parse: 64 KiB of junk
# parses in about 1.5 ms); a larger one is parsed in a worker thread. orjson holds the
# GIL while it reads, but the loop runs between its read, the duplicate-key count, the
# strict parser's Python-level hooks and the tree's release, where all of it on the
# loop held liveness 0.3-1.6 s for an 8 MiB body.
INLINE_JSON_BYTES: Final = 64 * 1024

_P = ParamSpec("_P")
_T = TypeVar("_T")


async def off_loop(func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``func`` in a worker thread. An error it raises reaches the caller with the
    locals of its frames cleared there: a refused body's parsed tree (millions of
    objects) is released in the worker, not on the event loop when the error is
    answered."""

    def releasing() -> _T:
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # re-raised: only the frames' locals are dropped
            traceback.clear_frames(exc.__traceback__)
            raise

    return await run_in_threadpool(releasing)


async def parse_json_async(body: bytes) -> Any:
    """:func:`parse_json`, in a worker thread for a body over :data:`INLINE_JSON_BYTES`."""
    if len(body) <= INLINE_JSON_BYTES:
        return parse_json(body)
    return await off_loop(parse_json, body)
