"""The ``key=value\\0`` text format of Login and Text PDUs (RFC 7143 §6.1).

Parsing is strict about the things that matter for safety (key length and characters, value
length, UTF-8, duplicate keys, a missing ``=``) and lenient about framing noise: empty strings
between NULs (extra NUL padding) are skipped and a missing final NUL is accepted, because a
data segment is always complete here (the login and text layers join C=1 fragments first).
"""

from __future__ import annotations

from collections.abc import Iterable

from .._types import Buffer
from ..errors import ProtocolError

KEY_MAX = 63
VALUE_MAX = 8192

# RFC 7143 §6.1: key names are made of letters, digits, '.', '-', '+', '@' and '_'.
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-+@_")


class TextFormatError(ProtocolError):
    """Malformed text: the login answers 0x0200, a Text request gets a Reject."""


def valid_key(key: str) -> bool:
    return 0 < len(key) <= KEY_MAX and all(ch in _KEY_CHARS for ch in key)


def parse_text(
    data: Buffer,
    *,
    key_max: int = KEY_MAX,
    value_max: int = VALUE_MAX,
) -> list[tuple[str, str]]:
    """Decode a complete text segment into ordered ``(key, value)`` pairs.

    Raises TextFormatError for a pair without ``=``, an empty, over-long or badly formed key,
    an over-long value, bytes that are not UTF-8, or a key that appears twice.
    """
    raw = bytes(data)
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for chunk in raw.split(b"\0"):
        if not chunk:
            continue
        key_b, sep, value_b = chunk.partition(b"=")
        if not sep:
            raise TextFormatError(f"text pair without '=' ({chunk[:40]!r})")
        if not key_b or len(key_b) > key_max:
            raise TextFormatError(f"bad key length {len(key_b)}")
        if len(value_b) > value_max:
            raise TextFormatError(f"value of {key_b[:40]!r} longer than {value_max} bytes")
        try:
            key = key_b.decode("ascii")
            value = value_b.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TextFormatError(f"text is not UTF-8: {exc}") from None
        if not valid_key(key):
            raise TextFormatError(f"bad characters in key {key!r}")
        if key in seen:
            raise TextFormatError(f"key {key!r} sent twice")
        seen.add(key)
        pairs.append((key, value))
    return pairs


def encode_text(pairs: Iterable[tuple[str, str]]) -> bytes:
    """Encode pairs in the given order, each terminated by NUL."""
    out = bytearray()
    for key, value in pairs:
        if "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"cannot encode text pair {key!r}")
        out += key.encode("ascii")
        out += b"="
        out += value.encode("utf-8")
        out += b"\0"
    return bytes(out)
