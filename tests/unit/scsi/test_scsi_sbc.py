from __future__ import annotations

import asyncio
import struct

import pytest
from scsi_helpers import BLOCK, BLOCKS, UUID, Driver, cdb6, cdb10, cdb12, cdb16, nexus

from iscsigw._types import Buffer
from iscsigw.backends.memory import MemoryBackend
from iscsigw.scsi.identity import LuIdentity
from iscsigw.scsi.limits import BlockLimits
from iscsigw.scsi.lun import LogicalUnit
from iscsigw.scsi.sbc import first_difference

MAX_XFER = BlockLimits().max_transfer_bytes // BLOCK


class SpyBackend(MemoryBackend):
    def __init__(self, size: int, block_size: int = BLOCK) -> None:
        super().__init__(size, block_size)
        self.writes: list[tuple[int, int, bool]] = []
        self.flushes = 0
        self.discards: list[tuple[int, int]] = []
        self.zeroes: list[tuple[int, int, bool]] = []
        self.write_delay = 0.0

    async def write(self, offset: int, data: Buffer, *, fua: bool = False) -> None:
        self.writes.append((offset, memoryview(data).nbytes, fua))
        if self.write_delay:
            await asyncio.sleep(self.write_delay)
        await super().write(offset, data, fua=fua)

    async def flush(self) -> None:
        self.flushes += 1

    async def discard(self, offset: int, length: int) -> None:
        self.discards.append((offset, length))
        await super().discard(offset, length)

    async def write_zeroes(self, offset: int, length: int, *, unmap: bool = False) -> None:
        self.zeroes.append((offset, length, unmap))
        await super().write_zeroes(offset, length, unmap=unmap)


@pytest.fixture
def spy() -> SpyBackend:
    return SpyBackend(BLOCKS * BLOCK)


@pytest.fixture
async def drv(spy: SpyBackend) -> Driver:
    lu = LogicalUnit(spy, LuIdentity.from_stable_id(UUID))
    d = Driver(lu, nexus())
    await d(bytes(6))
    return d


def pattern(nblocks: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(nblocks * BLOCK))


READS = {6: (0x08, cdb6), 10: (0x28, cdb10), 12: (0xA8, cdb12), 16: (0x88, cdb16)}
WRITES = {6: (0x0A, cdb6), 10: (0x2A, cdb10), 12: (0xAA, cdb12), 16: (0x8A, cdb16)}


# ------------------------------------------------------------------------------ READ / WRITE


@pytest.mark.parametrize("size", [6, 10, 12, 16])
async def test_write_then_read_roundtrip(drv: Driver, size: int) -> None:
    wop, wcdb = WRITES[size]
    rop, rcdb = READS[size]
    data = pattern(3, seed=size)
    assert drv.lu.data_out_length(wcdb(wop, 10, 3)) == 3 * BLOCK
    assert drv.lu.data_out_length(rcdb(rop, 10, 3)) == 0
    await drv.ok(wcdb(wop, 10, 3), data)
    assert await drv.ok(rcdb(rop, 10, 3)) == data
    assert await drv.ok(rcdb(rop, 11, 1)) == data[BLOCK : 2 * BLOCK]


async def test_six_byte_zero_means_256_blocks(drv: Driver) -> None:
    assert drv.lu.data_out_length(cdb6(0x0A, 0, 0)) == 256 * BLOCK
    data = pattern(256)
    await drv.ok(cdb6(0x0A, 0, 0), data)
    assert await drv.ok(cdb6(0x08, 0, 0)) == data


async def test_write_passes_buffer_without_copy(drv: Driver, spy: SpyBackend) -> None:
    seen: list[object] = []
    orig = spy.write

    async def capture(offset: int, data: Buffer, *, fua: bool = False) -> None:
        seen.append(data)
        await orig(offset, data, fua=fua)

    spy.write = capture  # type: ignore[method-assign]
    buf = bytearray(pattern(2))
    await drv.ok(cdb10(0x2A, 0, 2), buf)
    assert seen[0] is buf


