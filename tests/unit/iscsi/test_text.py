"""key=value\\0 codec (RFC 7143 §6.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iscsigw.errors import ProtocolError
from iscsigw.iscsi.text import TextFormatError, encode_text, parse_text, valid_key


def test_round_trip_preserves_order() -> None:
    pairs = [("InitiatorName", "iqn.x:y"), ("AuthMethod", "CHAP,None"), ("X-a", ""), ("B", "=x=")]
    data = encode_text(pairs)
    assert data == b"InitiatorName=iqn.x:y\0AuthMethod=CHAP,None\0X-a=\0B==x=\0"
    assert parse_text(data) == pairs


def test_empty_and_padding() -> None:
    assert parse_text(b"") == []
    assert parse_text(b"\0\0") == []
    assert parse_text(b"a=1\0\0\0") == [("a", "1")]
    assert parse_text(b"a=1") == [("a", "1")]  # last NUL missing
    assert parse_text(memoryview(b"a=1\0b=2\0")) == [("a", "1"), ("b", "2")]


def test_utf8_value() -> None:
    assert parse_text("TargetAlias=dïsk\0".encode()) == [("TargetAlias", "dïsk")]


def test_limits() -> None:
    assert parse_text(b"k" * 63 + b"=v\0")[0][0] == "k" * 63
    with pytest.raises(TextFormatError):
        parse_text(b"k" * 64 + b"=v\0")
    assert len(parse_text(b"k=" + b"v" * 8192)[0][1]) == 8192
    with pytest.raises(TextFormatError):
        parse_text(b"k=" + b"v" * 8193)


@pytest.mark.parametrize(
    "data",
    [b"novalue\0", b"=x\0", b"a=1\0a=2\0", b"a b=1\0", b"k=\xff\0", b"k\xc3\xa9=1\0", b"a/b=1\0"],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(TextFormatError):
        parse_text(data)


def test_error_is_a_protocol_error() -> None:
    assert issubclass(TextFormatError, ProtocolError)


def test_valid_key() -> None:
    assert valid_key("X-com.example_a+b@c")
    assert not valid_key("")
    assert not valid_key("a=b")


def test_encode_refuses_bad_pairs() -> None:
    with pytest.raises(ValueError):
        encode_text([("a=b", "1")])
    with pytest.raises(ValueError):
        encode_text([("a", "1\0")])


_KEY = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-+@_",
    min_size=1,
    max_size=63,
)
_VALUE = st.text(alphabet=st.characters(blacklist_characters="\0", codec="utf-8"), max_size=50)


@given(st.dictionaries(_KEY, _VALUE, max_size=10))
def test_round_trip_property(d: dict[str, str]) -> None:
    pairs = list(d.items())
    assert parse_text(encode_text(pairs)) == pairs


@given(st.binary(max_size=200))
def test_parse_only_raises_text_errors(data: bytes) -> None:
    try:
        pairs = parse_text(data)
    except TextFormatError:
        return
    assert len({k for k, _ in pairs}) == len(pairs)
