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

    Why two buffers: a PDU that lies whole inside one received chunk is parsed in place and its
    data segment is a memoryview of that (immutable) chunk, so a 256 KiB Data-Out is never
    copied here. Only a PDU split across chunks is assembled in ``_acc``.
    """

    def __init__(self, max_data_length: int = 1 << 24, check_opcode: bool = True) -> None:
        self._chunk: Buffer = b""
        self._cpos = 0
        self._acc = bytearray()
        self._apos = 0
        self.max_data_length = max_data_length
        self.header_digest = False
        self.data_digest = False
        self._check_opcode = check_opcode

    def feed(self, data: Buffer) -> None:
        """Take the next received bytes. The caller hands ``data`` over: it must never be
        modified afterwards, since PDUs parsed from it keep views of it."""
        if self._cpos < len(self._chunk):
            # Bytes of the previous chunk not yet parsed: keep them in order, ahead of the new.
            self._acc += memoryview(self._chunk)[self._cpos :]
        self._chunk = data
        self._cpos = 0

    @property
    def buffered(self) -> int:
        return len(self._acc) - self._apos + len(self._chunk) - self._cpos

    def _pull(self, want: int) -> bool:
        """Move bytes from the chunk into the accumulator until it holds ``want`` unread."""
        have = len(self._acc) - self._apos
        if have >= want:
            return True
        take = min(want - have, len(self._chunk) - self._cpos)
        if take:
            self._acc += memoryview(self._chunk)[self._cpos : self._cpos + take]
            self._cpos += take
        return have + take >= want

    def next_pdu(self) -> Pdu | None:
        """Return the next whole PDU, or None when more bytes are needed.

        Raises PduFormatError (drop the connection) or DigestError.
        """
        if self._apos < len(self._acc):
            if not self._pull(BHS_LEN):
                return None
            total = self._frame_length(self._acc, self._apos)
            if not self._pull(total):
                return None
            pos = self._apos
            self._apos = pos + total
            try:
                # The accumulator is reused, so whatever the PDU keeps must be copied out.
                return self._parse(self._acc, pos, copy=True)
            finally:
                if self._apos >= len(self._acc):
                    self._acc.clear()
                    self._apos = 0
        chunk = self._chunk
        pos = self._cpos
        avail = len(chunk) - pos
        if avail < BHS_LEN:
            if avail:
                self._pull(avail)
            return None
        total = self._frame_length(chunk, pos)
        if avail < total:
            self._pull(avail)
            return None
        self._cpos = pos + total
        return self._parse(chunk, pos, copy=False)

    def _frame_length(self, buf: Buffer, pos: int) -> int:
        opcode = buf[pos] & 0x3F
        if self._check_opcode and opcode not in INITIATOR_OPCODES:
            raise PduFormatError(f"unknown initiator opcode 0x{opcode:02x}")
        dsl = (buf[pos + 5] << 16) | (buf[pos + 6] << 8) | buf[pos + 7]
        if dsl > self.max_data_length:
            raise PduFormatError(
                f"DataSegmentLength {dsl} exceeds the negotiated maximum {self.max_data_length}"
            )
        hd = DIGEST_LEN if self.header_digest else 0
        dd = DIGEST_LEN if (self.data_digest and dsl) else 0
        return BHS_LEN + buf[pos + 4] * 4 + hd + dsl + pad_len(dsl) + dd

    def _parse(self, buf: Buffer, pos: int, *, copy: bool) -> Pdu:
        ahs_len = buf[pos + 4] * 4
        dsl = (buf[pos + 5] << 16) | (buf[pos + 6] << 8) | buf[pos + 7]
        hdr_end = pos + BHS_LEN + ahs_len
        view = memoryview(buf)
        try:
            if self.header_digest:
                want = int.from_bytes(view[hdr_end : hdr_end + 4], "little")
                if crc32c(view[pos:hdr_end]) != want:
                    raise DigestError("header digest mismatch")
                dstart = hdr_end + 4
            else:
                dstart = hdr_end
            bhs = bytes(view[pos : pos + BHS_LEN])
            ahs = bytes(view[pos + BHS_LEN : hdr_end]) if ahs_len else b""
            data: Buffer = b""
            if dsl:
                padded_end = dstart + dsl + pad_len(dsl)
                if self.data_digest:
                    want = int.from_bytes(view[padded_end : padded_end + 4], "little")
                    if crc32c(view[dstart:padded_end]) != want:
                        # Framing is intact (the PDU was consumed): the caller may Reject and go on.
                        raise DigestError("data digest mismatch")
                data = bytes(view[dstart : dstart + dsl]) if copy else view[dstart : dstart + dsl]
        finally:
            if copy:
                view.release()
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
        out.extend(encode_data_segment(data, n, data_digest))
    return out


def encode_data_segment(data: Payload, n: int, data_digest: bool) -> list[Payload]:
    """A data segment of ``n`` bytes on the wire: the data, its padding, its digest."""
    out: list[Payload] = [data]
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