async def test_fua_reaches_backend(drv: Driver, spy: SpyBackend) -> None:
    await drv.ok(cdb10(0x2A, 0, 1, flags=0x08), bytes(BLOCK))
    await drv.ok(cdb16(0x8A, 1, 1), bytes(BLOCK))
    await drv.ok(cdb10(0x2A, 2, 1, flags=0x10), bytes(BLOCK))  # DPO is only a hint
    assert [w[2] for w in spy.writes] == [True, False, False]


async def test_wce_off_makes_every_write_fua(drv: Driver, spy: SpyBackend) -> None:
    drv.lu.set_mode(wce=False)
    await drv.ok(cdb10(0x2A, 0, 1), bytes(BLOCK))
    assert spy.writes[-1][2] is True


@pytest.mark.parametrize("size", [10, 12, 16])
async def test_zero_blocks_is_good_without_transfer(
    drv: Driver, spy: SpyBackend, size: int
) -> None:
    rop, rcdb = READS[size]
    wop, wcdb = WRITES[size]
    assert await drv.ok(rcdb(rop, 0, 0)) == b""
    assert await drv.ok(wcdb(wop, 0, 0)) == b""
    assert spy.writes == []


@pytest.mark.parametrize("size", [10, 12, 16])
@pytest.mark.parametrize(
    ("lba", "n"),
    [(BLOCKS, 1), (BLOCKS - 1, 2), (BLOCKS + 1, 0), (0x80000000, 1), (0xFFFFFFFF, 1)],
)
async def test_beyond_end_of_lun(drv: Driver, size: int, lba: int, n: int) -> None:
    rop, rcdb = READS[size]
    s = await drv.fail(rcdb(rop, lba, n))
    assert (s.key, s.asc, s.ascq) == (5, 0x21, 0)
    wop, wcdb = WRITES[size]
    s = await drv.fail(wcdb(wop, lba, n), bytes(n * BLOCK))
    assert (s.key, s.asc) == (5, 0x21)


@pytest.mark.parametrize("lba", [1 << 63, (1 << 64) - 1, (1 << 64) - 2])
async def test_beyond_end_16_wraparound(drv: Driver, lba: int) -> None:
    s = await drv.fail(cdb16(0x88, lba, 2))
    assert s.asc == 0x21


async def test_read6_beyond_end(drv: Driver) -> None:
    s = await drv.fail(cdb6(0x08, BLOCKS, 1))
    assert s.asc == 0x21


@pytest.mark.parametrize(("op", "mk"), [(0x28, cdb10), (0xA8, cdb12), (0x88, cdb16), (0x2A, cdb10)])
async def test_protect_field_rejected(drv: Driver, op: int, mk: object) -> None:
    for prot in range(1, 8):
        cdb = mk(op, 0, 1, flags=prot << 5)  # type: ignore[operator]
        s = await drv.fail(cdb, bytes(BLOCK))
        assert (s.key, s.asc, s.field, s.bpv, s.bit, s.cd) == (5, 0x24, 1, True, 7, True)


async def test_maximum_transfer_length_enforced() -> None:
    backend = MemoryBackend((MAX_XFER + 16) * BLOCK, BLOCK)
    lu = LogicalUnit(backend, LuIdentity.from_stable_id(UUID))
    drv = Driver(lu, nexus())
    await drv(bytes(6))
    assert len(await drv.ok(cdb16(0x88, 0, MAX_XFER))) == MAX_XFER * BLOCK
    s = await drv.fail(cdb16(0x88, 0, MAX_XFER + 1))
    assert (s.asc, s.field) == (0x24, 10)


# ------------------------------------------------------------------------------ READ CAPACITY


async def test_read_capacity10(drv: Driver) -> None:
    d = await drv.ok(bytes.fromhex("25000000000000000000"))
    assert struct.unpack(">II", d) == (BLOCKS - 1, BLOCK)


