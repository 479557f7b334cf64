"""One PDU type with named field accessors, and builders for every PDU a target sends.

A PDU is its 48-byte Basic Header Segment plus optional AHS and data segment. Fields are read
straight out of the BHS with struct, so decoding allocates nothing per field; the data segment
is kept as the buffer the framer handed over (no copy). Builders fill a fresh 48-byte bytearray.
Offsets follow RFC 7143 §11 (also tabulated in scsi-requirements.md §1.2).
"""

from __future__ import annotations

import struct

from .._types import Buffer, FileSlice, Payload, Received
from .constants import (
    BHS_LEN,
    DATA_IN_STATUS,
    FLAG_FINAL,
    RESERVED_TAG,
    Opcode,
)

_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_EMPTY = b""


class Pdu:
    """A framed PDU. ``bhs`` is exactly 48 bytes; ``data`` excludes padding and digests.

    An outgoing Data-In may carry its data segment as ``file_data`` (a range of a file the
    runtime sends with sendfile(2)) instead of ``data``.
    """

    __slots__ = ("ahs", "bhs", "data", "file_data")

    def __init__(
        self,
        bhs: bytearray | bytes | memoryview,
        data: Received = _EMPTY,
        ahs: bytes = _EMPTY,
        file_data: FileSlice | None = None,
    ) -> None:
        self.bhs = bhs
        self.data = data
        self.ahs = ahs
        self.file_data = file_data

    # -- generic header fields -------------------------------------------------------------
    @property
    def opcode(self) -> int:
        return self.bhs[0] & 0x3F

    @property
    def immediate(self) -> bool:
        return bool(self.bhs[0] & 0x40)

    @property
    def flags(self) -> int:
        return self.bhs[1]

    @property
    def final(self) -> bool:
        return bool(self.bhs[1] & FLAG_FINAL)

    @property
    def total_ahs_length(self) -> int:
        return self.bhs[4] * 4

    @property
    def data_length(self) -> int:
        b = self.bhs
        return (b[5] << 16) | (b[6] << 8) | b[7]

    @property
    def lun_bytes(self) -> bytes:
        return bytes(self.bhs[8:16])

    @property
    def isid(self) -> int:
        return int.from_bytes(self.bhs[8:14], "big")

    @property
    def tsih(self) -> int:
        return int(_U16.unpack_from(self.bhs, 14)[0])

    def u32(self, offset: int) -> int:
        return int(_U32.unpack_from(self.bhs, offset)[0])

    def u16(self, offset: int) -> int:
        return int(_U16.unpack_from(self.bhs, offset)[0])

    @property
    def itt(self) -> int:
        return self.u32(16)

    @property
    def ttt(self) -> int:  # NOP, Text, Data-Out
        return self.u32(20)

    @property
    def edtl(self) -> int:  # SCSI Command
        return self.u32(20)

    @property
    def cid(self) -> int:  # Login, Logout
        return self.u16(20)

    @property
    def cmdsn(self) -> int:
        return self.u32(24)

    @property
    def expstatsn(self) -> int:
        return self.u32(28)

    @property
    def datasn(self) -> int:  # Data-Out
        return self.u32(36)

    @property
    def buffer_offset(self) -> int:  # Data-Out
        return self.u32(40)

    @property
    def ref_task_tag(self) -> int:  # TMF
        return self.u32(20)

    @property
    def ref_cmdsn(self) -> int:  # TMF
        return self.u32(32)

    @property
    def cdb(self) -> bytes:
        return bytes(self.bhs[32:48])

    def __repr__(self) -> str:
        try:
            name = Opcode(self.opcode).name
        except ValueError:
            name = f"0x{self.opcode:02x}"
        return f"<Pdu {name} itt=0x{self.itt:08x} dsl={self.data_length}>"


def new_bhs(opcode: int, flags: int, data_length: int = 0) -> bytearray:
    bhs = bytearray(BHS_LEN)
    bhs[0] = opcode
    bhs[1] = flags
    bhs[5] = (data_length >> 16) & 0xFF
    bhs[6] = (data_length >> 8) & 0xFF
    bhs[7] = data_length & 0xFF
    return bhs


def set_data_length(bhs: bytearray, n: int) -> None:
    bhs[5] = (n >> 16) & 0xFF
    bhs[6] = (n >> 8) & 0xFF
    bhs[7] = n & 0xFF


_PACK_SEQ = struct.Struct(">III")  # StatSN, ExpCmdSN, MaxCmdSN at offset 24


# -- target -> initiator builders ------------------------------------------------------------
# Sequence numbers (StatSN/ExpCmdSN/MaxCmdSN) are filled in by the session at send time
# with ``stamp_sequence``; builders leave them zero unless told.


