"""SPC-4 primary commands: INQUIRY (+VPD), REQUEST SENSE, TEST UNIT READY, MODE SENSE/SELECT,
START STOP UNIT, PREVENT ALLOW, REPORT LUNS, REPORT TARGET PORT GROUPS and
REPORT SUPPORTED OPERATION CODES.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .alua import AluaState
from .cdb import truncate, u16, u32
from .sense import (
    NO_SENSE_CODE,
    PARAM_LIST_LENGTH_ERROR,
    SAVING_PARAMS_UNSUPPORTED,
    CheckCondition,
    SenseCode,
    encode,
    invalid_field,
    invalid_param,
)
from .task import ScsiCommand, ScsiResult

if TYPE_CHECKING:
    from .dispatch import CommandSpec
    from .lun import LogicalUnit

_BE16 = struct.Struct(">H").pack
_BE32 = struct.Struct(">I").pack
_BE64 = struct.Struct(">Q").pack

# Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3
VERSION_DESCRIPTORS = (0x00A0, 0x0960, 0x0460, 0x04C0)

PERIPHERAL_DISK = 0x00
NO_LU_INQUIRY_BYTE0 = 0x7F  # PQ=011b, PDT=1Fh

# ---------------------------------------------------------------------------------------------
# Simple commands


async def test_unit_ready(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    return ScsiResult()


async def start_stop_unit(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    # Non-removable, always spinning: accepted and ignored (LOEJ has nothing to eject).
    return ScsiResult()


async def prevent_allow(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    return ScsiResult()


async def request_sense(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    if len(cdb) < 6:
        raise invalid_field(0)
    desc = bool(cdb[1] & 0x01)
    code = lu.pop_unit_attention(cmd.nexus)
    if code is None and lu.sanitize_in_progress:
        # NOT READY, SANITIZE IN PROGRESS (progress indication is not tracked).
        code = SenseCode(0x2, 0x04, 0x1B)
    return ScsiResult(data=truncate(encode(code or NO_SENSE_CODE, desc), cdb[4]))


# ---------------------------------------------------------------------------------------------
# INQUIRY


def standard_inquiry(lu: LogicalUnit) -> bytes:
    ident = lu.identity
    buf = bytearray(96)
    buf[0] = PERIPHERAL_DISK
    buf[2] = 0x06  # SPC-4
    buf[3] = 0x02  # response data format 2
    buf[4] = len(buf) - 5
    buf[5] = 0x10 | 0x08  # TPGS = 01b: implicit ALUA only; 3PC: EXTENDED COPY
    if lu.port_groups.port_count > 1:
        buf[6] = 0x10  # MULTIP
    buf[7] = 0x02  # CMDQUE
    buf[8:16] = ident.vendor_bytes
    buf[16:32] = ident.product_bytes
    buf[32:36] = ident.revision_bytes
    for i, v in enumerate(VERSION_DESCRIPTORS):
        buf[58 + 2 * i : 60 + 2 * i] = _BE16(v)
    return bytes(buf)


def no_lu_inquiry() -> bytes:
    """Standard INQUIRY data for a LUN with no logical unit behind it."""
    buf = bytearray(36)
    buf[0] = NO_LU_INQUIRY_BYTE0
    buf[2] = 0x06
    buf[3] = 0x02
    buf[4] = len(buf) - 5
    return bytes(buf)


def _vpd(page: int, body: bytes | bytearray) -> bytes:
    return bytes((PERIPHERAL_DISK, page)) + _BE16(len(body)) + bytes(body)


def vpd_supported_pages(lu: LogicalUnit) -> bytes:
    return _vpd(0x00, bytes(sorted(VPD_PAGES if lu.thin else VPD_PAGES.keys() - {0xB2})))


def vpd_unit_serial(lu: LogicalUnit) -> bytes:
    return _vpd(0x80, lu.identity.serial_bytes)


def _designator(proto_codeset: int, piv_assoc_type: int, payload: bytes) -> bytes:
    return bytes((proto_codeset, piv_assoc_type, 0, len(payload))) + payload


def _name_string(name: str) -> bytes:
    raw = name.encode("utf-8")[:251] + b"\x00"
    return raw + b"\x00" * (-len(raw) % 4)


PROTO_ISCSI = 0x5
CODESET_BINARY = 1
CODESET_ASCII = 2
CODESET_UTF8 = 3
PIV = 0x80
ASSOC_LU = 0x00
ASSOC_PORT = 0x10
ASSOC_DEVICE = 0x20


def vpd_device_identification(lu: LogicalUnit, cmd: ScsiCommand) -> bytes:
    ident = lu.identity
    nexus = cmd.nexus
    rtpi = nexus.relative_port_id
    group = lu.port_groups.group_of_port(rtpi)
    tpg_id = group.tpg_id if group is not None else nexus.tpgt
    iscsi_bin = (PROTO_ISCSI << 4) | CODESET_BINARY
    iscsi_utf8 = (PROTO_ISCSI << 4) | CODESET_UTF8
    body = bytearray()
    body += _designator(CODESET_BINARY, ASSOC_LU | 0x3, ident.naa)
    body += _designator(CODESET_ASCII, ASSOC_LU | 0x1, ident.vendor_bytes + ident.serial_bytes)
    body += _designator(iscsi_bin, PIV | ASSOC_PORT | 0x4, b"\x00\x00" + _BE16(rtpi & 0xFFFF))
    body += _designator(iscsi_bin, PIV | ASSOC_PORT | 0x5, b"\x00\x00" + _BE16(tpg_id & 0xFFFF))
    if nexus.target_name:
        body += _designator(iscsi_utf8, PIV | ASSOC_PORT | 0x8, _name_string(nexus.target_port))
        body += _designator(iscsi_utf8, PIV | ASSOC_DEVICE | 0x8, _name_string(nexus.target_name))
    return _vpd(0x83, body)


def vpd_extended_inquiry(lu: LogicalUnit) -> bytes:
    body = bytearray(0x3C)
    body[1] = 0x07  # HEADSUP | ORDSUP | SIMPSUP
    body[2] = 0x01 if lu.wce else 0x00  # V_SUP: volatile cache
    return _vpd(0x86, body)


def vpd_block_limits(lu: LogicalUnit) -> bytes:
    c = lu.counts
    body = bytearray(0x3C)
    body[0] = 0x01  # WSNZ: WRITE SAME with NLB=0 is refused
    body[1] = c.max_compare_and_write
    body[2:4] = _BE16(min(0xFFFF, 1 << c.lbppb_exponent))  # optimal transfer granularity
    body[4:8] = _BE32(c.max_transfer)
    body[8:12] = _BE32(c.optimal_transfer)
    if lu.thin:
        body[16:20] = _BE32(c.max_unmap)
        body[20:24] = _BE32(c.max_unmap_descriptors)
        body[24:28] = _BE32(c.unmap_granularity)
        body[28:32] = _BE32(0x80000000)  # UGAVALID, alignment 0
    body[32:40] = _BE64(c.max_write_same)
    body[40:44] = _BE32(c.max_atomic_transfer)  # MAXIMUM ATOMIC TRANSFER LENGTH
    # [44-47] ATOMIC ALIGNMENT 0, [48-51] ATOMIC TRANSFER LENGTH GRANULARITY 0: any
    return _vpd(0xB0, body)


def vpd_block_characteristics(lu: LogicalUnit) -> bytes:
    body = bytearray(0x3C)
    body[0:2] = _BE16(0x0001)  # non-rotating medium
    # WABEREQ=01b, WACEREQ=01b: a read after SANITIZE BLOCK/CRYPTO ERASE returns GOOD.
    body[3] = 0x50
    return _vpd(0xB1, body)


def vpd_logical_block_provisioning(lu: LogicalUnit) -> bytes:
    body = bytearray(4)
    # LBPU | LBPWS | LBPWS10 | LBPRZ (ANC_SUP=0, DP=0)
    body[1] = 0x80 | 0x40 | 0x20 | 0x04
    body[2] = 0x02  # thin provisioned
    return _vpd(0xB2, body)


VPD_PAGES: dict[int, Callable[[LogicalUnit, ScsiCommand], bytes]] = {
    0x00: lambda lu, cmd: vpd_supported_pages(lu),
    0x80: lambda lu, cmd: vpd_unit_serial(lu),
    0x83: vpd_device_identification,
    0x86: lambda lu, cmd: vpd_extended_inquiry(lu),
    0xB0: lambda lu, cmd: vpd_block_limits(lu),
    0xB1: lambda lu, cmd: vpd_block_characteristics(lu),
    0xB2: lambda lu, cmd: vpd_logical_block_provisioning(lu),
}


async def inquiry(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    if len(cdb) < 6:
        raise invalid_field(0)
    if cdb[1] & 0x02:
        raise invalid_field(1, 1)  # CMDDT
    alloc = u16(cdb, 3)
    page = cdb[2]
    if not cdb[1] & 0x01:
        if page:
            raise invalid_field(2)
        return ScsiResult(data=truncate(standard_inquiry(lu), alloc))
    builder = VPD_PAGES.get(page)
    if builder is None or (page == 0xB2 and not lu.thin):
        raise invalid_field(2)
    return ScsiResult(data=truncate(builder(lu, cmd), alloc))


# ---------------------------------------------------------------------------------------------
# Mode pages

PC_CURRENT, PC_CHANGEABLE, PC_DEFAULT, PC_SAVED = range(4)


def _page_rw_error_recovery(lu: LogicalUnit, pc: int) -> bytearray:
    return bytearray(b"\x01\x0a" + bytes(10))


def _page_caching(lu: LogicalUnit, pc: int) -> bytearray:
    p = bytearray(20)
    p[0:2] = b"\x08\x12"
    if pc == PC_CHANGEABLE:
        p[2] = 0x04
    elif pc == PC_DEFAULT:
        p[2] = 0x04 if lu.default_wce else 0
    else:
        p[2] = 0x04 if lu.wce else 0
    return p


def _page_control(lu: LogicalUnit, pc: int) -> bytearray:
    p = bytearray(12)
    p[0:2] = b"\x0a\x0a"
    if pc == PC_CHANGEABLE:
        p[2] = 0x04  # D_SENSE
        p[4] = 0x08  # SWP
        return p
    current = pc == PC_CURRENT
    p[2] = 0x04 if current and lu.d_sense else 0
    p[3] = 0x10  # QUEUE ALGORITHM MODIFIER = 1 (unrestricted reordering)
    p[4] = 0x08 if current and lu.swp else 0
    p[8:10] = b"\xff\xff"  # busy timeout period: unlimited
    p[10:12] = _BE16(30)  # extended self-test completion time
    return p


def _page_informational_exceptions(lu: LogicalUnit, pc: int) -> bytearray:
    return bytearray(b"\x1c\x0a" + bytes(10))


MODE_PAGES: dict[int, Callable[[LogicalUnit, int], bytearray]] = {
    0x01: _page_rw_error_recovery,
    0x08: _page_caching,
    0x0A: _page_control,
    0x1C: _page_informational_exceptions,
}


async def mode_sense(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    ten = cdb[0] == 0x5A
    if len(cdb) < (10 if ten else 6):
        raise invalid_field(0)
    dbd = bool(cdb[1] & 0x08)
    llbaa = ten and bool(cdb[1] & 0x10)
    pc = cdb[2] >> 6
    page = cdb[2] & 0x3F
    subpage = cdb[3]
    alloc = u16(cdb, 7) if ten else cdb[4]
    if pc == PC_SAVED:
        raise CheckCondition.of(SAVING_PARAMS_UNSUPPORTED, field=(2, 7, True))
    pages = bytearray()
    if page == 0x3F:
        if subpage not in (0x00, 0xFF):
            raise invalid_field(3)
        for code in sorted(MODE_PAGES):
            pages += MODE_PAGES[code](lu, pc)
    else:
        builder = MODE_PAGES.get(page)
        if builder is None:
            raise invalid_field(2, 5)
        if subpage != 0:
            raise invalid_field(3)
        pages += builder(lu, pc)

    block_desc = b""
    if not dbd:
        bs = lu.block_size if pc != PC_CHANGEABLE else 0
        nblocks = lu.capacity if pc != PC_CHANGEABLE else 0
        if llbaa:
            block_desc = _BE64(nblocks) + bytes(4) + _BE32(bs)
        else:
            block_desc = _BE32(min(nblocks, 0xFFFFFFFF)) + _BE32(bs & 0xFFFFFF)
    device_specific = 0x10  # DPOFUA
    if lu.write_protected:
        device_specific |= 0x80
    if ten:
        total = 8 + len(block_desc) + len(pages)
        header = (
            _BE16(total - 2)
            + bytes((0, device_specific, 0x01 if llbaa else 0x00, 0))
            + _BE16(len(block_desc))
        )
    else:
        total = 4 + len(block_desc) + len(pages)
        header = bytes((min(total - 1, 0xFF), 0, device_specific, len(block_desc)))
    return ScsiResult(data=truncate(header + block_desc + pages, alloc))


def mode_select_data_out(cdb: bytes, block_size: int) -> int:
    return u16(cdb, 7) if cdb[0] == 0x55 else cdb[4]


async def mode_select(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    ten = cdb[0] == 0x55
    if len(cdb) < (10 if ten else 6):
        raise invalid_field(0)
    if not cdb[1] & 0x10:
        raise invalid_field(1, 4)  # PF must be 1
    if cdb[1] & 0x01:
        raise invalid_field(1, 0)  # SP: saved pages are not supported
    plen = mode_select_data_out(cdb, lu.block_size)
    if plen == 0:
        return ScsiResult()
    data = bytes(memoryview(cmd.data_out)[:plen])
    hdr = 8 if ten else 4
    if len(data) < plen or plen < hdr:
        raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
    bdlen = u16(data, 6) if ten else data[3]
    if hdr + bdlen > plen:
        raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
    if bdlen not in (0, 8, 16) or (bdlen == 16 and not (ten and data[4] & 0x01)):
        raise invalid_param(6 if ten else 3)
    if bdlen:
        bs = u32(data, hdr + 12) if bdlen == 16 else (u32(data, hdr + 4) & 0xFFFFFF)
        if bs not in (0, lu.block_size):
            raise invalid_param(hdr + bdlen - 3)
    off = hdr + bdlen
    updates: dict[int, bytes] = {}
    while off < plen:
        if off + 2 > plen:
            raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
        if data[off] & 0x40:
            raise invalid_param(off, 6)  # no subpages are implemented
        code = data[off] & 0x3F
        length = data[off + 1]
        if off + 2 + length > plen:
            raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
        builder = MODE_PAGES.get(code)
        if builder is None:
            raise invalid_param(off, 5)
        current = builder(lu, PC_CURRENT)
        changeable = builder(lu, PC_CHANGEABLE)
        if length != current[1]:
            raise invalid_param(off + 1)
        new = data[off : off + 2 + length]
        for i in range(2, len(current)):
            bad = (new[i] ^ current[i]) & ~changeable[i] & 0xFF
            if bad:
                raise invalid_param(off + i, bad.bit_length() - 1)
        updates[code] = new
        off += 2 + length
    changed = False
    if 0x08 in updates:
        changed |= lu.set_mode(wce=bool(updates[0x08][2] & 0x04))
    if 0x0A in updates:
        page = updates[0x0A]
        changed |= lu.set_mode(d_sense=bool(page[2] & 0x04), swp=bool(page[4] & 0x08))
    if changed:
        lu.mode_parameters_changed(cmd.nexus)
        await lu.publish_mode()
    return ScsiResult()


# ---------------------------------------------------------------------------------------------
# REPORT LUNS


def encode_lun(lun: int) -> bytes:
    """SAM LUN field: peripheral addressing (``00 LL``) below 256, flat space up to 16383."""
    if 0 <= lun < 256:
        return bytes((0, lun)) + bytes(6)
    if 256 <= lun < 16384:
        return bytes((0x40 | (lun >> 8), lun & 0xFF)) + bytes(6)
    raise ValueError(f"LUN {lun} cannot be encoded")


def decode_lun(field: bytes) -> int:
    """Inverse of ``encode_lun``; raises ValueError for other addressing methods."""
    if len(field) < 2:
        raise ValueError("LUN field too short")
    method = field[0] >> 6
    if method == 0:
        if field[0] & 0x3F:
            raise ValueError("peripheral addressing with a bus identifier")
        return field[1]
    if method == 1:
        return ((field[0] & 0x3F) << 8) | field[1]
    raise ValueError(f"unsupported LUN addressing method {method}")


def report_luns_data(luns: Iterable[int], cdb: bytes) -> bytes:
    """REPORT LUNS parameter data for ``luns`` (already cut to the allocation length)."""
    if len(cdb) < 12:
        raise invalid_field(0)
    select = cdb[2]
    if select == 0x01:  # well-known LUs only: we have none
        listed: list[int] = []
    elif select in (0x00, 0x02):
        listed = sorted(luns)
    else:
        raise invalid_field(2)
    body = b"".join(encode_lun(n) for n in listed)
    return bytes(truncate(_BE32(len(body)) + bytes(4) + body, u32(cdb, 6)))


async def report_luns(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    # Normally answered by LunMap; a LU on its own reports itself as LUN 0.
    return ScsiResult(data=report_luns_data([0], cmd.cdb))


# ---------------------------------------------------------------------------------------------
# MAINTENANCE IN: REPORT TARGET PORT GROUPS / REPORT SUPPORTED OPERATION CODES

T_SUP, O_SUP, LBD_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP = 0x80, 0x40, 0x10, 0x08, 0x04, 0x02, 0x01


async def report_target_port_groups(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    if len(cdb) < 12:
        raise invalid_field(0)
    fmt = cdb[1] >> 5
    if fmt > 1:
        raise invalid_field(1, 7)
    alloc = u32(cdb, 6)
    pg = lu.port_groups
    states = {g.state for g in pg.groups}
    supported = T_SUP | AN_SUP | AO_SUP
    if AluaState.STANDBY in states:
        supported |= S_SUP
    if AluaState.UNAVAILABLE in states:
        supported |= U_SUP
    if AluaState.OFFLINE in states:
        supported |= O_SUP
    body = bytearray()
    for g in pg.groups:
        ports = g.port_ids
        body += bytes(
            (
                (0x80 if g.pref else 0) | int(g.state),
                supported,
                *_BE16(g.tpg_id & 0xFFFF),
                0,
                g.status_code,
                0,
                len(ports) & 0xFF,
            )
        )
        for rtpi in ports:
            body += b"\x00\x00" + _BE16(rtpi & 0xFFFF)
    if fmt == 1:
        header = bytes((0x10, min(pg.implicit_transition_time, 255), 0, 0))
        data = _BE32(len(body) + 4) + header + body
    else:
        data = _BE32(len(body)) + body
    return ScsiResult(data=truncate(data, alloc))


def _timeouts_descriptor(spec: CommandSpec) -> bytes:
    return b"\x00\x0a\x00\x00" + _BE32(0) + _BE32(spec.timeout)


async def report_supported_opcodes(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    if len(cdb) < 12:
        raise invalid_field(0)
    rctd = bool(cdb[2] & 0x80)
    option = cdb[2] & 0x07
    opcode = cdb[3]
    sa = u16(cdb, 4)
    alloc = u32(cdb, 6)
    table = lu.table
    if option == 0:
        body = bytearray()
        for spec in table:
            flags = (0x02 if rctd else 0) | (0x01 if spec.service_action is not None else 0)
            body += bytes((spec.opcode, 0))
            body += _BE16(spec.service_action or 0)
            body += bytes((0, flags))
            body += _BE16(spec.cdb_length)
            if rctd:
                body += _timeouts_descriptor(spec)
        return ScsiResult(data=truncate(_BE32(len(body)) + body, alloc))
    if option == 1:
        if table.has_service_actions(opcode):
            raise invalid_field(3)
        found = table.lookup(opcode)
    elif option == 2:
        if not table.has_service_actions(opcode):
            raise invalid_field(3)
        found = table.lookup(opcode, sa)
    else:
        raise invalid_field(2, 2)
    if found is None:
        data = b"\x00\x01\x00\x00"  # SUPPORT = 001b: not supported
    else:
        data = (
            bytes((0, (0x80 if rctd else 0) | 0x03))
            + _BE16(found.cdb_length)
            + found.usage
            + (_timeouts_descriptor(found) if rctd else b"")
        )
    return ScsiResult(data=truncate(data, alloc))
