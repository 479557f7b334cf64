"""CDB decoding helpers (SBC-3 / SPC-4 field layouts). Pure functions, no state."""

from __future__ import annotations

import struct
from typing import NamedTuple

from .sense import LBA_OUT_OF_RANGE, CheckCondition, invalid_field

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_U64 = struct.Struct(">Q").unpack_from


def u16(buf: bytes, off: int) -> int:
    return int(_U16(buf, off)[0])


def u32(buf: bytes, off: int) -> int:
    return int(_U32(buf, off)[0])


def u64(buf: bytes, off: int) -> int:
    return int(_U64(buf, off)[0])


def u24(buf: bytes, off: int) -> int:
    return (buf[off] << 16) | (buf[off + 1] << 8) | buf[off + 2]


def cdb_length(opcode: int) -> int:
    """The CDB size implied by the opcode's group code (0 for variable/vendor groups)."""
    return (6, 10, 10, 0, 16, 12, 0, 0)[opcode >> 5]


class BlockRange(NamedTuple):
    """LBA and number of blocks of a READ/WRITE/VERIFY-style CDB."""

    lba: int
    blocks: int


def block_range(cdb: bytes) -> BlockRange:
    """LBA and transfer length for the 6/10/12/16-byte READ/WRITE/VERIFY family.

    Raises CheckCondition (24/00) when the CDB is too short for its group.
    """
    op = cdb[0]
    group = op >> 5
    try:
        if group == 1 or group == 2:  # 10-byte
            return BlockRange(u32(cdb, 2), u16(cdb, 7))
        if group == 4:  # 16-byte
            return BlockRange(u64(cdb, 2), u32(cdb, 10))
        if group == 5:  # 12-byte
            return BlockRange(u32(cdb, 2), u32(cdb, 6))
        if group == 0:  # 6-byte: 21-bit LBA, 0 blocks means 256
            n = cdb[4]
            return BlockRange(((cdb[1] & 0x1F) << 16) | (cdb[2] << 8) | cdb[3], n or 256)
    except (struct.error, IndexError):
        raise invalid_field(0) from None
    raise invalid_field(0)


def check_range(lba: int, count: int, capacity: int) -> None:
    """5/21/00 unless [lba, lba+count) lies within ``capacity`` blocks.

    Python integers do not wrap, so the sum cannot overflow the way a 64-bit C sum can.
    """
    if lba + count > capacity:
        raise CheckCondition.of(LBA_OUT_OF_RANGE)


def truncate(data: bytes | bytearray, alloc: int) -> bytes | bytearray:
    """Cut parameter data to the allocation length (never an error, SPC-4 §4.2.5.6)."""
    return data if len(data) <= alloc else data[:alloc]
