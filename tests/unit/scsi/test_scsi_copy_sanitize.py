"""EXTENDED COPY / RECEIVE COPY RESULTS, SANITIZE, ORWRITE, WRITE ATOMIC, PRE-FETCH,
READ DEFECT DATA and GET LBA STATUS run merging."""

from __future__ import annotations

import asyncio
import struct

from scsi_helpers import BLOCK, BLOCKS, Driver, cdb10, cdb16, make_lu, nexus

from iscsigw.scsi import sanitize as sanitize_mod
from iscsigw.scsi.identity import LuIdentity
from iscsigw.scsi.lun import LogicalUnit
from iscsigw.scsi.xcopy import LuRegistry


def xcopy_cdb(plen: int) -> bytes:
    return struct.pack(">BBxxxxxxxxIxB", 0x83, 0, plen, 0)


def rcr(sa: int, list_id: int = 0, alloc: int = 1024) -> bytes:
    return struct.pack(">BBBxxxxxxxIxB", 0x84, sa, list_id, alloc, 0)


def target_desc(lu: LogicalUnit) -> bytes:
    d = bytearray(32)
    d[0] = 0xE4
    d[4:8] = bytes((0x01, 0x03, 0x00, 0x10))
    d[8:24] = lu.identity.naa
    d[29:32] = lu.block_size.to_bytes(3, "big")
    return bytes(d)


def seg(src: int, dst: int, n: int, src_lba: int, dst_lba: int) -> bytes:
    return struct.pack(">BBHHHxxHQQ", 0x02, 0, 0x18, src, dst, n, src_lba, dst_lba)


def plist(targets: list[bytes], segs: list[bytes], list_id: int = 1, usage: int = 0) -> bytes:
    t, s = b"".join(targets), b"".join(segs)
    return struct.pack(">BBHxxxxII", list_id, usage << 3, len(t), len(s), 0) + t + s


async def test_xcopy_within_lu_and_copy_status(scsi: Driver, lu: LogicalUnit) -> None:
    s = await scsi.fail(rcr(0, 1))
    assert s.asc == 0x24  # no such list id yet
    await scsi.ok(cdb10(0x2A, 0, 8), b"A" * 8 * BLOCK)
    p = plist([target_desc(lu)], [seg(0, 0, 8, 0, 100)])
    await scsi.ok(xcopy_cdb(len(p)), p)
    assert await scsi.ok(cdb10(0x28, 100, 8)) == b"A" * 8 * BLOCK
    st = await scsi.ok(rcr(0, 1))
    assert st == bytes.fromhex("00000008 01 0001 00") + struct.pack(">I", 8 * BLOCK)
    await scsi.ok(xcopy_cdb(0))  # empty parameter list: GOOD


async def test_xcopy_errors(scsi: Driver, lu: LogicalUnit) -> None:
    p = plist([target_desc(lu)], [seg(0, 0, 8, 0, 100)])
    s = await scsi.fail(xcopy_cdb(16 + 31), p[: 16 + 31])
    assert (s.key, s.asc) == (5, 0x1A)
    bad = bytearray(p)
    bad[16] = 0xE0
    s = await scsi.fail(xcopy_cdb(len(bad)), bad)
    assert (s.key, s.asc, s.ascq) == (5, 0x26, 0x07)
    p9 = plist([target_desc(lu)] * 9, [seg(0, 0, 1, 0, 1)])
    s = await scsi.fail(xcopy_cdb(len(p9)), p9)
    assert (s.asc, s.ascq) == (0x26, 0x06)
    p17 = plist([target_desc(lu)], [seg(0, 0, 1, 0, 1)] * 17)
    s = await scsi.fail(xcopy_cdb(len(p17)), p17)
    assert (s.asc, s.ascq) == (0x26, 0x08)
    pidx = plist([target_desc(lu)], [seg(0, 1, 1, 0, 1)])
    s = await scsi.fail(xcopy_cdb(len(pidx)), pidx)
    assert (s.key, s.asc, s.ascq) == (0x0A, 0x0D, 0x02)
    peol = plist([target_desc(lu)], [seg(0, 0, 8, 0, BLOCKS - 1)])
    s = await scsi.fail(xcopy_cdb(len(peol)), peol)
    assert s.key == 0x0A
    other = make_lu()
    object.__setattr__(other, "identity", LuIdentity.from_stable_id("other"))
    pun = plist([target_desc(lu), target_desc(other)], [seg(0, 1, 1, 0, 0)])
    s = await scsi.fail(xcopy_cdb(len(pun)), pun)
    assert (s.key, s.asc, s.ascq) == (0x0A, 0x0D, 0x02)  # not in any registry


async def test_xcopy_across_lus_through_registry(scsi: Driver, lu: LogicalUnit) -> None:
    other = LogicalUnit(make_lu().backend, LuIdentity.from_stable_id("other"))
    reg = LuRegistry()
    reg.add(lu)
    reg.add(other)
    await scsi.ok(cdb10(0x2A, 5, 2), b"\x5a" * 2 * BLOCK)
    p = plist([target_desc(lu), target_desc(other)], [seg(0, 1, 2, 5, 7)], usage=3)
    await scsi.ok(xcopy_cdb(len(p)), p)
    assert await other.backend.read(7 * BLOCK, 2 * BLOCK) == b"\x5a" * 2 * BLOCK
    s = await scsi.fail(rcr(0, 1))  # LIST ID USAGE 11b: no status kept
    assert s.asc == 0x24


async def test_operating_parameters(scsi: Driver) -> None:
    d = await scsi.ok(rcr(3))
    assert struct.unpack(">I", d[:4])[0] == len(d) - 4
    assert struct.unpack(">HHI", d[8:16]) == (8, 16, 1024)
    assert d[43] == 2 and d[44:46] == b"\x02\xe4"


