"""Strict JSON for request bodies: orjson's fast read must agree with the strict parser.

``parse_json`` reads with orjson and counts keys to catch duplicates orjson would keep
silently; anything it cannot vouch for goes to the strict (stdlib) parser. These tests
pin both halves: documents without duplicates take the fast read and decode exactly as
the stdlib does, and every way of spelling a duplicate key is refused.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tunewatch.api import _body
from tunewatch.api._errors import ApiError

VALID = [
    b'{"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [0.5, -1]}]}',
    b'{"a" :1, "b"\t:\n2, "c"\r: {"d"  :  [3, {"e": 4}]}}',
    b'{"a": ":", "b": " :x", ":": ": ", " : ": ":"}',
    b'{":k" : ":v", "k:" : "v:", "x": [":", {":": ":"}]}',
    b'[{"a": 1}, {"a": 2}, {"a": [{"a": 3}]}]',
    b'{"\xc3\xa9": "\xe2\x82\xac", "\xe2\x82\xac": {"\xc3\xa9": null}}',
    b'{"empty": {}, "list": [], "t": true, "f": false, "n": null}',
    b'{"big": 18446744073709551615, "neg": -9223372036854775808, "f": 1e-320}',
    b'  {"padded": 1}  \n',
    b"123",
    b'"a string"',
]

DUPLICATES = [
    b'{"a": 1, "a": 2}',
    b'{"a": 1, "a" : 1}',
    b'{"x": {"a": 1, "b": 2, "a": 3}}',
    b'[{"ok": 1}, {"a": {"b": [{"c": 1, "c": 1}]}}]',
    b'{":": 1, ":": 2}',
    b'{" :": 1, " :"\n: 2}',
    b'{"a": ":", "a": ":"}',
    b'{"a": 1, "\\u0061": 2}',
    b'{"data": [1, 2], "inputs": [], "data": [1, 2]}',
    b'{"a":1,"a":2}',
    b'{"b":{"a":[":"],"a":[":"]}}',
]


@pytest.mark.parametrize("body", VALID)
def test_valid_documents_take_the_fast_read_and_decode_as_the_stdlib(body: bytes) -> None:
    assert _body._fast(body) is not _body._STRICT
    assert _body.parse_json(body) == json.loads(body)


def test_floats_read_fast_are_the_stdlib_s_floats_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    values = [*rng.normal(size=500), *(rng.normal(size=500) * 10.0 ** rng.integers(-300, 300, 500))]
    values += [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1, -0.0]
    body = json.dumps({"data": values}).encode()
    fast = _body._fast(body)
    assert fast is not _body._STRICT
    assert np.array_equal(np.asarray(fast["data"]), np.asarray(json.loads(body)["data"]))


@pytest.mark.parametrize("body", DUPLICATES)
def test_every_spelling_of_a_duplicate_key_is_refused(body: bytes) -> None:
    assert _body._fast(body) is _body._STRICT
    with pytest.raises(ApiError) as err:
        _body.parse_json(body)
    assert err.value.code == "duplicate_key"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b"\xef\xbb\xbf{}",
        b'{"a": "\xff"}',
        b"[" * 30_000 + b"]" * 30_000,
        b'{"id": ' + b"1" * 5000 + b"}",
    ],
)
def test_what_orjson_refuses_is_answered_by_the_strict_parser(body: bytes) -> None:
    with pytest.raises(ApiError) as err:
        _body.parse_json(body)
    assert err.value.status == 400 and err.value.code == "invalid_json"


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "\\udfff"}',
        b'{"\\ud800": 1}',
        b'["x\\ud83d"]',
        b'"\\ude00\\ud83d"',
        b'{"labels": {"alertname": "\\uDFFF"}}',
    ],
    ids=["lone-low", "in-a-key", "lone-high", "pair-reversed", "upper-case-hex"],
)
def test_a_lone_surrogate_escape_is_refused(body: bytes) -> None:
    """The stdlib decodes it into a str that no UTF-8 encoder (PostgreSQL, the response,
    the logs) accepts, and the webhook answered 500. orjson refuses it as well."""
    with pytest.raises(ApiError) as err:
        _body.parse_json(body)
    assert err.value.status == 400 and err.value.code == "invalid_json"
    assert "surrogate" in err.value.message


def test_escaped_surrogate_pairs_and_an_escaped_backslash_are_text() -> None:
    assert _body.parse_json(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    assert _body.parse_json(b'{"a": "\\\\udfff"}') == {"a": "\\udfff"}


@pytest.mark.parametrize(
    "number",
    [
        "18446744073709551615",
        "-9223372036854775808",
        "18446744073709551616",
        "-9223372036854775809",
        "1" + "0" * 300,
        "1" * 309,
    ],
    ids=["uint64-max", "int64-min", "2**64", "below-int64", "1e300", "309-digits"],
)
def test_an_integer_reads_the_same_with_and_without_an_escape_in_the_body(number: str) -> None:
    """An escape anywhere (a unit key "müller" from `json.dumps`) sends the body to the
    strict parser, which read an integer beyond 64 bits as a Python int (the row then
    400 `dtype_mismatch`), where orjson reads it as the nearest float."""
    plain = _body.parse_json(b'{"k": "muller", "data": [%s]}' % number.encode())
    escaped = _body.parse_json(b'{"k": "m\\u00fcller", "data": [%s]}' % number.encode())
    assert plain["data"] == escaped["data"]
    assert type(plain["data"][0]) is type(escaped["data"][0])


def test_an_integer_past_float64_is_refused_on_both_paths_alike() -> None:
    """orjson refuses it (the strict parser then answers). It was kept as a Python int,
    which a version's free-form `details` took: registering `parity_error` as one was a
    500, and a stored `best_value` or `nested_estimate` one made the tuning page and the
    version's report a 500 at every view."""
    for key in (b"muller", b"m\\u00fcller"):
        with pytest.raises(ApiError) as caught:
            _body.parse_json(b'{"k": "%s", "data": [%s]}' % (key, b"1" * 310))
        assert (caught.value.status, caught.value.code) == (400, "invalid_json")
        assert "larger than any number" in caught.value.message
