"""CRC32C (Castagnoli) digests as iSCSI puts them on the wire: 4 bytes, little-endian."""

from __future__ import annotations

from collections.abc import Iterable

import crc32c as _crc32c

from .._types import Buffer


def crc32c(data: Buffer, value: int = 0) -> int:
    return int(_crc32c.crc32c(data, value))


def digest_of(parts: Iterable[Buffer]) -> bytes:
    value = 0
    for part in parts:
        value = crc32c(part, value)
    return value.to_bytes(4, "little")
