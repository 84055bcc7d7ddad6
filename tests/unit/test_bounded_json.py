"""The bounded JSON parser: limits checked before `json.loads`, and only `JsonRejected` out."""

from __future__ import annotations

import base64
import contextlib
import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service import bounded_json
from service.bounded_json import JsonRejected, check_bounds, loads

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def nested(depth: int, opening: str = "[", closing: str = "]") -> bytes:
    return (opening * depth + closing * depth).encode()


@pytest.mark.parametrize("depth", [1, 10, bounded_json.MAX_DEPTH])
def test_nesting_up_to_the_limit_parses(depth: int) -> None:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    assert loads(nested(depth)) == value


@pytest.mark.parametrize("depth", [bounded_json.MAX_DEPTH + 1, 1000, 10_000, 100_000])
def test_deeper_nesting_is_refused_before_parsing(depth: int) -> None:
    with pytest.raises(JsonRejected, match="nested deeper"):
        loads(nested(depth))
    with pytest.raises(JsonRejected, match="nested deeper"):  # objects count the same
        loads(b'{"a":' * depth + b"1" + b"}" * depth)


def test_mixed_nesting_counts_objects_and_arrays_together() -> None:
    half = bounded_json.MAX_DEPTH // 2 + 1
    text = '{"a":[' * half + "0" + "]}" * half
    with pytest.raises(JsonRejected):
        loads(text)
    assert loads(text, max_depth=2 * half) is not None


def test_brackets_inside_strings_do_not_count() -> None:
    brackets = "[" * 10_000 + "{" * 10_000
    assert loads(json.dumps({"text": brackets})) == {"text": brackets}
    escaped = json.dumps({'quote " and [ backslash \\': '\\"[[[' * 1000})
    assert loads(escaped) == json.loads(escaped)


@pytest.mark.parametrize(
    "text", ["9" * 5000, "-" + "1" * 100, "0." + "5" * 100, "1e" + "9" * 100, "1" * 65]
)
def test_long_numbers_are_refused(text: str) -> None:
    with pytest.raises(JsonRejected, match="number is longer"):
        loads('{"value": ' + text + "}")


def test_numbers_within_the_limit_parse() -> None:
    assert loads("[" + "1" * 64 + "]") == [int("1" * 64)]
    assert loads('{"a": 12.5e-3, "b": -7}') == {"a": 0.0125, "b": -7}


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "[1e999]"])
def test_non_finite_numbers_are_refused(text: str) -> None:
    with pytest.raises(JsonRejected):
        loads(text)


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"[1,]", b'{"a" 1}', b'"unterminated', b"\xff\xfe", b"\xef\xbb\xbf{}", b"tru"],
)
def test_malformed_text_is_refused_with_the_one_error(data: bytes) -> None:
    with pytest.raises(JsonRejected):
        loads(data)


def test_a_large_base64_body_is_scanned_quickly_and_parsed() -> None:
    image = base64.b64encode(os.urandom(3_000_000)).decode()
    body = json.dumps({"resourceType": "Binary", "data": image}).encode()
    check_bounds(body)  # no timing asserted here: see benchmarks; this only must not refuse
    assert loads(body)["data"] == image


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_any_json_within_the_limits_parses_as_json_loads_does(value: Any) -> None:
    text = json.dumps(value)
    assert loads(text) == json.loads(text)
    assert loads(text.encode()) == json.loads(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_value_or_json_rejected(data: bytes) -> None:
    try:
        loads(data)
    except JsonRejected as exc:
        assert exc.reason
        assert isinstance(exc, ValueError)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='[]{}"\\:,0123456789eE.-+ ', max_size=200))
def test_structural_noise_never_escapes_as_another_error(text: str) -> None:
    with contextlib.suppress(JsonRejected):
        loads(text)


def test_lone_surrogates_are_refused_and_pairs_kept() -> None:
    assert loads(r'["\ud83d\ude00"]') == ["\U0001f600"]
    for text in (r'{"a": "x\ud800"}', r'{"\udfff": 1}', r'["\uDC00\uD800"]'):
        with pytest.raises(JsonRejected, match="surrogate"):
            loads(text)