def stamp_sequence(bhs: bytearray, statsn: int, expcmdsn: int, maxcmdsn: int) -> None:
    _PACK_SEQ.pack_into(bhs, 24, statsn, expcmdsn, maxcmdsn)


def scsi_response(
    itt: int,
    status: int,
    *,
    sense: bytes = _EMPTY,
    flags: int = 0,
    residual: int = 0,
    exp_datasn: int = 0,
    response: int = 0,
) -> Pdu:
    data = _EMPTY
    if sense:
        data = _U16.pack(len(sense)) + sense
    bhs = new_bhs(Opcode.SCSI_RSP, FLAG_FINAL | flags, len(data))
    bhs[2] = response
    bhs[3] = status
    _U32.pack_into(bhs, 16, itt)
    _U32.pack_into(bhs, 36, exp_datasn)
    _U32.pack_into(bhs, 44, residual)
    return Pdu(bhs, data)


_DATA_IN_TAIL = struct.Struct(">II")  # DataSN, Buffer Offset at 36


def data_in(
    itt: int,
    lun: bytes,
    data: Payload,
    length: int,
    datasn: int,
    offset: int,
    *,
    final: bool,
    status: int | None = None,
    rsp_flags: int = 0,
    residual: int = 0,
) -> Pdu:
    flags = FLAG_FINAL if final else 0
    bhs = new_bhs(Opcode.DATA_IN, flags, length)
    if status is not None:
        bhs[1] |= DATA_IN_STATUS | rsp_flags | FLAG_FINAL
        bhs[3] = status
        _U32.pack_into(bhs, 44, residual)
    bhs[8:16] = lun
    _U32.pack_into(bhs, 16, itt)
    _U32.pack_into(bhs, 20, RESERVED_TAG)
    _DATA_IN_TAIL.pack_into(bhs, 36, datasn, offset)
    if isinstance(data, FileSlice):
        return Pdu(bhs, file_data=data)
    return Pdu(bhs, data)


def r2t(itt: int, lun: bytes, ttt: int, r2tsn: int, offset: int, length: int) -> Pdu:
    bhs = new_bhs(Opcode.R2T, FLAG_FINAL)
    bhs[8:16] = lun
    _U32.pack_into(bhs, 16, itt)
    _U32.pack_into(bhs, 20, ttt)
    struct.pack_into(">III", bhs, 36, r2tsn, offset, length)
    return Pdu(bhs)


def nop_in(itt: int, ttt: int, lun: bytes = bytes(8), data: Buffer = _EMPTY) -> Pdu:
    bhs = new_bhs(Opcode.NOP_IN, FLAG_FINAL, memoryview(data).nbytes)
    bhs[8:16] = lun
    _U32.pack_into(bhs, 16, itt)
    _U32.pack_into(bhs, 20, ttt)
    return Pdu(bhs, data)


def tmf_response(itt: int, response: int) -> Pdu:
    bhs = new_bhs(Opcode.TMF_RSP, FLAG_FINAL)
    bhs[2] = response
    _U32.pack_into(bhs, 16, itt)
    return Pdu(bhs)


def logout_response(itt: int, response: int, time2wait: int = 0, time2retain: int = 0) -> Pdu:
    bhs = new_bhs(Opcode.LOGOUT_RSP, FLAG_FINAL)
    bhs[2] = response
    _U32.pack_into(bhs, 16, itt)
    struct.pack_into(">HH", bhs, 40, time2wait, time2retain)
    return Pdu(bhs)


def text_response(itt: int, ttt: int, data: bytes, *, final: bool, cont: bool) -> Pdu:
    flags = (FLAG_FINAL if final else 0) | (0x40 if cont else 0)
    bhs = new_bhs(Opcode.TEXT_RSP, flags, len(data))
    bhs[8:16] = bytes(8)
    _U32.pack_into(bhs, 16, itt)
    _U32.pack_into(bhs, 20, ttt)
    return Pdu(bhs, data)


def login_response(
    req: Pdu,
    *,
    transit: bool,
    csg: int,
    nsg: int,
    status: int,
    tsih: int,
    data: bytes,
    cont: bool = False,
) -> Pdu:
    """A Login Response echoing the request's ISID/ITT; StatSN etc. stamped by the caller."""
    flags = (
        (0x80 if transit else 0)
        | (0x40 if cont else 0)
        | ((csg & 3) << 2)
        | (nsg & 3 if transit else 0)
    )
    bhs = new_bhs(Opcode.LOGIN_RSP, flags, len(data))
    bhs[2] = 0  # version-max
    bhs[3] = 0  # version-active
    bhs[8:14] = req.bhs[8:14]
    _U16.pack_into(bhs, 14, tsih)
    _U32.pack_into(bhs, 16, req.itt)
    bhs[36] = (status >> 8) & 0xFF
    bhs[37] = status & 0xFF
    return Pdu(bhs, data)


