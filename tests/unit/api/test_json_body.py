"""app.api.json_body's fast paths against the standard library: base64 decoding (pybase64 first) and the
keys sent more than once (a memchr walk instead of a parse)."""

from __future__ import annotations

import base64
import binascii
import json
import random

import pytest

from app.api.json_body import decode_base64, duplicate_keys
from app.errors import ApiError

FIELDS = ("text", "image_base64", "audio_base64")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def _reference_b64(value: str) -> bytes | None:
    """What the service accepted before pybase64: the standard library after stripping whitespace."""
    text = value.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _ours_b64(value: str) -> bytes | None:
    try:
        return decode_base64(value, "image_base64")
    except ApiError as exc:
        assert exc.status_code == 422 and "image_base64 is not valid base64" in exc.message
        return None


def test_decode_base64_accepts_exactly_what_the_standard_library_accepts() -> None:
    rng = random.Random(0)
    junk = "-_*!é\x00 \n\t\r\x0b\x1c\u00a0\u2028"
    accepted = refused = 0
    for _ in range(30_000):
        chars = _ALPHABET + (junk if rng.random() < 0.3 else "")
        value = "".join(rng.choice(chars) for _ in range(rng.randint(0, 14)))
        if rng.random() < 0.1:
            value = "data:image/png;base64," + value
        expected = _reference_b64(value)
        assert _ours_b64(value) == expected, repr(value)
        accepted += expected is not None
        refused += expected is None
    # Both outcomes are exercised, including the excess padding only the standard library accepts.
    assert accepted > 1_000 and refused > 1_000
    assert _ours_b64("gttg=") == base64.b64decode("gttg=")


@pytest.mark.parametrize(
    "value",
    [
        base64.b64encode(bytes(range(256)) * 50).decode(),
        base64.encodebytes(bytes(range(256)) * 50).decode(),  # line-wrapped at 76 characters
        "  data:audio/wav;base64," + base64.b64encode(b"RIFF....WAVE").decode() + "\n",
    ],
)
def test_decode_base64_round_trips_real_encodings(value: str) -> None:
    assert decode_base64(value, "audio_base64") == _reference_b64(value)
    assert decode_base64(None, "audio_base64") is None


def _reference_duplicates(body: bytes) -> list[str]:
    """Top-level keys sent more than once: every object parsed as its list of pairs."""
    top = json.loads(body, object_pairs_hook=lambda pairs: pairs)
    keys = [k for k, _ in top]
    return sorted({k for k in keys if keys.count(k) > 1 and k in FIELDS})


@pytest.mark.parametrize(
    "body",
    [
        b'{"text": "a"}',
        b'{"text": "a", "text": "b"}',
        b'{"text" :"a","image_base64":"QUJD" , "text"\n:\tnull}',
        b'{"text": "say \\"text\\": twice", "audio_base64": "QUJD"}',  # escapes: counted, not walked
        b'{"text": "a", "t\\u0065xt": "b"}',  # a \\u escape spelling a field name: parsed
        b'{"text": {"text": [1, "x", "y"]}, "text": "z"}',  # nesting only arises from a repeated key
        b'{"image_base64": {"text": 1, "text": 2}, "image_base64": null, "text": "hi"}',  # only the top level
        b'{"image_base64": ["a", "b", "c", "d", "e", "f", "g"], "image_base64": "QUJD"}',  # over the limit
        b'{"audio_base64": null, "text": "hi", "image_base64": "QUJD", "audio_base64": "QUJD"}',
        b'{"text": "\xc3\xa9t\xc3\xa9 \xe2\x9c\x93"}',
        b"{}",
    ],
)
def test_duplicate_keys_matches_a_full_parse(body: bytes) -> None:
    assert duplicate_keys(body, FIELDS) == _reference_duplicates(body)


def test_duplicate_keys_on_generated_bodies() -> None:
    rng = random.Random(1)
    values = ['"QUJD"', "null", '"a \\"b\\""', '"\\u0041"', '"x y"', "[1, 2]", '{"text": "q"}']
    names = [*FIELDS, "t\\u0065xt"]
    gaps = ["", " ", "\n"]
    seen_duplicates = 0
    for _ in range(3_000):
        pairs = [
            f'"{rng.choice(names)}"{rng.choice(gaps)}:{rng.choice(gaps)}{rng.choice(values)}'
            for _ in range(rng.randint(1, 5))
        ]
        body = ("{" + ", ".join(pairs) + "}").encode()
        expected = _reference_duplicates(body)
        seen_duplicates += bool(expected)
        assert duplicate_keys(body, FIELDS) == expected, body
    assert seen_duplicates > 500


@pytest.mark.timeout(60)
def test_duplicate_keys_is_linear_in_the_keys_of_one_object() -> None:
    # One object of 100,000 keys in a repeated field, and 300,000 repeats of one key: a quadratic count
    # takes minutes here (26 s for 40,000 keys measured), a linear one well under a second.
    nested = "{" + ",".join(f'"k{i}": 1' for i in range(100_000)) + "}"
    assert duplicate_keys(('{"text": ' + nested + ', "text": "x"}').encode(), FIELDS) == ["text"]
    repeated = ("{" + ",".join(['"text": ""'] * 300_000) + "}").encode()
    assert duplicate_keys(repeated, FIELDS) == ["text"]
