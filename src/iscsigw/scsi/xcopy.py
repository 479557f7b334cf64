"""EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 §6.4, §6.18): block-to-block copies
(segment descriptor 02h) between logical units named by identification descriptor target
descriptors (E4h) carrying their NAA designator (VMware VAAI XCOPY).

A NAA is resolved to the LU itself, or through ``LogicalUnit.copy_registry`` (a
:class:`LuRegistry` the runtime fills with every LU of the gateway), so a copy can cross LUs
exported by the same gateway. Reservations, write protection and the destination's write gate
apply as for a WRITE from the issuing I_T nexus.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .cdb import truncate, u16, u32, u64
from .pr import PrAccess
from .sense import (
    PARAM_LIST_LENGTH_ERROR,
    WRITE_PROTECTED,
    CheckCondition,
    SenseCode,
    invalid_field,
    invalid_param,
)
from .task import ScsiCommand, ScsiResult

if TYPE_CHECKING:
    from .lun import LogicalUnit

MAX_TARGET_DESCRIPTORS = 8
MAX_SEGMENT_DESCRIPTORS = 16
MAX_DESCRIPTOR_LIST_LENGTH = 1024
MAX_SEGMENT_BYTES = 64 << 20
COPY_CHUNK_BYTES = 1 << 20
HELD_RESULTS = 64  # COPY STATUS results kept per LU

TARGET_DESCRIPTOR_LEN = 32
SEGMENT_B2B_LEN = 28
IDENT_TARGET = 0xE4
SEGMENT_BLOCK_TO_BLOCK = 0x02

COPY_ABORTED = 0x0A
TOO_MANY_TARGET_DESCRIPTORS = SenseCode(0x5, 0x26, 0x06)
UNSUPPORTED_TARGET_DESCRIPTOR = SenseCode(0x5, 0x26, 0x07)
TOO_MANY_SEGMENT_DESCRIPTORS = SenseCode(0x5, 0x26, 0x08)
UNSUPPORTED_SEGMENT_DESCRIPTOR = SenseCode(0x5, 0x26, 0x09)
COPY_TARGET_NOT_REACHABLE = SenseCode(COPY_ABORTED, 0x0D, 0x02)
COPY_ABORTED_NO_SENSE = SenseCode(COPY_ABORTED, 0x00, 0x00)


class LuRegistry:
    """NAA designator -> LogicalUnit, for copies between LUs of one gateway."""

    def __init__(self) -> None:
        self._by_naa: dict[bytes, LogicalUnit] = {}

    def add(self, lu: LogicalUnit) -> None:
        self._by_naa[lu.identity.naa] = lu
        lu.copy_registry = self

    def remove(self, lu: LogicalUnit) -> None:
        if self._by_naa.get(lu.identity.naa) is lu:
            del self._by_naa[lu.identity.naa]

    def find(self, naa: bytes) -> LogicalUnit | None:
        return self._by_naa.get(naa)

    def __len__(self) -> int:
        return len(self._by_naa)


@dataclass(slots=True)
class CopyResult:
    status: int  # COPY MANAGER STATUS: 1 completed good, 2 completed with errors
    segments: int
    bytes_copied: int


def extended_copy_data_out(cdb: bytes, block_size: int) -> int:
    return u32(cdb, 10)


def _resolve(lu: LogicalUnit, desc: bytes, offset: int) -> LogicalUnit:
    if desc[0] != IDENT_TARGET:
        raise CheckCondition.of(UNSUPPORTED_TARGET_DESCRIPTOR, field=(offset, None, False))
    if desc[1] & 0x1F:
        # Only block devices (peripheral device type 0) are copy targets.
        raise CheckCondition.of(UNSUPPORTED_TARGET_DESCRIPTOR, field=(offset + 1, 4, False))
    codeset, assoc_type, length = desc[4] & 0x0F, desc[5], desc[7]
    if codeset != 1 or assoc_type & 0x0F != 3 or (assoc_type >> 4) & 0x3 != 0 or length != 16:
        raise CheckCondition.of(COPY_TARGET_NOT_REACHABLE)
    naa = bytes(desc[8:24])
    target: LogicalUnit | None = lu if naa == lu.identity.naa else None
    if target is None and lu.copy_registry is not None:
        target = lu.copy_registry.find(naa)
    if target is None:
        raise CheckCondition.of(COPY_TARGET_NOT_REACHABLE)
    block_len = (desc[29] << 16) | (desc[30] << 8) | desc[31]
    if block_len != target.block_size:
        raise invalid_param(offset + 29)
    return target


async def extended_copy(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    if len(cdb) < 16:
        raise invalid_field(0)
    plen = u32(cdb, 10)
    if plen == 0:
        return ScsiResult()
    data = bytes(memoryview(cmd.data_out).cast("B")[:plen])
    if plen < 16 or len(data) < plen:
        raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
    list_id = data[0]
    if data[1] & 0x20:
        raise invalid_param(1, 5)  # STR: no stream devices
    usage = (data[1] >> 3) & 0x3
    tdl = u16(data, 2)
    sdl = u32(data, 8)
    inline = u32(data, 12)
    if inline:
        raise invalid_param(12)
    if tdl + sdl > MAX_DESCRIPTOR_LIST_LENGTH or 16 + tdl + sdl > plen:
        raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
    if tdl % TARGET_DESCRIPTOR_LEN:
        raise invalid_param(2)
    if tdl // TARGET_DESCRIPTOR_LEN > MAX_TARGET_DESCRIPTORS:
        raise CheckCondition.of(TOO_MANY_TARGET_DESCRIPTORS, field=(2, None, False))
    # Segment descriptors: count them by walking their lengths.
    segments: list[tuple[int, bytes]] = []
    off = 16 + tdl
    end = off + sdl
    while off < end:
        if off + 4 > end:
            raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
        dlen = 4 + u16(data, off + 2)
        if off + dlen > end:
            raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
        segments.append((off, data[off : off + dlen]))
        off += dlen
    if len(segments) > MAX_SEGMENT_DESCRIPTORS:
        raise CheckCondition.of(TOO_MANY_SEGMENT_DESCRIPTORS, field=(8, None, False))
    for seg_off, seg in segments:
        if seg[0] != SEGMENT_BLOCK_TO_BLOCK:
            raise CheckCondition.of(UNSUPPORTED_SEGMENT_DESCRIPTOR, field=(seg_off, None, False))
        if len(seg) != SEGMENT_B2B_LEN:
            raise invalid_param(seg_off + 2)
    targets = [
        _resolve(lu, data[o : o + TARGET_DESCRIPTOR_LEN], o)
        for o in range(16, 16 + tdl, TARGET_DESCRIPTOR_LEN)
    ]
    done_segments = 0
    copied = 0
    result_key = (cmd.nexus.key, list_id)
    try:
        for _seg_off, seg in segments:
            src_i, dst_i = u16(seg, 4), u16(seg, 6)
            if src_i >= len(targets) or dst_i >= len(targets):
                raise CheckCondition.of(COPY_TARGET_NOT_REACHABLE)
            src, dst = targets[src_i], targets[dst_i]
            n, src_lba, dst_lba = u16(seg, 10), u64(seg, 12), u64(seg, 20)
            # DC: NUMBER OF BLOCKS counts destination (not source) blocks
            nbytes = n * (dst.block_size if seg[1] & 0x02 else src.block_size)
            copied += await _copy(lu, cmd, src, src_lba, dst, dst_lba, nbytes)
            done_segments += 1
    except CheckCondition:
        if usage != 3:
            lu.remember_copy(result_key, CopyResult(2, done_segments, copied))
        raise
    if usage != 3:
        lu.remember_copy(result_key, CopyResult(1, done_segments, copied))
    return ScsiResult()


async def _copy(
    lu: LogicalUnit,
    cmd: ScsiCommand,
    src: LogicalUnit,
    src_lba: int,
    dst: LogicalUnit,
    dst_lba: int,
    nbytes: int,
) -> int:
    if nbytes == 0:
        return 0
    if nbytes > MAX_SEGMENT_BYTES:
        raise CheckCondition.of(COPY_ABORTED_NO_SENSE)
    if nbytes % src.block_size or nbytes % dst.block_size:
        raise CheckCondition.of(COPY_ABORTED_NO_SENSE)
    if (
        src_lba + nbytes // src.block_size > src.capacity
        or dst_lba + nbytes // dst.block_size > dst.capacity
    ):
        raise CheckCondition.of(COPY_ABORTED_NO_SENSE)
    # The copy acts for the issuing nexus on both LUs.
    if dst is not lu:
        if dst.write_protected:
            raise CheckCondition.of(WRITE_PROTECTED)
        if dst.pr_store.current.conflicts(cmd.nexus, PrAccess.WRITE):
            raise CheckCondition(0, 0, 0, status=0x18)
    if src is not lu and src.pr_store.current.conflicts(cmd.nexus, PrAccess.READ):
        raise CheckCondition(0, 0, 0, status=0x18)
    src_off = src_lba * src.block_size
    dst_off = dst_lba * dst.block_size
    chunks = [(p, min(COPY_CHUNK_BYTES, nbytes - p)) for p in range(0, nbytes, COPY_CHUNK_BYTES)]
    if src is dst and src_off < dst_off < src_off + nbytes:
        chunks.reverse()  # overlapping forward copy: go backwards
    async with dst.shared_writes(skip=dst is lu):
        for pos, length in chunks:
            block = await src.backend.read(src_off + pos, length)
            await dst.backend.write(dst_off + pos, block, fua=not dst.wce)
    return nbytes


# ---------------------------------------------------------------------------------------------
# RECEIVE COPY RESULTS


async def receive_copy_results(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    if len(cdb) < 16:
        raise invalid_field(0)
    sa = cdb[1] & 0x1F
    alloc = u32(cdb, 10)
    if sa == 0x03:  # OPERATING PARAMETERS
        buf = bytearray(44)
        buf[4] = 0x01  # SNLID: EXTENDED COPY(LID4) is not supported, list ids are 1 byte
        struct.pack_into(
            ">HHIIIII",
            buf,
            8,
            MAX_TARGET_DESCRIPTORS,
            MAX_SEGMENT_DESCRIPTORS,
            MAX_DESCRIPTOR_LIST_LENGTH,
            MAX_SEGMENT_BYTES,
            0,  # MAXIMUM INLINE DATA LENGTH
            0,  # HELD DATA LIMIT
            0,  # MAXIMUM STREAM DEVICE TRANSFER SIZE
        )
        struct.pack_into(">H", buf, 34, 1)  # TOTAL CONCURRENT COPIES
        buf[36] = 1  # MAXIMUM CONCURRENT COPIES
        buf[37] = lu.block_size.bit_length() - 1  # DATA SEGMENT GRANULARITY (log2)
        impl = bytes((SEGMENT_BLOCK_TO_BLOCK, IDENT_TARGET))
        buf[43] = len(impl)
        data = bytes(buf) + impl
        data = struct.pack(">I", len(data) - 4) + data[4:]
        return ScsiResult(data=truncate(data, alloc))
    if sa == 0x00:  # COPY STATUS
        result = lu.copy_result((cmd.nexus.key, cdb[2]))
        if result is None:
            raise invalid_field(2)
        count, units = result.bytes_copied, 0
        while count > 0xFFFFFFFF:
            count >>= 10
            units += 1
        buf = bytearray(12)
        struct.pack_into(">I", buf, 0, 8)
        buf[4] = result.status & 0x7F
        struct.pack_into(">H", buf, 5, result.segments & 0xFFFF)
        buf[7] = (0xF0 + units) if units else 0  # TRANSFER COUNT UNITS: bytes, or 2^(10*n)
        struct.pack_into(">I", buf, 8, count)
        return ScsiResult(data=truncate(bytes(buf), alloc))
    raise invalid_field(1, 4)