async def test_read_capacity10_large_lun_saturates() -> None:
    class Huge(MemoryBackend):
        @property
        def size(self) -> int:
            return (1 << 33) * BLOCK

    lu = LogicalUnit(Huge(BLOCK), LuIdentity.from_stable_id(UUID))
    drv = Driver(lu, nexus())
    await drv(bytes(6))
    d = await drv.ok(bytes.fromhex("25000000000000000000"))
    assert d[:4] == b"\xff\xff\xff\xff"
    d = await drv.ok(bytes.fromhex("9e10") + bytes(8) + struct.pack(">I", 32) + bytes(2))
    assert struct.unpack(">Q", d[:8])[0] == (1 << 33) - 1


def rc16(alloc: int = 32) -> bytes:
    return bytes.fromhex("9e10") + bytes(8) + struct.pack(">I", alloc) + bytes(2)


async def test_read_capacity16(drv: Driver) -> None:
    d = await drv.ok(rc16())
    assert len(d) == 32
    last, bl = struct.unpack(">QI", d[:12])
    assert (last, bl) == (BLOCKS - 1, BLOCK)
    assert d[12] == 0  # no protection
    assert d[13] & 0x0F == 0  # one logical block per physical block (see limits.py)
    assert d[14] & 0xC0 == 0xC0  # LBPME | LBPRZ
    assert d[16:] == bytes(16)


@pytest.mark.parametrize("alloc", range(16))
async def test_read_capacity16_small_allocation(drv: Driver, alloc: int) -> None:
    full = await drv.ok(rc16())
    assert await drv.ok(rc16(alloc)) == full[:alloc]


async def test_read_capacity16_without_discard_zeroes() -> None:
    class NoZero(MemoryBackend):
        @property
        def discard_zeroes(self) -> bool:
            return False

    lu = LogicalUnit(NoZero(BLOCKS * BLOCK, BLOCK), LuIdentity.from_stable_id(UUID))
    drv = Driver(lu, nexus())
    await drv(bytes(6))
    assert (await drv.ok(rc16()))[14] & 0xC0 == 0
    pages = await drv.ok(bytes.fromhex("1201000040 00".replace(" ", "")))
    assert 0xB2 not in pages[4:]
    s = await drv.fail(bytes.fromhex("1201b2004000"))
    assert s.asc == 0x24


# ------------------------------------------------------------------------------------ VERIFY


@pytest.mark.parametrize(("op", "mk"), [(0x2F, cdb10), (0xAF, cdb12), (0x8F, cdb16)])
async def test_verify_bytchk1_match_and_mismatch(drv: Driver, op: int, mk: object) -> None:
    data = pattern(4)
    await drv.ok(cdb10(0x2A, 8, 4), data)
    cdb = mk(op, 8, 4, flags=0x02)  # type: ignore[operator]
    assert drv.lu.data_out_length(cdb) == 4 * BLOCK
    await drv.ok(cdb, data)
    for off in (0, 1, BLOCK + 17, 4 * BLOCK - 1):
        bad = bytearray(data)
        bad[off] ^= 0x58
        s = await drv.fail(cdb, bad)
        assert (s.key, s.asc, s.ascq, s.info) == (0xE, 0x1D, 0, off)


async def test_verify_bytchk0_does_not_compare(drv: Driver) -> None:
    cdb = cdb10(0x2F, 0, 8)
    assert drv.lu.data_out_length(cdb) == 0
    await drv.ok(cdb)
    s = await drv.fail(cdb10(0x2F, BLOCKS, 1))
    assert s.asc == 0x21
    s = await drv.fail(cdb10(0x2F, BLOCKS + 1, 0, flags=0x02))
    assert s.asc == 0x21


