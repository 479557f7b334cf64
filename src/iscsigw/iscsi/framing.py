"""Incremental PDU framing: feed bytes, take whole PDUs; plus the encoder to wire buffers.

The reader is a small state machine over one receive buffer. It never trusts a length field
beyond ``max_data_length`` (a huge DataSegmentLength is a format error, not an allocation).
"""

from __future__ import annotations

from .._types import Buffer, FileSlice, Payload
from ..errors import DigestError, PduFormatError
from .constants import BHS_LEN, DIGEST_LEN, INITIATOR_OPCODES
from .digest import crc32c
from .pdu import Pdu

_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")


def pad_len(n: int) -> int:
    return (-n) & 3


class PduReader:
    """Turns a byte stream from an initiator into PDUs.

    ``max_data_length`` bounds the data segment we accept (our MaxRecvDataSegmentLength, or a
    larger bound during login/text exchanges). Digests are switched on after login.
    """

    def __init__(self, max_data_length: int = 1 << 24, check_opcode: bool = True) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_data_length = max_data_length
        self.header_digest = False
        self.data_digest = False
        self._check_opcode = check_opcode

    def feed(self, data: Buffer) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next_pdu(self) -> Pdu | None:
        """Return the next whole PDU, or None when more bytes are needed.

        Raises PduFormatError (drop the connection) or DigestError.
        """
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < BHS_LEN:
            return None
        opcode = buf[pos] & 0x3F
        if self._check_opcode and opcode not in INITIATOR_OPCODES:
            raise PduFormatError(f"unknown initiator opcode 0x{opcode:02x}")
        ahs_len = buf[pos + 4] * 4
        dsl = (buf[pos + 5] << 16) | (buf[pos + 6] << 8) | buf[pos + 7]
        if dsl > self.max_data_length:
            raise PduFormatError(
                f"DataSegmentLength {dsl} exceeds the negotiated maximum {self.max_data_length}"
            )
        hdr_end = BHS_LEN + ahs_len
        hd = DIGEST_LEN if self.header_digest else 0
        dd = DIGEST_LEN if (self.data_digest and dsl) else 0
        total = hdr_end + hd + dsl + pad_len(dsl) + dd
        if avail < total:
            return None
        view = memoryview(buf)
        try:
            if hd:
                want = int.from_bytes(view[pos + hdr_end : pos + hdr_end + 4], "little")
                if crc32c(view[pos : pos + hdr_end]) != want:
                    raise DigestError("header digest mismatch")
            bhs = bytes(view[pos : pos + BHS_LEN])
            ahs = bytes(view[pos + BHS_LEN : pos + hdr_end]) if ahs_len else b""
            dstart = pos + hdr_end + hd
            data: bytes = b""
            if dsl:
                padded_end = dstart + dsl + pad_len(dsl)
                if dd:
                    want = int.from_bytes(view[padded_end : padded_end + 4], "little")
                    if crc32c(view[dstart:padded_end]) != want:
                        # Framing is intact: skip the PDU so the caller may Reject and go on.
                        self._pos = pos + total
                        raise DigestError("data digest mismatch")
                data = bytes(view[dstart : dstart + dsl])
        finally:
            view.release()
        self._pos = pos + total
        return Pdu(bhs, data, ahs)


def encode(pdu: Pdu, header_digest: bool = False, data_digest: bool = False) -> list[Payload]:
    """The PDU as a list of buffers for ``writelines`` (no copy of the data segment)."""
    hdr: Buffer = pdu.bhs if not pdu.ahs else bytes(pdu.bhs) + pdu.ahs
    out: list[Payload] = [hdr]
    if header_digest:
        out.append(crc32c(hdr).to_bytes(4, "little"))
    data: Payload = pdu.file_data if pdu.file_data is not None else pdu.data
    n = len(data) if isinstance(data, FileSlice) else memoryview(data).nbytes
    if n:
        out.append(data)
        pad = _PAD[n & 3]
        if pad:
            out.append(pad)
        if data_digest:
            assert not isinstance(data, FileSlice), "materialize FileSlices before digesting"
            value = crc32c(data)
            if pad:
                value = crc32c(pad, value)
            out.append(value.to_bytes(4, "little"))
    return out


def encode_bytes(pdu: Pdu, header_digest: bool = False, data_digest: bool = False) -> bytes:
    return b"".join(
        b.materialize() if isinstance(b, FileSlice) else bytes(b)
        for b in encode(pdu, header_digest, data_digest)
    )
