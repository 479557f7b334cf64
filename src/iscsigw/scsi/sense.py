"""SCSI sense data (SPC-4 §4.5): the CheckCondition exception and the two sense formats.

Inside the SCSI layer a failing command raises :class:`CheckCondition`; ``LogicalUnit.execute``
turns it into a CHECK CONDITION result whose sense bytes use the fixed format (0x70/0xF0) or,
when the Control mode page has D_SENSE=1, the descriptor format (0x72).
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import IscsiGwError
from .task import CHECK_CONDITION

# Sense keys
NO_SENSE = 0x0
RECOVERED_ERROR = 0x1
NOT_READY = 0x2
MEDIUM_ERROR = 0x3
HARDWARE_ERROR = 0x4
ILLEGAL_REQUEST = 0x5
UNIT_ATTENTION = 0x6
DATA_PROTECT = 0x7
ABORTED_COMMAND = 0xB
MISCOMPARE = 0xE

FIXED_SENSE_LEN = 18


class SenseCode(NamedTuple):
    """A sense key with its additional sense code and qualifier."""

    key: int
    asc: int
    ascq: int


# Common key/ASC/ASCQ triples (SPC-4 Annex D)
NO_SENSE_CODE = SenseCode(NO_SENSE, 0x00, 0x00)
INVALID_OPCODE = SenseCode(ILLEGAL_REQUEST, 0x20, 0x00)
INVALID_FIELD_IN_CDB = SenseCode(ILLEGAL_REQUEST, 0x24, 0x00)
INVALID_FIELD_IN_PARAM = SenseCode(ILLEGAL_REQUEST, 0x26, 0x00)
PARAM_LIST_LENGTH_ERROR = SenseCode(ILLEGAL_REQUEST, 0x1A, 0x00)
LBA_OUT_OF_RANGE = SenseCode(ILLEGAL_REQUEST, 0x21, 0x00)
LUN_NOT_SUPPORTED = SenseCode(ILLEGAL_REQUEST, 0x25, 0x00)
SAVING_PARAMS_UNSUPPORTED = SenseCode(ILLEGAL_REQUEST, 0x39, 0x00)
INVALID_FIELD_IN_CMD_IU = SenseCode(ILLEGAL_REQUEST, 0x0E, 0x03)
MISCOMPARE_DURING_VERIFY = SenseCode(MISCOMPARE, 0x1D, 0x00)
NOT_READY_MANUAL_INTERVENTION = SenseCode(NOT_READY, 0x04, 0x03)
NOT_READY_ALUA_TRANSITION = SenseCode(NOT_READY, 0x04, 0x0A)
NOT_READY_ALUA_STANDBY = SenseCode(NOT_READY, 0x04, 0x0B)
NOT_READY_ALUA_UNAVAILABLE = SenseCode(NOT_READY, 0x04, 0x0C)
NOT_READY_ALUA_OFFLINE = SenseCode(NOT_READY, 0x04, 0x12)
POWER_ON_RESET = SenseCode(UNIT_ATTENTION, 0x29, 0x00)
BUS_DEVICE_RESET = SenseCode(UNIT_ATTENTION, 0x29, 0x03)
I_T_NEXUS_LOSS = SenseCode(UNIT_ATTENTION, 0x29, 0x07)
MODE_PARAMS_CHANGED = SenseCode(UNIT_ATTENTION, 0x2A, 0x01)
RESERVATIONS_PREEMPTED = SenseCode(UNIT_ATTENTION, 0x2A, 0x03)
RESERVATIONS_RELEASED = SenseCode(UNIT_ATTENTION, 0x2A, 0x04)
REGISTRATIONS_PREEMPTED = SenseCode(UNIT_ATTENTION, 0x2A, 0x05)
ASYMMETRIC_ACCESS_STATE_CHANGED = SenseCode(UNIT_ATTENTION, 0x2A, 0x06)
IMPLICIT_TRANSITION_FAILED = SenseCode(UNIT_ATTENTION, 0x2A, 0x07)
CAPACITY_DATA_CHANGED = SenseCode(UNIT_ATTENTION, 0x2A, 0x09)
INQUIRY_DATA_CHANGED = SenseCode(UNIT_ATTENTION, 0x3F, 0x03)
REPORTED_LUNS_CHANGED = SenseCode(UNIT_ATTENTION, 0x3F, 0x0E)
WRITE_PROTECTED = SenseCode(DATA_PROTECT, 0x27, 0x00)
SPACE_ALLOCATION_FAILED = SenseCode(DATA_PROTECT, 0x27, 0x07)
UNRECOVERED_READ_ERROR = SenseCode(MEDIUM_ERROR, 0x11, 0x00)
INTERNAL_TARGET_FAILURE = SenseCode(HARDWARE_ERROR, 0x44, 0x00)


class FieldPointer(NamedTuple):
    """Where the offending field is: byte offset, optional bit (0-7), in the CDB or data-out."""

    byte: int
    bit: int | None = None
    in_cdb: bool = True


class CheckCondition(IscsiGwError):
    """A command ends in CHECK CONDITION (or another non-GOOD ``status``) with this sense."""

    def __init__(
        self,
        key: int,
        asc: int,
        ascq: int,
        *,
        info: int | None = None,
        field: tuple[int, int | None, bool] | None = None,
        status: int = CHECK_CONDITION,
    ) -> None:
        super().__init__(f"sense {key:X}/{asc:02X}/{ascq:02X}")
        self.key = key
        self.asc = asc
        self.ascq = ascq
        self.info = info
        self.field = FieldPointer(*field) if field is not None else None
        self.status = status

    @classmethod
    def of(
        cls,
        code: SenseCode,
        *,
        info: int | None = None,
        field: tuple[int, int | None, bool] | None = None,
    ) -> CheckCondition:
        return cls(code.key, code.asc, code.ascq, info=info, field=field)

    @property
    def code(self) -> SenseCode:
        return SenseCode(self.key, self.asc, self.ascq)

    def encode(self, descriptor: bool = False) -> bytes:
        if descriptor:
            return encode_descriptor(self.key, self.asc, self.ascq, self.info, self.field)
        return encode_fixed(self.key, self.asc, self.ascq, self.info, self.field)


def invalid_field(byte: int, bit: int | None = None) -> CheckCondition:
    """5/24/00 INVALID FIELD IN CDB pointing at ``byte`` (and ``bit``) of the CDB."""
    return CheckCondition(ILLEGAL_REQUEST, 0x24, 0x00, field=(byte, bit, True))


def invalid_param(byte: int, bit: int | None = None) -> CheckCondition:
    """5/26/00 INVALID FIELD IN PARAMETER LIST pointing into the Data-Out buffer."""
    return CheckCondition(ILLEGAL_REQUEST, 0x26, 0x00, field=(byte, bit, False))


def _sks(field: FieldPointer) -> bytes:
    b0 = 0x80  # SKSV
    if field.in_cdb:
        b0 |= 0x40  # C/D
    if field.bit is not None:
        b0 |= 0x08 | (field.bit & 0x07)  # BPV + bit pointer
    return bytes((b0, (field.byte >> 8) & 0xFF, field.byte & 0xFF))


def encode_fixed(
    key: int,
    asc: int,
    ascq: int,
    info: int | None = None,
    field: FieldPointer | None = None,
) -> bytes:
    """18-byte fixed-format sense data, current error (0x70, or 0xF0 with a valid INFORMATION)."""
    buf = bytearray(FIXED_SENSE_LEN)
    buf[0] = 0x70
    if info is not None and 0 <= info <= 0xFFFFFFFF:
        buf[0] = 0xF0
        buf[3:7] = info.to_bytes(4, "big")
    buf[2] = key & 0x0F
    buf[7] = FIXED_SENSE_LEN - 8
    buf[12] = asc
    buf[13] = ascq
    if field is not None:
        buf[15:18] = _sks(field)
    return bytes(buf)


def encode_descriptor(
    key: int,
    asc: int,
    ascq: int,
    info: int | None = None,
    field: FieldPointer | None = None,
) -> bytes:
    """Descriptor-format sense data (0x72) with Information and Sense-key-specific descriptors."""
    buf = bytearray(8)
    buf[0] = 0x72
    buf[1] = key & 0x0F
    buf[2] = asc
    buf[3] = ascq
    if info is not None:
        buf += b"\x00\x0a\x80\x00" + (info & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
    if field is not None:
        buf += b"\x02\x06\x00\x00" + _sks(field) + b"\x00"
    buf[7] = len(buf) - 8
    return bytes(buf)


def encode(code: SenseCode, descriptor: bool = False, info: int | None = None) -> bytes:
    """Sense bytes for ``code`` in the requested format."""
    if descriptor:
        return encode_descriptor(code.key, code.asc, code.ascq, info)
    return encode_fixed(code.key, code.asc, code.ascq, info)