async def test_verify_bytchk3_one_block_against_range(drv: Driver) -> None:
    block = pattern(1, seed=9)
    await drv.ok(cdb10(0x2A, 0, 3), block * 3)
    cdb = cdb16(0x8F, 0, 3, flags=0x06)
    assert drv.lu.data_out_length(cdb) == BLOCK
    await drv.ok(cdb, block)
    changed = bytearray(block * 3)
    changed[2 * BLOCK + 5] ^= 1
    await drv.ok(cdb10(0x2A, 0, 3), changed)
    s = await drv.fail(cdb, block)
    assert s.info == 2 * BLOCK + 5


async def test_verify_bad_fields(drv: Driver) -> None:
    s = await drv.fail(cdb10(0x2F, 0, 1, flags=0x04))  # BYTCHK=10b
    assert (s.asc, s.field, s.bit) == (0x24, 1, 2)
    s = await drv.fail(cdb10(0x2F, 0, 1, flags=0x20), bytes(BLOCK))  # VRPROTECT
    assert (s.asc, s.field, s.bit) == (0x24, 1, 7)


async def test_write_and_verify(drv: Driver, spy: SpyBackend) -> None:
    data = pattern(2, seed=3)
    for op, mk in ((0x2E, cdb10), (0xAE, cdb12), (0x8E, cdb16)):
        cdb = mk(op, 100, 2, flags=0x02)
        assert drv.lu.data_out_length(cdb) == 2 * BLOCK
        await drv.ok(cdb, data)
        assert await drv.ok(cdb10(0x28, 100, 2)) == data
        assert spy.writes[-1][2] is True
    s = await drv.fail(cdb10(0x2E, BLOCKS - 1, 2), bytes(2 * BLOCK))
    assert s.asc == 0x21
    s = await drv.fail(cdb10(0x2E, 0, 1, flags=0x40), bytes(BLOCK))
    assert (s.asc, s.field) == (0x24, 1)


# --------------------------------------------------------------------------- SYNCHRONIZE CACHE


async def test_synchronize_cache(drv: Driver, spy: SpyBackend) -> None:
    await drv.ok(cdb10(0x35, 0, 0))
    await drv.ok(cdb16(0x91, 10, 20, flags=0x02))
    assert spy.flushes == 2
    s = await drv.fail(cdb10(0x35, BLOCKS, 1))
    assert s.asc == 0x21
    s = await drv.fail(cdb16(0x91, BLOCKS + 1, 0))
    assert s.asc == 0x21
    assert spy.flushes == 2


# -------------------------------------------------------------------------------------- UNMAP


def unmap_params(*ranges: tuple[int, int]) -> bytes:
    body = b"".join(struct.pack(">QII", lba, n, 0) for lba, n in ranges)
    return struct.pack(">HH", len(body) + 6, len(body)) + bytes(4) + body


def unmap_cdb(plen: int, anchor: bool = False) -> bytes:
    return struct.pack(">BBIBHB", 0x42, 1 if anchor else 0, 0, 0, plen, 0)


def lba_status(lba: int, alloc: int = 24) -> bytes:
    return struct.pack(">BBQIBB", 0x9E, 0x12, lba, alloc, 0, 0)


def parse_lba_status(d: bytes) -> list[tuple[int, int, int]]:
    assert struct.unpack(">I", d[:4])[0] + 4 >= len(d)
    return [struct.unpack(">QIB", d[p : p + 13]) for p in range(8, len(d) - 15, 16)]


async def test_unmap_reads_zero_and_reports_deallocated(drv: Driver) -> None:
    await drv.ok(cdb10(0x2A, 0, 32), b"a" * 32 * BLOCK)
    params = unmap_params((8, 8), (20, 1))
    assert drv.lu.data_out_length(unmap_cdb(len(params))) == len(params)
    await drv.ok(unmap_cdb(len(params)), params)
    data = await drv.ok(cdb10(0x28, 0, 32))
    assert data[: 8 * BLOCK] == b"a" * 8 * BLOCK
    assert data[8 * BLOCK : 16 * BLOCK] == bytes(8 * BLOCK)
    assert data[16 * BLOCK : 20 * BLOCK] == b"a" * 4 * BLOCK
    assert data[20 * BLOCK : 21 * BLOCK] == bytes(BLOCK)
    assert parse_lba_status(await drv.ok(lba_status(8)))[0] == (8, 8, 1)
    assert parse_lba_status(await drv.ok(lba_status(0)))[0] == (0, 8, 0)
    descs = parse_lba_status(await drv.ok(lba_status(0, alloc=8 + 4 * 16)))
    assert descs == [(0, 8, 0), (8, 8, 1), (16, 4, 0), (20, 1, 1)]


