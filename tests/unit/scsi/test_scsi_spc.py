from __future__ import annotations

import struct

import pytest
from scsi_helpers import BLOCK, BLOCKS, TARGET, UUID, Driver, cdb10, make_lu, nexus

from iscsigw.scsi.alua import AluaState, PortGroup, PortGroups
from iscsigw.scsi.identity import naa6_designator
from iscsigw.scsi.lun import LogicalUnit


def inquiry(evpd: int = 0, page: int = 0, alloc: int = 255, flags: int = 0) -> bytes:
    return struct.pack(">BBBHB", 0x12, evpd | flags, page, alloc, 0)


def mode_sense6(
    page: int, pc: int = 0, subpage: int = 0, alloc: int = 255, dbd: bool = False
) -> bytes:
    return bytes((0x1A, 0x08 if dbd else 0, (pc << 6) | page, subpage, alloc, 0))


def mode_sense10(
    page: int, pc: int = 0, alloc: int = 1024, dbd: bool = False, llbaa: bool = False
) -> bytes:
    flags = (0x08 if dbd else 0) | (0x10 if llbaa else 0)
    return struct.pack(">BBBBBBBHB", 0x5A, flags, (pc << 6) | page, 0, 0, 0, 0, alloc, 0)


def mode_select6(params: bytes, pf: bool = True, sp: bool = False) -> bytes:
    return bytes((0x15, (0x10 if pf else 0) | (0x01 if sp else 0), 0, 0, len(params), 0))


def rsoc(
    option: int = 0, opcode: int = 0, sa: int = 0, alloc: int = 65535, rctd: bool = False
) -> bytes:
    return struct.pack(
        ">BBBBHIBB", 0xA3, 0x0C, (0x80 if rctd else 0) | option, opcode, sa, alloc, 0, 0
    )


def rtpg(extended: bool = True, alloc: int = 1024) -> bytes:
    return struct.pack(">BBIIBB", 0xA3, (0x20 if extended else 0) | 0x0A, 0, alloc, 0, 0)


