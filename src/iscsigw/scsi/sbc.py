"""SBC-3 block commands: READ/WRITE, VERIFY, WRITE AND VERIFY, SYNCHRONIZE CACHE, READ
CAPACITY, WRITE SAME, UNMAP, GET LBA STATUS and COMPARE AND WRITE.

READ/WRITE are the hot path: one struct unpack for the fields, no copies of the data buffers
(the backend's read result and the transport's Data-Out buffer are passed through as-is).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from .._types import Buffer
from ..backends.base import Extent
from ..backends.base import compare_and_write as backend_compare_and_write
from .cdb import block_range, check_range, u16, u32, u64
from .sense import (
    INVALID_FIELD_IN_CMD_IU,
    INVALID_OPCODE,
    LBA_OUT_OF_RANGE,
    MISCOMPARE_DURING_VERIFY,
    PARAM_LIST_LENGTH_ERROR,
    CheckCondition,
    invalid_field,
    invalid_param,
)
from .task import ScsiCommand, ScsiResult

if TYPE_CHECKING:
    from .lun import LogicalUnit

_RW10 = struct.Struct(">BBIBH").unpack_from  # opcode, flags, lba, group, length
_RW12 = struct.Struct(">BBII").unpack_from  # opcode, flags, lba, length
_RW16 = struct.Struct(">BBQI").unpack_from  # opcode, flags, lba, length
_BE32 = struct.Struct(">I").pack
_BE64 = struct.Struct(">Q").pack

# Byte offset of the TRANSFER LENGTH field per CDB group (for field pointers)
_TL_BYTE = {0: 4, 1: 7, 2: 7, 4: 10, 5: 6}

# How many bytes GET LBA STATUS asks the backend about in one command.
# Per descriptor the initiator has room for: QEMU's one-descriptor query scans 128 MiB.
LBA_STATUS_SCAN_LIMIT_BYTES = 128 << 20
LBA_STATUS_SCAN_BYTES = 32 << 20
# Largest buffer WRITE SAME builds to replicate a non-zero block.
WRITE_SAME_CHUNK_BYTES = 1 << 20


def _decode_rw(cdb: bytes) -> tuple[int, int, int]:
    """(flags, lba, blocks) of a READ/WRITE/VERIFY 6/10/12/16 CDB."""
    try:
        op = cdb[0]
        group = op >> 5
        if group == 1 or group == 2:
            _, flags, lba, _, n = _RW10(cdb)
            return flags, lba, n
        if group == 4:
            _, flags, lba, n = _RW16(cdb)
            return flags, lba, n
        if group == 5:
            _, flags, lba, n = _RW12(cdb)
            return flags, lba, n
        if group == 0 and len(cdb) >= 6:
            return 0, ((cdb[1] & 0x1F) << 16) | (cdb[2] << 8) | cdb[3], cdb[4] or 256
    except (struct.error, IndexError):
        pass
    raise invalid_field(0)


def _check_transfer(lu: LogicalUnit, cdb: bytes, lba: int, n: int) -> None:
    check_range(lba, n, lu.capacity)
    if n > lu.counts.max_transfer:
        raise invalid_field(_TL_BYTE.get(cdb[0] >> 5, 0))


def _data_out(cmd: ScsiCommand, need: int) -> Buffer:
    """Exactly ``need`` bytes of Data-Out, without copying."""
    data = cmd.data_out
    mv = memoryview(data)
    have = mv.nbytes
    if have == need:
        return data
    if have < need:
        raise CheckCondition.of(INVALID_FIELD_IN_CMD_IU)
    return mv.cast("B")[:need]


def first_difference(a: Buffer, b: Buffer) -> int:
    """Offset of the first differing byte of two equal-length buffers, or -1 if equal."""
    ma = memoryview(a).cast("B")
    mb = memoryview(b).cast("B")
    if ma == mb:
        return -1
    n = min(ma.nbytes, mb.nbytes)
    step = 4096
    pos = 0
    while pos < n:
        end = min(pos + step, n)
        if ma[pos:end] != mb[pos:end]:
            ca = ma[pos:end].tobytes()
            cb = mb[pos:end].tobytes()
            for i in range(end - pos):
                if ca[i] != cb[i]:
                    return pos + i
        pos = end
    return n  # lengths differ


# ---------------------------------------------------------------------------------------------
# READ / WRITE


async def read(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    flags, lba, n = _decode_rw(cdb)
    if flags & 0xE0:
        raise invalid_field(1, 7)  # RDPROTECT without protection information
    _check_transfer(lu, cdb, lba, n)
    if n == 0:
        return ScsiResult()
    bs = lu.block_size
    length = n * bs
    if length >= ZERO_COPY_MIN:
        read_slice = getattr(lu.backend, "read_slice", None)
        if read_slice is not None:
            # Large reads leave as a file slice the transport can sendfile(2).
            return ScsiResult(data=read_slice(lba * bs, length))
    return ScsiResult(data=await lu.backend.read(lba * bs, length))


# Below this a pread into memory is cheaper than a sendfile(2) call per PDU.
ZERO_COPY_MIN = 64 * 1024


def write_data_out(cdb: bytes, block_size: int) -> int:
    return block_range(cdb).blocks * block_size


async def write(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    flags, lba, n = _decode_rw(cdb)
    if flags & 0xE0:
        raise invalid_field(1, 7)  # WRPROTECT without protection information
    _check_transfer(lu, cdb, lba, n)
    if n == 0:
        return ScsiResult()
    bs = lu.block_size
    data = _data_out(cmd, n * bs)
    await lu.backend.write(lba * bs, data, fua=bool(flags & 0x08) or not lu.wce)
    return ScsiResult()


# ---------------------------------------------------------------------------------------------
# VERIFY / WRITE AND VERIFY


def verify_data_out(cdb: bytes, block_size: int) -> int:
    bytchk = (cdb[1] >> 1) & 0x03
    if bytchk == 1:
        return block_range(cdb).blocks * block_size
    if bytchk == 3:
        return block_size
    return 0


def _miscompare(offset: int) -> CheckCondition:
    return CheckCondition.of(MISCOMPARE_DURING_VERIFY, info=offset)


async def verify(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    flags, lba, n = _decode_rw(cdb)
    if flags & 0xE0:
        raise invalid_field(1, 7)  # VRPROTECT
    bytchk = (flags >> 1) & 0x03
    if bytchk == 2:
        raise invalid_field(1, 2)
    check_range(lba, n, lu.capacity)
    if n == 0 or bytchk == 0:
        return ScsiResult()  # medium verification: nothing can go stale in a virtual disk
    if n > lu.counts.max_transfer:
        raise invalid_field(_TL_BYTE.get(cdb[0] >> 5, 0))
    bs = lu.block_size
    current = await lu.backend.read(lba * bs, n * bs)
    if bytchk == 1:
        expected = _data_out(cmd, n * bs)
        diff = first_difference(current, expected)
        if diff >= 0:
            raise _miscompare(diff)
        return ScsiResult()
    # BYTCHK=11b: one block of Data-Out compared against every block of the range.
    block = memoryview(_data_out(cmd, bs)).cast("B")
    cur = memoryview(current).cast("B")
    for i in range(n):
        diff = first_difference(cur[i * bs : (i + 1) * bs], block)
        if diff >= 0:
            raise _miscompare(i * bs + diff)
    return ScsiResult()


async def write_and_verify(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    flags, lba, n = _decode_rw(cdb)
    if flags & 0xE0:
        raise invalid_field(1, 7)
    bytchk = (flags >> 1) & 0x03
    if bytchk > 1:
        raise invalid_field(1, 2)
    _check_transfer(lu, cdb, lba, n)
    if n == 0:
        return ScsiResult()
    bs = lu.block_size
    data = _data_out(cmd, n * bs)
    # The verify half means "on the medium": write through.
    await lu.backend.write(lba * bs, data, fua=True)
    if bytchk:
        diff = first_difference(await lu.backend.read(lba * bs, n * bs), data)
        if diff >= 0:
            raise _miscompare(diff)
    return ScsiResult()


# ---------------------------------------------------------------------------------------------
# SYNCHRONIZE CACHE


def _checked_range_10_16(lu: LogicalUnit, cdb: bytes) -> None:
    """LBA and block count of a 10-byte (LBA at 2, count at 7) or 16-byte (LBA at 2, count at
    10) CDB of SYNCHRONIZE CACHE / PRE-FETCH, checked against the capacity (0 = to the end)."""
    try:
        if cdb[0] in (0x35, 0x34):  # SYNCHRONIZE CACHE(10), PRE-FETCH(10)
            lba, n = u32(cdb, 2), u16(cdb, 7)
        else:
            lba, n = u64(cdb, 2), u32(cdb, 10)
    except struct.error:
        raise invalid_field(0) from None
    cap = lu.capacity
    if lba > cap or lba + n > cap:
        raise CheckCondition.of(LBA_OUT_OF_RANGE)


async def synchronize_cache(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    _checked_range_10_16(lu, cmd.cdb)
    await lu.backend.flush()
    return ScsiResult()


# ---------------------------------------------------------------------------------------------
# READ CAPACITY


async def read_capacity10(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    if len(cmd.cdb) < 10:
        raise invalid_field(0)
    last = max(lu.capacity - 1, 0)
    return ScsiResult(data=_BE32(min(last, 0xFFFFFFFF)) + _BE32(lu.block_size))


async def read_capacity16(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    if len(cdb) < 16:
        raise invalid_field(0)
    buf = bytearray(32)
    buf[0:8] = _BE64(max(lu.capacity - 1, 0))
    buf[8:12] = _BE32(lu.block_size)
    buf[13] = lu.counts.lbppb_exponent & 0x0F
    if lu.thin:
        buf[14] = 0x80 | 0x40  # LBPME | LBPRZ
    return ScsiResult(data=bytes(buf[: u32(cdb, 10)]))


# ---------------------------------------------------------------------------------------------
# WRITE SAME / UNMAP


def write_same_data_out(cdb: bytes, block_size: int) -> int:
    if cdb[0] == 0x93 and cdb[1] & 0x01:
        return 0  # NDOB: no Data-Out, the block is all zeros
    return block_size


async def write_same(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    sixteen = cdb[0] == 0x93
    try:
        if sixteen:
            lba, n = u64(cdb, 2), u32(cdb, 10)
        else:
            lba, n = u32(cdb, 2), u16(cdb, 7)
    except struct.error:
        raise invalid_field(0) from None
    flags = cdb[1]
    tl_byte = 10 if sixteen else 7
    if flags & 0xE0:
        raise invalid_field(1, 7)  # WRPROTECT
    if flags & 0x10:
        raise invalid_field(1, 4)  # ANCHOR: ANC_SUP=0
    if flags & 0x04:
        raise invalid_field(1, 2)  # PBDATA
    if flags & 0x02:
        raise invalid_field(1, 1)  # LBDATA
    unmap = bool(flags & 0x08)
    ndob = sixteen and bool(flags & 0x01)
    if unmap and not lu.thin:
        raise invalid_field(1, 3)
    if n == 0:
        raise invalid_field(tl_byte)  # WSNZ=1
    if n > lu.counts.max_write_same:
        raise invalid_field(tl_byte)
    check_range(lba, n, lu.capacity)
    bs = lu.block_size
    if ndob:
        zero = True
        block: Buffer = b""
    else:
        if cmd.expected_length and cmd.expected_length != bs:
            raise CheckCondition.of(INVALID_FIELD_IN_CMD_IU)
        block = _data_out(cmd, bs)
        if memoryview(block).nbytes != bs:
            raise CheckCondition.of(INVALID_FIELD_IN_CMD_IU)
        zero = bytes(block) == lu.zero_block
    backend = lu.backend
    offset, length = lba * bs, n * bs
    if zero:
        await backend.write_zeroes(offset, length, unmap=unmap)
        if not lu.wce:
            await backend.flush()
        return ScsiResult()
    pattern = bytes(block)
    per_chunk = max(1, min(n, WRITE_SAME_CHUNK_BYTES // bs))
    chunk = pattern * per_chunk
    fua = not lu.wce
    end = offset + length
    pos = offset
    while pos < end:
        size = min(len(chunk), end - pos)
        await backend.write(pos, chunk if size == len(chunk) else chunk[:size], fua=fua)
        pos += size
    return ScsiResult()


def unmap_data_out(cdb: bytes, block_size: int) -> int:
    return u16(cdb, 7)


async def unmap(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    if len(cdb) < 10:
        raise invalid_field(0)
    if not lu.thin:
        raise CheckCondition.of(INVALID_OPCODE, field=(0, 7, True))
    if cdb[1] & 0x01:
        raise invalid_field(1, 0)  # ANCHOR: ANC_SUP=0
    plen = u16(cdb, 7)
    if plen == 0:
        return ScsiResult()
    if plen < 8:
        raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
    data = memoryview(cmd.data_out).cast("B")[:plen].tobytes()
    if len(data) < plen:
        raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
    bd_len = u16(data, 2)
    if bd_len > plen - 8:
        raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
    count = bd_len // 16
    c = lu.counts
    if count > c.max_unmap_descriptors:
        raise invalid_param(2)
    cap = lu.capacity
    ranges: list[tuple[int, int]] = []
    for i in range(count):
        off = 8 + 16 * i
        lba, n = u64(data, off), u32(data, off + 8)
        if n > c.max_unmap:
            raise invalid_param(off + 8)
        check_range(lba, n, cap)
        if n:
            ranges.append((lba, n))
    bs = lu.block_size
    for lba, n in ranges:
        await lu.backend.discard(lba * bs, n * bs)
    return ScsiResult()


# ---------------------------------------------------------------------------------------------
# GET LBA STATUS

PROVISIONING_MAPPED = 0
PROVISIONING_DEALLOCATED = 1


async def get_lba_status(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    if len(cdb) < 16:
        raise invalid_field(0)
    lba = u64(cdb, 2)
    alloc = u32(cdb, 10)
    cap = lu.capacity
    if lba >= cap:
        raise CheckCondition.of(LBA_OUT_OF_RANGE)
    bs = lu.block_size
    # Describe as many runs as the allocation length holds (at least one), asking the backend
    # one window at a time; adjacent runs of the same status are merged, so a fully
    # deallocated LU is one descriptor up to the last LBA.
    max_desc = lba_status_descriptors(alloc)
    # A backend whose extents() costs per call rather than per byte (librbd: a thread hop and
    # an OSD round trip each) says how much one call should cover.
    window = max(1, getattr(lu.backend, "extents_window", LBA_STATUS_SCAN_BYTES) // bs)
    runs: list[list[int]] = []  # [start, blocks, status]
    pos = lba
    while pos < cap:
        blocks = min(cap - pos, window)
        extents = await lu.backend.extents(pos * bs, blocks * bs)
        if not extents:  # a backend that reported nothing: call it mapped
            extents = [Extent(pos * bs, blocks * bs, True)]
        cursor = pos
        for ext in extents:
            start = max(ext.offset // bs, cursor)
            stop = min((ext.offset + ext.length + bs - 1) // bs, pos + blocks)
            if stop <= start:
                continue
            status = PROVISIONING_MAPPED if ext.mapped else PROVISIONING_DEALLOCATED
            if runs and runs[-1][2] == status and runs[-1][0] + runs[-1][1] == start:
                runs[-1][1] += stop - start
            else:
                runs.append([start, stop - start, status])
            cursor = stop
        if cursor < pos + blocks:  # a gap the backend did not describe: mapped
            if runs and runs[-1][2] == PROVISIONING_MAPPED and runs[-1][0] + runs[-1][1] == cursor:
                runs[-1][1] += pos + blocks - cursor
            else:
                runs.append([cursor, pos + blocks - cursor, PROVISIONING_MAPPED])
        pos += blocks
        # Bounded work per command: the initiator asks again from where the last descriptor
        # ends (QEMU asks before reads; an unbounded scan of a big hole cost 43 ms on tmpfs).
        if len(runs) > max_desc or pos - lba >= lba_status_scan_blocks(max_desc, bs):
            break
    return ScsiResult(data=lba_status_data(runs, max_desc, alloc))


def lba_status_descriptors(alloc: int) -> int:
    """How many LBA status descriptors an allocation length holds (at least one)."""
    return max(1, (alloc - 8) // 16) if alloc > 8 else 1


def lba_status_scan_blocks(max_desc: int, block_size: int) -> int:
    """How far one GET LBA STATUS looks past its starting LBA, in blocks."""
    return max_desc * LBA_STATUS_SCAN_LIMIT_BYTES // block_size


def lba_status_data(runs: list[list[int]], max_desc: int, alloc: int) -> bytes:
    """GET LBA STATUS parameter data for ``runs`` ([start, blocks, status]), cut to ``alloc``."""
    body = bytearray()
    for start, count, status in runs[:max_desc]:
        while count and len(body) < 16 * max_desc:
            run = min(count, 0xFFFFFFFF)
            body += _BE64(start) + _BE32(run) + bytes((status, 0, 0, 0))
            start += run
            count -= run
    data = _BE32(len(body) + 4) + bytes(4) + body
    return data[:alloc]


# ---------------------------------------------------------------------------------------------
# COMPARE AND WRITE


def compare_and_write_data_out(cdb: bytes, block_size: int) -> int:
    return 2 * cdb[13] * block_size


async def compare_and_write(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    """Runs with the LU write gate held exclusively (see ``LogicalUnit.execute``)."""
    cdb = cmd.cdb
    if len(cdb) < 16:
        raise invalid_field(0)
    flags = cdb[1]
    if flags & 0xE0:
        raise invalid_field(1, 7)
    lba = u64(cdb, 2)
    n = cdb[13]
    if n == 0:
        if cmd.expected_length:
            # NLB=0 with Data-Out: the initiator meant a length the byte cannot hold (256+).
            raise invalid_field(13)
        return ScsiResult()
    if n > lu.counts.max_compare_and_write:
        raise invalid_field(13)
    check_range(lba, n, lu.capacity)
    bs = lu.block_size
    half = n * bs
    if cmd.expected_length and cmd.expected_length != 2 * half:
        raise CheckCondition.of(INVALID_FIELD_IN_CMD_IU)
    data = memoryview(_data_out(cmd, 2 * half)).cast("B")
    # The backend's own compare-and-write when it has one (librbd: atomic on the OSD, so
    # across gateways); otherwise read-compare-write under this LU's exclusive write gate.
    offset, fua = lba * bs, bool(flags & 0x08) or not lu.wce
    if lu.caw_lock is not None and not hasattr(lu.backend, "compare_and_write"):
        # Other gateways on this host: a byte-range lock on the backing store makes the
        # read-compare-write atomic against their COMPARE AND WRITEs too.
        async with lu.caw_lock(offset, half):
            diff = await backend_compare_and_write(
                lu.backend, offset, data[:half], data[half:], fua=fua
            )
    else:
        diff = await backend_compare_and_write(
            lu.backend, offset, data[:half], data[half:], fua=fua
        )
    if diff >= 0:
        raise _miscompare(diff)
    return ScsiResult()


# ---------------------------------------------------------------------------------------------
# ORWRITE / WRITE ATOMIC / PRE-FETCH / READ DEFECT DATA


def orwrite_data_out(cdb: bytes, block_size: int) -> int:
    return u32(cdb, 10) * block_size


async def orwrite(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    """ORWRITE(16): OR the Data-Out into the blocks. Runs with the write gate held
    exclusively, so the read-modify-write cannot interleave with another write."""
    cdb = cmd.cdb
    if len(cdb) < 16:
        raise invalid_field(0)
    flags = cdb[1]
    if flags & 0xE0:
        raise invalid_field(1, 7)  # ORPROTECT without protection information
    lba, n = u64(cdb, 2), u32(cdb, 10)
    _check_transfer(lu, cdb, lba, n)
    if n == 0:
        return ScsiResult()
    bs = lu.block_size
    data = memoryview(_data_out(cmd, n * bs)).cast("B")
    current = await lu.backend.read(lba * bs, n * bs)
    merged = (
        int.from_bytes(memoryview(current).cast("B"), "big") | int.from_bytes(data, "big")
    ).to_bytes(n * bs, "big")
    await lu.backend.write(lba * bs, merged, fua=bool(flags & 0x08) or not lu.wce)
    return ScsiResult()


def write_atomic_data_out(cdb: bytes, block_size: int) -> int:
    return u16(cdb, 12) * block_size


async def write_atomic16(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    """WRITE ATOMIC(16): one backend write under the exclusive write gate (no other write
    on the LU can interleave with it); ATOMIC BOUNDARY 0 only."""
    cdb = cmd.cdb
    if len(cdb) < 16:
        raise invalid_field(0)
    flags = cdb[1]
    if flags & 0xE0:
        raise invalid_field(1, 7)
    lba, boundary, n = u64(cdb, 2), u16(cdb, 10), u16(cdb, 12)
    if boundary:
        raise invalid_field(10)  # MAXIMUM ATOMIC BOUNDARY SIZE is 0
    check_range(lba, n, lu.capacity)
    if n > lu.counts.max_atomic_transfer:
        raise invalid_field(12)
    if n == 0:
        return ScsiResult()
    bs = lu.block_size
    data = _data_out(cmd, n * bs)
    await lu.backend.write(lba * bs, data, fua=bool(flags & 0x08) or not lu.wce)
    return ScsiResult()


async def pre_fetch(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    """PRE-FETCH(10/16): nothing is cached in the gateway, so there is nothing to load; the
    range is checked and GOOD (not CONDITION MET) is returned."""
    _checked_range_10_16(lu, cmd.cdb)
    return ScsiResult()


async def read_defect_data(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    """READ DEFECT DATA(10/12): a virtual disk has no defects; an empty list in the format
    asked for (SBC-3 §5.12/5.13)."""
    cdb = cmd.cdb
    if cdb[0] == 0x37:
        if len(cdb) < 10:
            raise invalid_field(0)
        flags = cdb[2] & 0x1F
        data = bytes((0, flags, 0, 0))
        return ScsiResult(data=data[: u16(cdb, 7)])
    if len(cdb) < 12:
        raise invalid_field(0)
    flags = cdb[1] & 0x1F
    data = bytes((0, flags)) + bytes(6)
    return ScsiResult(data=data[: u32(cdb, 6)])