async def test_unmap_zero_and_empty(drv: Driver, spy: SpyBackend) -> None:
    await drv.ok(unmap_cdb(0))
    params = unmap_params((5, 0))
    await drv.ok(unmap_cdb(len(params)), params)
    params = unmap_params()
    await drv.ok(unmap_cdb(len(params)), params)
    assert spy.discards == []


async def test_unmap_errors(drv: Driver, spy: SpyBackend) -> None:
    for plen in range(1, 8):
        s = await drv.fail(unmap_cdb(plen), bytes(plen))
        assert (s.asc, s.ascq) == (0x1A, 0)
    params = unmap_params((BLOCKS - 1, 2))
    s = await drv.fail(unmap_cdb(len(params)), params)
    assert s.asc == 0x21
    params = unmap_params((0, 1), ((1 << 64) - 1, 1))
    s = await drv.fail(unmap_cdb(len(params)), params)
    assert s.asc == 0x21
    max_bd = drv.lu.counts.max_unmap_descriptors
    params = unmap_params(*[(i, 1) for i in range(max_bd + 1)])
    s = await drv.fail(unmap_cdb(len(params)), params)
    assert (s.asc, s.cd) == (0x26, False)
    params = unmap_params((0, drv.lu.counts.max_unmap + 1))
    s = await drv.fail(unmap_cdb(len(params)), params)
    assert (s.asc, s.field) == (0x26, 16)
    params = unmap_params((0, 1))
    s = await drv.fail(unmap_cdb(len(params), anchor=True), params)
    assert (s.asc, s.field, s.bit) == (0x24, 1, 0)
    assert spy.discards == []  # nothing done when any descriptor was bad


# ---------------------------------------------------------------------------------- WRITE SAME


def ws10(lba: int, n: int, flags: int = 0) -> bytes:
    return cdb10(0x41, lba, n, flags)


def ws16(lba: int, n: int, flags: int = 0) -> bytes:
    return cdb16(0x93, lba, n, flags)


@pytest.mark.parametrize("mk", [ws10, ws16])
async def test_write_same_pattern(drv: Driver, mk: object) -> None:
    block = pattern(1, seed=5)
    cdb = mk(3, 300)  # type: ignore[operator]
    assert drv.lu.data_out_length(cdb) == BLOCK
    await drv.ok(cdb, block)
    assert await drv.ok(cdb10(0x28, 3, 300)) == block * 300
    assert await drv.ok(cdb10(0x28, 303, 1)) == bytes(BLOCK)


async def test_write_same_large_range_in_chunks(drv: Driver, spy: SpyBackend) -> None:
    block = b"\x01" * BLOCK
    await drv.ok(ws16(0, 3000), block)
    assert sum(n for _, n, _ in spy.writes) == 3000 * BLOCK
    assert await drv.ok(cdb16(0x88, 2990, 10)) == block * 10


@pytest.mark.parametrize(("mk", "flag"), [(ws10, 0x08), (ws16, 0x08)])
async def test_write_same_unmap_reads_back_zero(
    drv: Driver, spy: SpyBackend, mk: object, flag: int
) -> None:
    await drv.ok(cdb10(0x2A, 0, 16), b"\xff" * 16 * BLOCK)
    await drv.ok(mk(0, 16, flag), bytes(BLOCK))  # type: ignore[operator]
    assert spy.zeroes[-1] == (0, 16 * BLOCK, True)
    assert await drv.ok(cdb10(0x28, 0, 16)) == bytes(16 * BLOCK)
    assert parse_lba_status(await drv.ok(lba_status(0)))[0][2] == 1