async def test_orwrite_and_write_atomic(scsi: Driver) -> None:
    await scsi.ok(cdb10(0x2A, 3, 1), b"\x0f" * BLOCK)
    await scsi.ok(cdb16(0x8B, 3, 1), b"\xa0" * BLOCK)
    assert await scsi.ok(cdb10(0x28, 3, 1)) == b"\xaf" * BLOCK
    s = await scsi.fail(cdb16(0x8B, 3, 1, flags=0x20), b"\xa0" * BLOCK)
    assert (s.asc, s.field) == (0x24, 1)
    s = await scsi.fail(cdb16(0x8B, BLOCKS, 1), b"\xa0" * BLOCK)
    assert s.asc == 0x21
    atomic = struct.pack(">BBQHHBB", 0x9C, 0x08, 4, 0, 2, 0, 0)
    await scsi.ok(atomic, b"\x11" * 2 * BLOCK)
    assert await scsi.ok(cdb10(0x28, 4, 2)) == b"\x11" * 2 * BLOCK
    await scsi.ok(struct.pack(">BBQHHBB", 0x9C, 0, 0, 0, 0, 0, 0))
    s = await scsi.fail(struct.pack(">BBQHHBB", 0x9C, 0, BLOCKS + 1, 0, 0, 0, 0))
    assert s.asc == 0x21
    vpd = await scsi.ok(bytes.fromhex("1201b000ff00"))
    assert struct.unpack(">I", vpd[44:48])[0] >= 256


async def test_prefetch_and_read_defect_data(scsi: Driver) -> None:
    await scsi.ok(cdb10(0x34, 0, 1, flags=0x02))
    await scsi.ok(cdb10(0x34, BLOCKS, 0))
    s = await scsi.fail(cdb10(0x34, BLOCKS, 1))
    assert s.asc == 0x21
    await scsi.ok(cdb16(0x90, 0, 8))
    s = await scsi.fail(cdb16(0x90, 2**63, 0))
    assert s.asc == 0x21
    assert await scsi.ok(bytes.fromhex("3700180000000000ff00")) == bytes.fromhex("00180000")
    assert await scsi.ok(bytes.fromhex("b718000000000000ffff0000")) == bytes.fromhex(
        "0018000000000000"
    )


async def test_get_lba_status_merges_runs_to_the_end(scsi: Driver, lu: LogicalUnit) -> None:
    await scsi.ok(cdb10(0x2A, 10, 2), b"x" * 2 * BLOCK)
    d = await scsi.ok(struct.pack(">BBQIBB", 0x9E, 0x12, 0, 256, 0, 0))
    descs = [struct.unpack(">QIB", d[8 + i : 8 + i + 13]) for i in range(0, len(d) - 8, 16)]
    assert sum(n for _, n, _ in descs) == BLOCKS
    assert [(lba, st) for lba, _, st in descs][:3] == [(0, 1), (10, 0), (12, 1)]


def sanitize_cdb(sa: int, plen: int = 0, immed: bool = False) -> bytes:
    return struct.pack(">BBxxxxxHB", 0x48, sa | (0x80 if immed else 0), plen, 0)


async def test_sanitize_overwrite_and_erase(scsi: Driver, lu: LogicalUnit) -> None:
    await scsi.ok(cdb10(0x2A, 0, 1), b"a" * BLOCK)
    param = bytes((0x01, 0, 0, 2)) + b"\xab\xcd"
    await scsi.ok(sanitize_cdb(1, len(param)), param)
    assert await scsi.ok(cdb10(0x28, BLOCKS - 1, 1)) == b"\xab\xcd" * (BLOCK // 2)
    await scsi.ok(sanitize_cdb(2))
    assert await scsi.ok(cdb10(0x28, 0, 1)) == bytes(BLOCK)
    for bad in (sanitize_cdb(1, 4), sanitize_cdb(1, BLOCK + 5), sanitize_cdb(2, 8)):
        s = await scsi.fail(bad, bytes(BLOCK + 8))
        assert s.asc == 0x24
    s = await scsi.fail(sanitize_cdb(1, 6), bytes((0x00, 0, 0, 2, 1, 2)))  # count 0
    assert s.asc == 0x26
    s = await scsi.fail(sanitize_cdb(4))
    assert s.asc == 0x24
    b1 = await scsi.ok(bytes.fromhex("1201b1004000"))
    assert b1[7] == 0x50  # WABEREQ = WACEREQ = 01b


async def test_sanitize_runs_in_background(monkeypatch: object, lu: LogicalUnit) -> None:
    monkeypatch.setattr(sanitize_mod, "OVERWRITE_BYTES_PER_SECOND", 4 << 20)  # type: ignore[attr-defined]
    a = Driver(lu, nexus())
    await a(bytes(6))
    param = bytes((0x01, 0, 0, 1, 0x00))
    await a.ok(sanitize_cdb(1, len(param), immed=True), param)
    s = await a.fail(bytes(6))
    assert (s.key, s.asc, s.ascq) == (2, 0x04, 0x1B)
    await a.ok(bytes.fromhex("120000006000"))  # INQUIRY still works
    rs = await a.ok(bytes.fromhex("030000001200"))
    assert (rs[2], rs[12], rs[13]) == (2, 0x04, 0x1B)
    lu.reset(a.nexus)  # a LUN reset does not stop it
    assert lu.sanitizing is not None
    await asyncio.wait_for(asyncio.shield(lu.sanitizing), 5)
    await a(bytes(6))  # the reset's UA
    await a.ok(bytes(6))