def pages_of(data: bytes, header: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = header
    while pos < len(data):
        code, length = data[pos] & 0x3F, data[pos + 1]
        out[code] = data[pos : pos + 2 + length]
        pos += 2 + length
    return out


# ------------------------------------------------------------------------------------ INQUIRY


async def test_standard_inquiry(scsi: Driver) -> None:
    d = await scsi.ok(inquiry(alloc=260))
    assert len(d) == 96
    assert d[0] == 0x00  # PQ 0, disk
    assert d[1] == 0x00  # RMB 0
    assert d[2] == 0x06
    assert d[3] == 0x02  # no AERC/TRMTSK/NORMACA/HISUP
    assert d[4] == len(d) - 5
    assert (d[5] >> 4) & 0x3 == 0x1  # TPGS implicit
    assert d[5] & 0x09 == 0x08  # 3PC (EXTENDED COPY), no PROTECT
    assert d[6] & 0x10  # MULTIP: two port groups
    assert d[7] == 0x02  # CMDQUE
    assert d[8:16] == b"ISCSIGW "
    assert d[16:32] == b"VIRTUAL-DISK    "
    assert all(0x20 <= c <= 0x7E for c in d[8:36])
    versions = struct.unpack(">8H", d[58:74])
    assert {0x00A0, 0x0960, 0x0460, 0x04C0} <= set(versions)
    assert d[74:] == bytes(len(d) - 74)


async def test_inquiry_allocation_length_truncates(scsi: Driver) -> None:
    full = await scsi.ok(inquiry(alloc=512))
    assert await scsi.ok(inquiry(alloc=511)) == full
    assert await scsi.ok(inquiry(alloc=5)) == full[:5]
    assert await scsi.ok(inquiry(alloc=0)) == b""


async def test_inquiry_bad_fields(scsi: Driver) -> None:
    s = await scsi.fail(inquiry(page=0x80))  # EVPD=0 with a page code
    assert (s.key, s.asc, s.sksv, s.cd, s.field) == (5, 0x24, True, True, 2)
    s = await scsi.fail(inquiry(flags=0x02))  # CMDDT
    assert (s.asc, s.field, s.bpv, s.bit) == (0x24, 1, True, 1)
    s = await scsi.fail(inquiry(evpd=1, page=0xC7))
    assert (s.asc, s.field) == (0x24, 2)


async def test_vpd_supported_pages_sorted(scsi: Driver) -> None:
    d = await scsi.ok(inquiry(1, 0x00))
    assert d[1] == 0x00
    pages = list(d[4 : 4 + struct.unpack(">H", d[2:4])[0]])
    assert pages == [0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1, 0xB2]
    for page in pages:  # every listed page can be fetched
        got = await scsi.ok(inquiry(1, page))
        assert got[1] == page
        assert struct.unpack(">H", got[2:4])[0] == len(got) - 4


async def test_vpd_unit_serial(scsi: Driver) -> None:
    d = await scsi.ok(inquiry(1, 0x80))
    assert d[:2] == b"\x00\x80"
    assert d[4:] == UUID.replace("-", "").encode()
    assert d[3] == len(d) - 4


def _designators(page: bytes) -> list[tuple[int, int, bytes]]:
    out = []
    pos = 4
    while pos < len(page):
        length = page[pos + 3]
        out.append((page[pos], page[pos + 1], page[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    assert pos == len(page)
    return out


async def test_vpd_device_identification(lu: LogicalUnit) -> None:
    drv = Driver(lu, nexus(tpgt=2))
    d = bytes((await drv(inquiry(1, 0x83))).data)  # INQUIRY does not need the UA cleared
    assert d[:2] == b"\x00\x83"
    assert struct.unpack(">H", d[2:4])[0] == len(d) - 4
    desc = _designators(d)
    assert desc[0] == (0x01, 0x03, naa6_designator(UUID))  # LU, NAA, binary
    assert desc[1][:2] == (0x02, 0x01) and desc[1][2].startswith(b"ISCSIGW ")
    assert desc[2] == (0x51, 0x94, b"\x00\x00\x00\x02")  # relative target port 2
    assert desc[3] == (0x51, 0x95, b"\x00\x00\x00\x02")  # target port group 2
    assert desc[4][:2] == (0x53, 0x98)
    name = desc[4][2]
    assert len(name) % 4 == 0 and name.rstrip(b"\x00") == f"{TARGET},t,0x0002".encode()
    assert desc[5][:2] == (0x53, 0xA8)
    assert desc[5][2].rstrip(b"\x00") == TARGET.encode()


async def test_vpd_identification_is_identical_across_gateways_for_lu_part() -> None:
    a, b = make_lu(), make_lu()
    da = bytes((await Driver(a, nexus(tpgt=1))(inquiry(1, 0x83))).data)
    db = bytes((await Driver(b, nexus(tpgt=1))(inquiry(1, 0x83))).data)
    assert da == db


async def test_vpd_block_limits(scsi: Driver) -> None:
    d = await scsi.ok(inquiry(1, 0xB0))
    assert len(d) == 64 and d[:4] == b"\x00\xb0\x00\x3c"
    assert d[4] & 0x01  # WSNZ
    assert d[5] == 1  # MAXIMUM COMPARE AND WRITE LENGTH
    max_xfer, opt_xfer = struct.unpack(">II", d[8:16])
    assert max_xfer == (32 << 20) // BLOCK
    assert 0 < opt_xfer <= max_xfer
    max_unmap, max_bd, gran, align = struct.unpack(">IIII", d[20:36])
    assert 0 < max_unmap <= 1 << 20
    assert 0 < max_bd <= 1 << 20
    assert gran == 4096 // BLOCK
    assert align == 0x80000000
    assert struct.unpack(">Q", d[36:44])[0] > 0


async def test_vpd_block_characteristics_and_provisioning(scsi: Driver) -> None:
    d = await scsi.ok(inquiry(1, 0xB1))
    assert d[:4] == b"\x00\xb1\x00\x3c" and d[4:6] == b"\x00\x01"
    d = await scsi.ok(inquiry(1, 0xB2))
    assert d[:4] == b"\x00\xb2\x00\x04"
    assert d[5] == 0x80 | 0x40 | 0x20 | 0x04  # LBPU LBPWS LBPWS10 LBPRZ
    assert d[6] & 0x07 == 2  # thin


async def test_vpd_extended_inquiry(scsi: Driver) -> None:
    d = await scsi.ok(inquiry(1, 0x86))
    assert d[:4] == b"\x00\x86\x00\x3c"
    assert d[5] == 0x07
    assert d[6] & 0x01  # V_SUP with WCE


# ---------------------------------------------------------------------------- simple commands


async def test_tur_start_stop_prevent_allow(scsi: Driver) -> None:
    assert await scsi.ok(bytes(6)) == b""
    assert await scsi.ok(bytes.fromhex("1b0000000100")) == b""
    assert await scsi.ok(bytes.fromhex("1b0000000000")) == b""
    assert await scsi.ok(bytes.fromhex("1e0000000100")) == b""
    assert await scsi.ok(bytes.fromhex("1e0000000000")) == b""


async def test_request_sense_no_sense(scsi: Driver) -> None:
    d = await scsi.ok(bytes.fromhex("0300000012 00".replace(" ", "")))
    assert len(d) == 18 and d[0] == 0x70 and d[2] == 0 and d[12:14] == b"\x00\x00"
    d = await scsi.ok(bytes.fromhex("030100001200"))
    assert d[:4] == b"\x72\x00\x00\x00"
    assert await scsi.ok(bytes.fromhex("030000000400")) == b"\x70\x00\x00\x00"


# -------------------------------------------------------------------------------- MODE SENSE


async def test_mode_sense6_all_pages(scsi: Driver) -> None:
    d = await scsi.ok(mode_sense6(0x3F))
    assert d[0] == len(d) - 1
    assert d[0] >= 3
    assert d[2] == 0x10  # DPOFUA, not write protected
    assert d[3] == 8
    nblocks, bl = struct.unpack(">II", d[4:12])
    assert nblocks == BLOCKS and bl == BLOCK
    pages = pages_of(d, 12)
    assert sorted(pages) == [0x01, 0x08, 0x0A, 0x1C]
    assert pages[0x08][1] == 0x12 and pages[0x08][2] & 0x04  # WCE
    ctrl = pages[0x0A]
    assert ctrl[1] == 0x0A
    assert ctrl[2] & 0x04 == 0  # D_SENSE off
    assert ctrl[3] >> 4 == 1  # QAM
    assert ctrl[4] & 0x38 == 0  # UA_INTLCK_CTRL 00, SWP 0
    assert ctrl[8:10] == b"\xff\xff"


async def test_mode_sense6_subpage_ff_and_bad_subpage(scsi: Driver) -> None:
    assert await scsi.ok(mode_sense6(0x3F, subpage=0xFF)) == await scsi.ok(mode_sense6(0x3F))
    s = await scsi.fail(mode_sense6(0x3F, subpage=0x05))
    assert (s.asc, s.field) == (0x24, 3)
    s = await scsi.fail(mode_sense6(0x08, subpage=0x01))
    assert (s.asc, s.field) == (0x24, 3)


async def test_mode_sense_single_page_matches_all_pages(scsi: Driver) -> None:
    all_pages = pages_of(await scsi.ok(mode_sense6(0x3F, dbd=True)), 4)
    for code in (0x01, 0x08, 0x0A, 0x1C):
        d = await scsi.ok(mode_sense6(code, dbd=True))
        assert d[3] == 0
        assert pages_of(d, 4) == {code: all_pages[code]}


async def test_mode_sense6_truncation(scsi: Driver) -> None:
    full = await scsi.ok(mode_sense6(0x3F))
    assert await scsi.ok(mode_sense6(0x3F, alloc=4)) == full[:4]
    assert full[0] == len(full) - 1  # length field reports the full size


async def test_mode_sense_pc_variants(scsi: Driver) -> None:
    chg = pages_of(await scsi.ok(mode_sense6(0x3F, pc=1, dbd=True)), 4)
    assert chg[0x08][2] == 0x04
    assert chg[0x0A][2] == 0x04 and chg[0x0A][4] == 0x08
    assert chg[0x01][2:] == bytes(10)
    dflt = pages_of(await scsi.ok(mode_sense6(0x3F, pc=2, dbd=True)), 4)
    assert dflt[0x08][2] & 0x04
    s = await scsi.fail(mode_sense6(0x3F, pc=3))
    assert (s.key, s.asc, s.ascq) == (5, 0x39, 0)


async def test_mode_sense_unknown_page(scsi: Driver) -> None:
    s = await scsi.fail(mode_sense6(0x19))
    assert (s.key, s.asc, s.field, s.bit) == (5, 0x24, 2, 5)


async def test_mode_sense10_headers(scsi: Driver) -> None:
    d = await scsi.ok(mode_sense10(0x0A))
    assert struct.unpack(">H", d[0:2])[0] == len(d) - 2
    assert d[3] == 0x10 and d[4] == 0
    assert struct.unpack(">H", d[6:8])[0] == 8
    assert struct.unpack(">II", d[8:16]) == (BLOCKS, BLOCK)
    assert list(pages_of(d, 16)) == [0x0A]
    d = await scsi.ok(mode_sense10(0x0A, llbaa=True))
    assert d[4] & 0x01
    assert struct.unpack(">H", d[6:8])[0] == 16
    assert struct.unpack(">Q", d[8:16])[0] == BLOCKS
    assert struct.unpack(">I", d[20:24])[0] == BLOCK
    d = await scsi.ok(mode_sense10(0x0A, dbd=True))
    assert struct.unpack(">H", d[6:8])[0] == 0 and len(d) == 8 + 12


async def test_mode_sense_reports_write_protect() -> None:
    lu = make_lu(read_only=True)
    drv = Driver(lu, nexus())
    await drv(bytes(6))
    d = await drv.ok(mode_sense6(0x3F))
    assert d[2] & 0x80


# ------------------------------------------------------------------------------- MODE SELECT


async def _control_page(scsi: Driver) -> bytearray:
    return bytearray(pages_of(await scsi.ok(mode_sense6(0x0A, dbd=True)), 4)[0x0A])


async def test_mode_select_d_sense_switches_sense_format(scsi: Driver) -> None:
    page = await _control_page(scsi)
    page[2] |= 0x04
    params = bytes(4) + page
    await scsi.ok(mode_select6(params), params)
    assert scsi.lu.d_sense
    res = await scsi(cdb10(0x28, 0xFFFFFFFF, 1))
    assert res.sense[0] == 0x72
    page[2] &= ~0x04
    params = bytes(4) + page
    await scsi.ok(mode_select6(params), params)
    res = await scsi(cdb10(0x28, 0xFFFFFFFF, 1))
    assert res.sense[0] == 0x70


async def test_mode_select_swp_write_protects(scsi: Driver) -> None:
    page = await _control_page(scsi)
    page[4] |= 0x08
    params = bytes(4) + page
    await scsi.ok(mode_select6(params), params)
    assert (await _control_page(scsi))[4] & 0x08
    await scsi.ok(cdb10(0x28, 0, 1))
    s = await scsi.fail(cdb10(0x2A, 0, 1), bytes(BLOCK))
    assert (s.key, s.asc, s.ascq) == (7, 0x27, 0)
    page[4] &= ~0x08
    params = bytes(4) + page
    await scsi.ok(mode_select6(params), params)
    await scsi.ok(cdb10(0x2A, 0, 1), bytes(BLOCK))


async def test_mode_select_wce_toggle_with_block_descriptor(scsi: Driver) -> None:
    d = await scsi.ok(mode_sense6(0x08))
    params = bytearray(d)
    params[0] = 0  # mode data length is reserved in MODE SELECT
    params[12 + 2] &= ~0x04
    await scsi.ok(mode_select6(bytes(params)), bytes(params))
    assert scsi.lu.wce is False
    d = await scsi.ok(mode_sense6(0x08, dbd=True))
    assert d[4 + 2] & 0x04 == 0


async def test_mode_select10(scsi: Driver) -> None:
    page = await _control_page(scsi)
    page[2] |= 0x04
    params = bytes(8) + page
    cdb = struct.pack(">BBBBBBBHB", 0x55, 0x10, 0, 0, 0, 0, 0, len(params), 0)
    assert scsi.lu.data_out_length(cdb) == len(params)
    await scsi.ok(cdb, params)
    assert scsi.lu.d_sense


async def test_mode_select_rejects_unchangeable_field(scsi: Driver) -> None:
    page = await _control_page(scsi)
    page[3] = 0x00  # QAM is not changeable
    params = bytes(4) + page
    s = await scsi.fail(mode_select6(params), params)
    assert (s.key, s.asc) == (5, 0x26)
    assert s.sksv and not s.cd and s.field == 4 + 3 and s.bpv and s.bit == 4


async def test_mode_select_errors(scsi: Driver) -> None:
    page = await _control_page(scsi)
    params = bytes(4) + page
    s = await scsi.fail(mode_select6(params, pf=False), params)
    assert (s.asc, s.field, s.bit) == (0x24, 1, 4)
    s = await scsi.fail(mode_select6(params, sp=True), params)
    assert (s.asc, s.field, s.bit) == (0x24, 1, 0)
    s = await scsi.fail(mode_select6(b"\x00\x00"), b"\x00\x00")
    assert (s.asc, s.ascq) == (0x1A, 0)
    truncated = params[:-2]
    s = await scsi.fail(mode_select6(truncated), truncated)
    assert s.asc == 0x1A
    bad_len = bytes(4) + bytes((0x0A, 0x08)) + page[2:10]
    s = await scsi.fail(mode_select6(bad_len), bad_len)
    assert (s.asc, s.field) == (0x26, 5)
    unknown = bytes(4) + b"\x19\x02\x00\x00"
    s = await scsi.fail(mode_select6(unknown), unknown)
    assert (s.asc, s.field) == (0x26, 4)
    assert await scsi.ok(mode_select6(b"")) == b""  # zero-length parameter list


async def test_mode_select_queues_mode_parameters_changed_for_others(scsi: Driver) -> None:
    other = nexus("iqn.1994-05.com.redhat:b")
    await scsi(bytes(6), nexus=other)  # consume its POWER ON UA
    page = await _control_page(scsi)
    page[2] |= 0x04
    params = bytes(4) + page
    await scsi.ok(mode_select6(params), params)
    await scsi.ok(bytes(6))  # issuer: no UA
    s = await scsi.fail(bytes(6), nexus=other)
    assert (s.key, s.asc, s.ascq) == (6, 0x2A, 0x01)


# ------------------------------------------------------------------------------------- RSOC


def _parse_all(data: bytes) -> list[tuple[int, int, int, int, bytes]]:
    length = struct.unpack(">I", data[:4])[0]
    assert length == len(data) - 4
    out = []
    pos = 4
    while pos < len(data):
        op, _, sa, _, flags, cdblen = struct.unpack(">BBHBBH", data[pos : pos + 8])
        pos += 8
        to = b""
        if flags & 0x02:
            to = data[pos : pos + 12]
            pos += 12
        out.append((op, sa, flags, cdblen, to))
    return out


async def test_rsoc_all_commands(scsi: Driver) -> None:
    descs = _parse_all(await scsi.ok(rsoc()))
    ops = {(op, sa if flags & 1 else None) for op, sa, flags, _, _ in descs}
    for needed in [
        (0x00, None),
        (0x12, None),
        (0x28, None),
        (0x2A, None),
        (0x88, None),
        (0x89, None),
        (0x93, None),
        (0x42, None),
        (0x9E, 0x10),
        (0x9E, 0x12),
        (0xA3, 0x0C),
        (0xA3, 0x0A),
        (0x1A, None),
        (0x35, None),
    ]:
        assert needed in ops
    for op, sa, flags, cdblen, to in descs:
        assert not flags & 0x02 and to == b""
        if not flags & 0x01:
            assert sa == 0  # SERVACTV clear -> service action zero
        assert cdblen == {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}[op >> 5]
    assert (0x5E, None) not in ops  # PR is not implemented, so not listed


async def test_rsoc_rctd_adds_timeout_descriptors(scsi: Driver) -> None:
    descs = _parse_all(await scsi.ok(rsoc(rctd=True)))
    assert descs
    for _, _, flags, _, to in descs:
        assert flags & 0x02
        assert to[:2] == b"\x00\x0a"
        assert struct.unpack(">I", to[8:12])[0] > 0


async def test_rsoc_one_command_for_every_listed_opcode(scsi: Driver) -> None:
    for op, sa, flags, cdblen, _ in _parse_all(await scsi.ok(rsoc())):
        has_sa = bool(flags & 1)
        d = await scsi.ok(rsoc(2 if has_sa else 1, op, sa))
        assert d[1] & 0x07 == 3
        assert struct.unpack(">H", d[2:4])[0] == cdblen
        assert d[4] == op
        assert len(d) == 4 + cdblen
        s = await scsi.fail(rsoc(1 if has_sa else 2, op, sa))
        assert s.asc == 0x24 and s.field != 1


async def test_rsoc_one_command_rctd_and_unsupported(scsi: Driver) -> None:
    d = await scsi.ok(rsoc(1, 0x28, rctd=True))
    assert d[1] == 0x80 | 0x03
    assert d[4:14] == bytes.fromhex("28f8ffffffff00ffff00")
    assert d[14:16] == b"\x00\x0a" and len(d) == 4 + 10 + 12
    d = await scsi.ok(rsoc(1, 0x3C))
    assert d == b"\x00\x01\x00\x00"
    d = await scsi.ok(rsoc(2, 0x9E, 0x1F))
    assert d[1] & 0x07 == 1
    s = await scsi.fail(rsoc(5))
    assert (s.asc, s.field) == (0x24, 2)


async def test_rsoc_allocation_length(scsi: Driver) -> None:
    full = await scsi.ok(rsoc())
    assert await scsi.ok(rsoc(alloc=10)) == full[:10]


# ------------------------------------------------------------------------------------- RTPG


async def test_rtpg_extended_header(scsi: Driver) -> None:
    d = await scsi.ok(rtpg())
    assert struct.unpack(">I", d[:4])[0] == len(d) - 4
    assert d[4] == 0x10 and d[5] == 45
    g1, g2 = d[8:16], d[20:28]
    assert g1[0] == AluaState.ACTIVE_OPTIMIZED  # no PREF
    assert g1[1] & 0x83 == 0x83  # T_SUP AN_SUP AO_SUP
    assert g1[2:4] == b"\x00\x01" and g1[7] == 1
    assert d[16:20] == b"\x00\x00\x00\x01"  # RTPI 1
    assert g2[0] == AluaState.ACTIVE_NON_OPTIMIZED
    assert struct.unpack(">H", g2[2:4])[0] == 2 and g2[7] == 1
    assert d[28:32] == b"\x00\x00\x00\x02"
    assert len(d) == 32


async def test_rtpg_plain_header_and_truncation(scsi: Driver) -> None:
    d = await scsi.ok(rtpg(extended=False))
    assert struct.unpack(">I", d[:4])[0] == len(d) - 4 == 24
    assert d[4] == AluaState.ACTIVE_OPTIMIZED and d[6:8] == b"\x00\x01"
    short = await scsi.ok(rtpg(alloc=4))
    assert short == (await scsi.ok(rtpg()))[:4]
    assert struct.unpack(">I", short)[0] == 28  # full length still reported


async def test_rtpg_pref_and_other_states() -> None:
    pg = PortGroups(
        (
            PortGroup(1, AluaState.STANDBY),
            PortGroup(7, AluaState.ACTIVE_OPTIMIZED, pref=True, ports=(7, 8)),
        )
    )
    lu = make_lu(port_groups=pg)
    drv = Driver(lu, nexus(tpgt=7))
    await drv(bytes(6))
    d = await drv.ok(rtpg())
    assert d[8] == AluaState.STANDBY and d[9] & 0x04
    assert d[20] == 0x80 | AluaState.ACTIVE_OPTIMIZED
    assert d[27] == 2 and d[28:36] == b"\x00\x00\x00\x07\x00\x00\x00\x08"


async def test_rtpg_bad_format(scsi: Driver) -> None:
    cdb = bytearray(rtpg())
    cdb[1] = 0x40 | 0x0A
    s = await scsi.fail(bytes(cdb))
    assert (s.asc, s.field) == (0x24, 1)


@pytest.mark.parametrize("alloc", [0, 3, 8])
async def test_report_luns_on_bare_lu(scsi: Driver, alloc: int) -> None:
    full = await scsi.ok(struct.pack(">BBBBBBIBB", 0xA0, 0, 0, 0, 0, 0, 64, 0, 0))
    assert full == b"\x00\x00\x00\x08" + bytes(4) + bytes(8)
    part = await scsi.ok(struct.pack(">BBBBBBIBB", 0xA0, 0, 0, 0, 0, 0, alloc, 0, 0))
    assert part == full[:alloc]