def reject(reason: int, rejected_bhs: Buffer, datasn_r2tsn: int = 0) -> Pdu:
    hdr = bytes(memoryview(rejected_bhs)[:BHS_LEN])
    bhs = new_bhs(Opcode.REJECT, FLAG_FINAL, len(hdr))
    bhs[2] = reason
    _U32.pack_into(bhs, 16, RESERVED_TAG)
    _U32.pack_into(bhs, 36, datasn_r2tsn)
    return Pdu(bhs, hdr)


def async_message(
    event: int,
    lun: bytes = bytes(8),
    *,
    p1: int = 0,
    p2: int = 0,
    p3: int = 0,
    data: bytes = _EMPTY,
) -> Pdu:
    bhs = new_bhs(Opcode.ASYNC_MSG, FLAG_FINAL, len(data))
    bhs[8:16] = lun
    _U32.pack_into(bhs, 16, RESERVED_TAG)
    bhs[36] = event
    struct.pack_into(">HHH", bhs, 38, p1, p2, p3)
    return Pdu(bhs, data)


# -- initiator -> target builders (tests and fuzzers use them) -----------------------------


def scsi_command(
    itt: int,
    cdb: bytes,
    *,
    edtl: int,
    cmdsn: int,
    expstatsn: int = 0,
    lun: bytes = bytes(8),
    read: bool = False,
    write: bool = False,
    final: bool = True,
    immediate: bool = False,
    attr: int = 1,
    data: Buffer = _EMPTY,
) -> Pdu:
    flags = (FLAG_FINAL if final else 0) | (0x40 if read else 0) | (0x20 if write else 0) | attr
    bhs = new_bhs(Opcode.SCSI_CMD | (0x40 if immediate else 0), flags, memoryview(data).nbytes)
    bhs[8:16] = lun
    struct.pack_into(">IIII", bhs, 16, itt, edtl, cmdsn, expstatsn)
    bhs[32 : 32 + len(cdb)] = cdb[:16]
    return Pdu(bhs, data)


def data_out(
    itt: int,
    ttt: int,
    datasn: int,
    offset: int,
    data: Buffer,
    *,
    final: bool,
    lun: bytes = bytes(8),
    expstatsn: int = 0,
) -> Pdu:
    bhs = new_bhs(Opcode.DATA_OUT, FLAG_FINAL if final else 0, memoryview(data).nbytes)
    bhs[8:16] = lun
    struct.pack_into(">II", bhs, 16, itt, ttt)
    _U32.pack_into(bhs, 28, expstatsn)
    struct.pack_into(">II", bhs, 36, datasn, offset)
    return Pdu(bhs, data)


def login_request(
    *,
    isid: int,
    tsih: int = 0,
    itt: int = 0,
    cid: int = 0,
    cmdsn: int = 0,
    expstatsn: int = 0,
    csg: int,
    nsg: int,
    transit: bool,
    data: bytes,
    cont: bool = False,
) -> Pdu:
    flags = (0x80 if transit else 0) | (0x40 if cont else 0) | ((csg & 3) << 2) | (nsg & 3)
    bhs = new_bhs(Opcode.LOGIN_REQ | 0x40, flags, len(data))
    bhs[8:14] = isid.to_bytes(6, "big")
    _U16.pack_into(bhs, 14, tsih)
    _U32.pack_into(bhs, 16, itt)
    _U16.pack_into(bhs, 20, cid)
    struct.pack_into(">II", bhs, 24, cmdsn, expstatsn)
    return Pdu(bhs, data)


def generic_request(
    opcode: int,
    flags: int,
    *,
    itt: int,
    cmdsn: int,
    expstatsn: int = 0,
    ttt: int = RESERVED_TAG,
    immediate: bool = False,
    lun: bytes = bytes(8),
    data: Buffer = _EMPTY,
) -> Pdu:
    """NOP-Out, Text, Logout and TMF requests (fields at offsets 16-31 are shared)."""
    bhs = new_bhs(opcode | (0x40 if immediate else 0), flags, memoryview(data).nbytes)
    bhs[8:16] = lun
    struct.pack_into(">IIII", bhs, 16, itt, ttt, cmdsn, expstatsn)
    return Pdu(bhs, data)