async def test_write_same_unmap_with_nonzero_data_writes_it(drv: Driver) -> None:
    await drv.ok(ws16(0, 4, 0x08), b"\x07" * BLOCK)
    assert await drv.ok(cdb10(0x28, 0, 4)) == b"\x07" * 4 * BLOCK


async def test_write_same_ndob(drv: Driver) -> None:
    await drv.ok(cdb10(0x2A, 0, 4), b"\xff" * 4 * BLOCK)
    cdb = ws16(0, 4, 0x09)
    assert drv.lu.data_out_length(cdb) == 0
    await drv.ok(cdb, edtl=0)
    assert await drv.ok(cdb10(0x28, 0, 4)) == bytes(4 * BLOCK)


async def test_write_same_field_checks(drv: Driver) -> None:
    block = bytes(BLOCK)
    for cdb, field, bit in [
        (ws16(0, 0), 10, None),  # WSNZ
        (ws10(0, 0), 7, None),
        (ws16(0, 1, 0x10), 1, 4),  # ANCHOR without UNMAP
        (ws16(0, 1, 0x18), 1, 4),  # ANCHOR, ANC_SUP=0
        (ws10(0, 1, 0x02), 1, 1),  # LBDATA
        (ws10(0, 1, 0x04), 1, 2),  # PBDATA
        (ws16(0, 1, 0x20), 1, 7),  # WRPROTECT
        (ws16(0, drv.lu.counts.max_write_same + 1), 10, None),
    ]:
        s = await drv.fail(cdb, block)
        assert (s.key, s.asc, s.field) == (5, 0x24, field), cdb.hex()
        if bit is not None:
            assert s.bpv and s.bit == bit


async def test_write_same_beyond_end(drv: Driver) -> None:
    for cdb in (
        ws16(BLOCKS, 1),
        ws16(BLOCKS - 1, 2),
        ws16(1 << 63, 1),
        ws16((1 << 64) - 1, 1),
        ws10(0xFFFFFFFF, 1),
    ):
        s = await drv.fail(cdb, bytes(BLOCK))
        assert s.asc == 0x21


