"""Incremental PDU framing: feed bytes, take whole PDUs; plus the encoder to wire buffers.

The reader is a small state machine over one receive buffer. It never trusts a length field
beyond ``max_data_length`` (a huge DataSegmentLength is a format error, not an allocation).
"""

from __future__ import annotations

from .._types import Buffer, FileSlice, Payload, Received, Segments, contiguous
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

    Nothing is copied that need not be: a PDU that lies whole inside one received chunk is
    parsed in place and its data segment is a memoryview of that (immutable) chunk. A PDU
    split across chunks is kept as views of its pieces (``_pieces``) until it is whole; then
    only its header is joined, and its data segment stays in pieces (``Segments``) for SCSI
    Command and Data-Out PDUs (write data goes to pwritev as is), or is joined for the rest.
    """

    def __init__(self, max_data_length: int = 1 << 24, check_opcode: bool = True) -> None:
        self._chunk: Buffer = b""
        self._cpos = 0
        self._pieces: list[memoryview] = []  # the start of a PDU not yet whole, in order
        self._have = 0  # bytes in _pieces
        self._need = 0  # total length of that PDU, once its BHS is in (else 0)
        self.max_data_length = max_data_length
        self.header_digest = False
        self.data_digest = False
        self._check_opcode = check_opcode

    def feed(self, data: Buffer) -> None:
        """Take the next received bytes. The caller hands ``data`` over: it must never be
        modified afterwards, since PDUs parsed from it keep views of it."""
        if self._cpos < len(self._chunk):
            # Bytes of the previous chunk not yet parsed: keep them in order, ahead of the new.
            rest = memoryview(self._chunk)[self._cpos :]
            self._pieces.append(rest)
            self._have += rest.nbytes
        self._chunk = data
        self._cpos = 0

    @property
    def buffered(self) -> int:
        return self._have + len(self._chunk) - self._cpos

    def _pull(self, want: int) -> bool:
        """Move views of the chunk into ``_pieces`` until they hold ``want`` bytes."""
        missing = want - self._have
        if missing <= 0:
            return True
        cpos = self._cpos
        take = min(missing, len(self._chunk) - cpos)
        if take:
            self._pieces.append(memoryview(self._chunk)[cpos : cpos + take])
            self._cpos = cpos + take
            self._have += take
        return take >= missing

    def next_pdu(self) -> Pdu | None:
        """Return the next whole PDU, or None when more bytes are needed.

        Raises PduFormatError (drop the connection) or DigestError.
        """
        if self._have:
            return self._next_from_pieces()
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
            self._need = total
            return None
        self._cpos = pos + total
        return self._parse(chunk, pos)

    def _next_from_pieces(self) -> Pdu | None:
        need = self._need
        if not need:
            if not self._pull(BHS_LEN):
                return None
            head = self._take_bytes(0, BHS_LEN)
            need = self._need = self._frame_length(head, 0)
        if not self._pull(need):
            return None
        # The PDU is whole: it is the first ``need`` bytes of the pieces.
        pieces = self._pieces
        views: list[memoryview] = []
        got = 0
        while got < need:
            piece = pieces[0]
            size = piece.nbytes
            if got + size <= need:
                views.append(piece)
                pieces.pop(0)
                got += size
            else:
                cut = need - got
                views.append(piece[:cut])
                pieces[0] = piece[cut:]
                got = need
        self._have -= need
        self._need = 0
        return self._parse_pieces(views)

    def _take_bytes(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the pieces (a small copy: headers, digests)."""
        return b"".join(_span(self._pieces, start, end))

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

    def _parse(self, buf: Buffer, pos: int) -> Pdu:
        ahs_len = buf[pos + 4] * 4
        dsl = (buf[pos + 5] << 16) | (buf[pos + 6] << 8) | buf[pos + 7]
        hdr_end = pos + BHS_LEN + ahs_len
        view = memoryview(buf)
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
            data = view[dstart : dstart + dsl]
        return Pdu(bhs, data, ahs)

    def _parse_pieces(self, views: list[memoryview]) -> Pdu:
        head = b"".join(_span(views, 0, BHS_LEN))
        ahs_len = head[4] * 4
        dsl = (head[5] << 16) | (head[6] << 8) | head[7]
        hdr_end = BHS_LEN + ahs_len
        if self.header_digest:
            header = b"".join(_span(views, 0, hdr_end + 4))
            if crc32c(header[:hdr_end]) != int.from_bytes(header[hdr_end:], "little"):
                raise DigestError("header digest mismatch")
            dstart = hdr_end + 4
        else:
            header = b"".join(_span(views, 0, hdr_end)) if ahs_len else head
            dstart = hdr_end
        data: Received = b""
        if dsl:
            padded_end = dstart + dsl + pad_len(dsl)
            if self.data_digest:
                value = 0
                for part in _span(views, dstart, padded_end):
                    value = crc32c(part, value)
                want = int.from_bytes(b"".join(_span(views, padded_end, padded_end + 4)), "little")
                if value != want:
                    raise DigestError("data digest mismatch")
            parts: list[Buffer] = list(_span(views, dstart, dstart + dsl))
            if len(parts) == 1:
                data = parts[0]
            elif head[0] & 0x3F in _SEGMENTED_OPCODES:
                data = Segments(parts)
            else:
                data = b"".join(parts)
        return Pdu(head, data, header[BHS_LEN:hdr_end] if ahs_len else b"")


# Opcodes whose data segment may stay in pieces: the write data of SCSI Command and Data-Out.
_SEGMENTED_OPCODES = frozenset((0x01, 0x05))


def _span(views: list[memoryview], start: int, end: int) -> list[memoryview]:
    """Views of bytes [start, end) of the concatenation of ``views``."""
    out: list[memoryview] = []
    pos = 0
    for v in views:
        size = v.nbytes
        if pos + size > start and pos < end:
            out.append(v[max(0, start - pos) : min(size, end - pos)])
        pos += size
        if pos >= end:
            break
    return out


def encode(pdu: Pdu, header_digest: bool = False, data_digest: bool = False) -> list[Payload]:
    """The PDU as a list of buffers for ``writelines`` (no copy of the data segment)."""
    hdr: Buffer = pdu.bhs if not pdu.ahs else bytes(pdu.bhs) + pdu.ahs
    out: list[Payload] = [hdr]
    if header_digest:
        out.append(crc32c(hdr).to_bytes(4, "little"))
    data: Payload = pdu.file_data if pdu.file_data is not None else contiguous(pdu.data)
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