async def test_write_same_invalid_data_out_size(drv: Driver, spy: SpyBackend) -> None:
    s = await drv.fail(ws16(0, 1, 0x08), bytes(BLOCK // 2), edtl=BLOCK // 2)
    assert s.key == 5
    s = await drv.fail(ws16(0, 1, 0x08), bytes(BLOCK), edtl=2 * BLOCK)
    assert s.key == 5
    assert spy.zeroes == [] and spy.writes == []


# ------------------------------------------------------------------------------ GET LBA STATUS


async def test_get_lba_status_fresh_lun_and_end(drv: Driver) -> None:
    d = await drv.ok(lba_status(BLOCKS - 1))
    assert struct.unpack(">I", d[:4])[0] == 20
    assert parse_lba_status(d) == [(BLOCKS - 1, 1, 1)]
    s = await drv.fail(lba_status(BLOCKS))
    assert s.asc == 0x21
    s = await drv.fail(lba_status((1 << 64) - 1))
    assert s.asc == 0x21


async def test_get_lba_status_written_block_is_mapped(drv: Driver) -> None:
    await drv.ok(cdb10(0x2A, 5, 1), b"A" * BLOCK)
    assert parse_lba_status(await drv.ok(lba_status(5)))[0] == (5, 1, 0)
    assert parse_lba_status(await drv.ok(lba_status(6)))[0][0] == 6
    assert await drv.ok(lba_status(5, alloc=4)) == (await drv.ok(lba_status(5)))[:4]


# --------------------------------------------------------------------------- COMPARE AND WRITE


def caw(lba: int, n: int = 1, flags: int = 0) -> bytes:
    return struct.pack(">BBQBBBBBB", 0x89, flags, lba, 0, 0, 0, n, 0, 0)


async def test_compare_and_write_success(drv: Driver, spy: SpyBackend) -> None:
    await drv.ok(cdb16(0x8A, 7, 1), b"A" * BLOCK)
    assert drv.lu.data_out_length(caw(7)) == 2 * BLOCK
    await drv.ok(caw(7, flags=0x08), b"A" * BLOCK + b"B" * BLOCK)
    assert await drv.ok(cdb16(0x88, 7, 1)) == b"B" * BLOCK
    assert spy.writes[-1] == (7 * BLOCK, BLOCK, True)


@pytest.mark.parametrize("offset", [0, 1, 27, BLOCK - 27, BLOCK - 1])
async def test_compare_and_write_miscompare_offset(drv: Driver, offset: int) -> None:
    await drv.ok(cdb16(0x8A, 0, 1), b"B" * BLOCK)
    verify = bytearray(b"B" * BLOCK)
    verify[offset] = ord("Z")
    s = await drv.fail(caw(0), bytes(verify) + b"C" * BLOCK)
    assert (s.key, s.asc, s.ascq, s.info) == (0xE, 0x1D, 0, offset)
    assert await drv.ok(cdb16(0x88, 0, 1)) == b"B" * BLOCK


async def test_compare_and_write_miscompare_descriptor_sense(drv: Driver) -> None:
    drv.lu.set_mode(d_sense=True)
    res = await drv(caw(0), b"x" * 2 * BLOCK)
    assert res.sense[0] == 0x72
    assert res.sense[8:12] == b"\x00\x0a\x80\x00"
    assert res.sense[12:20] == (0).to_bytes(8, "big")


async def test_compare_and_write_limits(drv: Driver, spy: SpyBackend) -> None:
    assert await drv.ok(caw(0, 0)) == b""
    s = await drv.fail(caw(0, 2), bytes(4 * BLOCK))
    assert (s.asc, s.field) == (0x24, 13)
    s = await drv.fail(caw(BLOCKS), bytes(2 * BLOCK))
    assert s.asc == 0x21
    s = await drv.fail(caw(0, flags=0x20), bytes(2 * BLOCK))
    assert (s.asc, s.field, s.bit) == (0x24, 1, 7)
    # Data-Out size different from 2 * NLB blocks (CompareAndWrite.InvalidDataOutSize)
    s = await drv.fail(caw(0), bytes(2 * BLOCK), edtl=4 * BLOCK)
    assert (s.key, s.asc, s.ascq) == (5, 0x0E, 0x03)
    assert spy.writes == []


async def test_compare_and_write_is_atomic_against_writes(drv: Driver, spy: SpyBackend) -> None:
    await drv.ok(cdb16(0x8A, 0, 1), b"A" * BLOCK)
    spy.write_delay = 0.01
    # A slow write is in flight when CAW arrives; CAW must compare against its result.
    w = asyncio.create_task(drv.ok(cdb16(0x8A, 0, 1), b"W" * BLOCK))
    await asyncio.sleep(0.001)
    c = asyncio.create_task(drv(caw(0), b"A" * BLOCK + b"C" * BLOCK))
    await w
    res = await c
    assert res.status == 0x02  # compared against "W", not the stale "A"
    assert await drv.ok(cdb16(0x88, 0, 1)) == b"W" * BLOCK


async def test_concurrent_caws_only_one_wins(drv: Driver, spy: SpyBackend) -> None:
    await drv.ok(cdb16(0x8A, 0, 1), b"A" * BLOCK)
    spy.write_delay = 0.005
    results = await asyncio.gather(
        *(drv(caw(0), b"A" * BLOCK + bytes((0x30 + i,)) * BLOCK) for i in range(5))
    )
    assert sorted(r.status for r in results) == [0, 2, 2, 2, 2]


def test_first_difference() -> None:
    a = bytes(10000)
    b = bytearray(a)
    assert first_difference(a, b) == -1
    b[9000] = 1
    assert first_difference(a, b) == 9000
    b[3] = 1
    assert first_difference(memoryview(a), b) == 3
