"""PduReader on PDUs split across fed chunks: kept as views of the pieces, never accumulated.

Every split of a PDU (at each byte, in 3+ pieces, inside each part of its frame) must parse to
the same PDU as the unsplit bytes. Write data (SCSI Command 0x01, Data-Out 0x05) that spans
pieces comes back as ``Segments`` of memoryviews of the fed chunks themselves (no copy); other
opcodes get joined bytes. Digests are checked across the pieces.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iscsigw._types import Buffer, Segments
from iscsigw.errors import DigestError, PduFormatError
from iscsigw.iscsi import pdu as P
from iscsigw.iscsi.constants import BHS_LEN, Opcode
from iscsigw.iscsi.framing import PduReader, encode_bytes, pad_len
from iscsigw.iscsi.pdu import Pdu

SEGMENTED = (Opcode.SCSI_CMD, Opcode.DATA_OUT)
DIGESTS = [(False, False), (True, False), (False, True), (True, True)]
WRITE10 = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 8, 0])


def pattern(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed * 7 + 3) & 0xFF for i in range(n))


def data_bytes(data: object) -> bytes:
    if isinstance(data, Segments):
        return bytes(data.tobytes())
    assert isinstance(data, bytes | bytearray | memoryview)
    return bytes(data)


# ------------------------------------------------------------------------------ PDU builders


def with_ahs(pdu: Pdu, ahs: bytes) -> Pdu:
    """``pdu`` with an AHS of ``ahs`` (a multiple of 4 bytes), TotalAHSLength set."""
    assert len(ahs) % 4 == 0
    bhs = bytearray(pdu.bhs)
    bhs[4] = len(ahs) // 4
    return Pdu(bhs, pdu.data, ahs)


def nop(data: bytes, itt: int = 7) -> Pdu:
    return P.generic_request(Opcode.NOP_OUT, 0x80, itt=itt, cmdsn=1, immediate=True, data=data)


def text(data: bytes, itt: int = 8) -> Pdu:
    return P.generic_request(Opcode.TEXT_REQ, 0x80, itt=itt, cmdsn=1, data=data)


def command(data: bytes, itt: int = 9, ahs: bytes = b"") -> Pdu:
    p = P.scsi_command(itt, WRITE10, edtl=4096, cmdsn=1, write=True, data=data)
    return with_ahs(p, ahs) if ahs else p


def data_out(data: bytes, itt: int = 10, offset: int = 0) -> Pdu:
    return P.data_out(itt, 0x1234, 0, offset, data, final=True)


# An extended-CDB AHS (type 1): length 0x0009, type, reserved, 8 more CDB bytes + 3 pad.
EXT_CDB_AHS = b"\x00\x09\x01\x00" + bytes(range(0xA0, 0xAC))

KINDS = {
    "nop": lambda: nop(pattern(37, 1)),
    "text": lambda: text(b"SendTargets=All\0x"),  # 17 bytes: 3 of padding
    "command": lambda: command(pattern(41, 2), ahs=EXT_CDB_AHS),
    "data_out": lambda: data_out(pattern(45, 3)),
}


# ------------------------------------------------------------------------------ wire layout


@dataclass(frozen=True)
class Layout:
    """Where each part of one encoded PDU lies in its wire bytes."""

    ahs: int  # start of the AHS
    hd: int  # start of the header digest (== data when there is none)
    data: int
    pad: int
    dd: int  # start of the data digest
    end: int


def layout(pdu: Pdu, hd: bool, dd: bool) -> Layout:
    ahs = BHS_LEN
    hd_at = ahs + len(pdu.ahs)
    data = hd_at + (4 if hd else 0)
    dsl = pdu.data_length
    pad = data + dsl
    dd_at = pad + pad_len(dsl)
    end = dd_at + (4 if dd and dsl else 0)
    return Layout(ahs, hd_at, data, pad, dd_at, end)


def wire_of(pdu: Pdu, hd: bool, dd: bool) -> bytes:
    wire = bytes(encode_bytes(pdu, hd, dd))
    assert len(wire) == layout(pdu, hd, dd).end
    return wire


def cut(wire: bytes, points: Sequence[int]) -> list[bytearray]:
    """``wire`` cut at ``points`` into fresh objects (bytearrays: 1-byte bytes are shared)."""
    bounds = [0, *sorted(set(points)), len(wire)]
    return [bytearray(wire[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


# ------------------------------------------------------------------------------ reading


def reader(hd: bool, dd: bool, max_data_length: int = 1 << 24) -> PduReader:
    r = PduReader(max_data_length=max_data_length)
    r.header_digest, r.data_digest = hd, dd
    return r


def read_all(r: PduReader, chunks: Sequence[Buffer]) -> list[Pdu]:
    """Feed ``chunks`` one by one, taking every whole PDU after each; ``buffered`` is checked
    after every step against the bytes fed minus the frames returned."""
    out: list[Pdu] = []
    fed = consumed = 0
    for chunk in chunks:
        r.feed(chunk)
        fed += len(chunk)
        assert r.buffered == fed - consumed
        while (p := r.next_pdu()) is not None:
            out.append(p)
            consumed += frame_len(p, r.header_digest, r.data_digest)
            assert r.buffered == fed - consumed
        assert r.buffered == fed - consumed
    return out


def frame_len(p: Pdu, hd: bool, dd: bool) -> int:
    return layout(p, hd, dd).end


def reference(wire: bytes, hd: bool, dd: bool) -> list[Pdu]:
    return read_all(reader(hd, dd), [wire])


def same(a: Pdu, b: Pdu) -> bool:
    return (
        bytes(a.bhs) == bytes(b.bhs)
        and bytes(a.ahs) == bytes(b.ahs)
        and data_bytes(a.data) == data_bytes(b.data)
    )


def overlaps(chunks: Sequence[bytearray], start: int, end: int) -> list[tuple[bytearray, int]]:
    """The chunks overlapping stream bytes [start, end), with how many of those bytes each has."""
    out = []
    pos = 0
    for c in chunks:
        lo, hi = max(pos, start), min(pos + len(c), end)
        if hi > lo:
            out.append((c, hi - lo))
        pos += len(c)
    return out


def check_data_form(p: Pdu, chunks: Sequence[bytearray], start: int) -> None:
    """The data segment at stream offset ``start`` is a view of the chunk it lies in, Segments
    of views of the very chunks it spans (write data), or joined bytes (anything else)."""
    n = p.data_length
    if not n:
        return
    spans = overlaps(chunks, start, start + n)
    if len(spans) == 1:
        assert isinstance(p.data, memoryview)
        assert p.data.obj is spans[0][0]
    elif p.opcode in SEGMENTED:
        assert isinstance(p.data, Segments), type(p.data)
        assert p.data.nbytes == len(p.data) == n
        assert all(isinstance(v, memoryview) for v in p.data.parts)
        assert [v.obj for v in p.data.parts] == [c for c, _ in spans]  # equality first
        assert all(v.obj is c for v, (c, _) in zip(p.data.parts, spans, strict=True))
        assert [v.nbytes for v in p.data.parts] == [k for _, k in spans]
    else:
        assert type(p.data) is bytes


def check_split(pdus: Sequence[Pdu], hd: bool, dd: bool, points: Sequence[int]) -> None:
    """The stream of ``pdus`` cut at ``points`` parses exactly like the unsplit stream."""
    wire = b"".join(wire_of(p, hd, dd) for p in pdus)
    want = reference(wire, hd, dd)
    assert len(want) == len(pdus)
    chunks = cut(wire, points)
    got = read_all(reader(hd, dd), chunks)
    assert len(got) == len(want), points
    pos = 0
    for g, w in zip(got, want, strict=True):
        assert same(g, w), points
        check_data_form(g, chunks, pos + layout(g, hd, dd).data)
        pos += frame_len(g, hd, dd)


# ------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("hd,dd", DIGESTS)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_two_pieces_at_every_byte(kind: str, hd: bool, dd: bool) -> None:
    pdu = KINDS[kind]()
    n = len(wire_of(pdu, hd, dd))
    for i in range(1, n):
        check_split([pdu], hd, dd, [i])


@pytest.mark.parametrize("hd,dd", DIGESTS)
def test_three_pieces_at_every_pair_of_bytes(hd: bool, dd: bool) -> None:
    # The richest frame: AHS, both digests (when on), padding; plus a whole PDU behind it.
    pdu = command(pattern(13, 4), ahs=EXT_CDB_AHS)
    tail = nop(b"tail")
    n = len(wire_of(pdu, hd, dd))
    for i, j in itertools.combinations(range(1, n + 1), 2):
        check_split([pdu, tail], hd, dd, [i, j])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_split_inside_every_part_of_the_frame(kind: str) -> None:
    """One PDU in 7+ pieces: cut inside the BHS, AHS, header digest, data, padding, digest."""
    pdu = KINDS[kind]()
    lay = layout(pdu, True, True)
    points = [20, 40]  # two cuts in the BHS
    if lay.hd > lay.ahs:
        points.append(lay.ahs + 5)  # inside the AHS
    points.append(lay.hd + 2)  # inside the header digest
    points += [lay.data + 1, lay.data + 10]  # inside the data
    if lay.dd > lay.pad + 1:
        points.append(lay.pad + 1)  # inside the padding
    points.append(lay.dd + 3)  # inside the data digest
    check_split([pdu], True, True, points)
    # The same cuts, each byte of every region on its own.
    check_split([pdu], True, True, list(range(1, lay.end)))


def test_write_data_spanning_pieces_is_segments_of_the_fed_chunks() -> None:
    payload = pattern(3000, 5)
    wire = wire_of(data_out(payload), False, False)
    chunks = cut(wire, [100, 1000, 1001, 2500])
    (p,) = read_all(reader(False, False), chunks)
    assert isinstance(p.data, Segments)
    assert len(p.data.parts) == 5
    assert p.data.parts[0].obj is chunks[0]
    assert [v.obj for v in p.data.parts] == chunks
    assert [bytes(v) for v in p.data.parts] == [bytes(c) for c in [chunks[0][48:], *chunks[1:]]]
    assert p.data.tobytes() == bytes(p.data) == payload
    # No copy: the views see the chunks themselves.
    chunks[2][0] ^= 0xFF
    assert p.data.tobytes() != payload


@pytest.mark.parametrize("opcode", [Opcode.NOP_OUT, Opcode.TEXT_REQ, Opcode.LOGIN_REQ])
def test_other_data_spanning_pieces_is_joined(opcode: Opcode) -> None:
    payload = pattern(301, 6)
    if opcode == Opcode.LOGIN_REQ:
        pdu = P.login_request(isid=1, csg=1, nsg=3, transit=True, data=payload)
    else:
        pdu = P.generic_request(opcode, 0x80, itt=1, cmdsn=1, data=payload)
    chunks = cut(wire_of(pdu, False, False), [60, 200])
    (p,) = read_all(reader(False, False), chunks)
    assert type(p.data) is bytes and p.data == payload


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_data_in_one_piece_after_a_split_header_is_one_view(kind: str) -> None:
    pdu = KINDS[kind]()
    lay = layout(pdu, True, True)
    chunks = cut(wire_of(pdu, True, True), [17, lay.data])  # header split, data whole
    (p,) = read_all(reader(True, True), chunks)
    assert isinstance(p.data, memoryview) and p.data.obj is chunks[-1]
    assert same(p, reference(wire_of(pdu, True, True), True, True)[0])


@pytest.mark.parametrize("hd,dd", DIGESTS)
def test_several_pdus_in_the_chunk_that_ends_a_split_one(hd: bool, dd: bool) -> None:
    first = data_out(pattern(50, 7), itt=1)
    rest = [nop(b"a", itt=2), command(pattern(9, 8), itt=3), data_out(pattern(64, 9), itt=4)]
    w0 = wire_of(first, hd, dd)
    tail = b"".join(wire_of(p, hd, dd) for p in rest)
    chunks = [bytearray(w0[:60]), bytearray(w0[60:] + tail)]  # cut in its data
    r = reader(hd, dd)
    r.feed(chunks[0])
    assert r.next_pdu() is None and r.buffered == 60
    r.feed(chunks[1])
    got = []
    while (p := r.next_pdu()) is not None:
        got.append(p)
        assert r.buffered == len(w0) + len(tail) - sum(frame_len(g, hd, dd) for g in got)
    assert [p.itt for p in got] == [1, 2, 3, 4]
    assert all(same(g, w) for g, w in zip(got, [first, *rest], strict=True))
    assert isinstance(got[0].data, Segments)
    for p in got[1:]:  # whole inside the second chunk: parsed in place
        assert isinstance(p.data, memoryview) and p.data.obj is chunks[1]
    assert r.buffered == 0


def test_pieces_fed_without_parsing_in_between() -> None:
    """Several feeds before next_pdu: whole PDUs pile up in the pieces and still come out."""
    pdus = [data_out(pattern(20 + i, i), itt=i) for i in range(5)]
    wire = b"".join(wire_of(p, True, True) for p in pdus)
    chunks = cut(wire, [7, 150, 151, 300])
    r = reader(True, True)
    for c in chunks:
        r.feed(c)
    assert r.buffered == len(wire)
    got = []
    while (p := r.next_pdu()) is not None:
        got.append(p)
    assert [p.itt for p in got] == list(range(5))
    assert all(same(g, w) for g, w in zip(got, pdus, strict=True))
    assert r.buffered == 0


# ------------------------------------------------------------------------------ digests


def corrupted(wire: bytes, at: int) -> bytes:
    b = bytearray(wire)
    b[at] ^= 0x10
    return bytes(b)


@pytest.mark.parametrize("region", ["bhs", "ahs", "hd"])
def test_header_digest_mismatch_across_pieces(region: str) -> None:
    pdu = command(pattern(10), ahs=EXT_CDB_AHS)
    lay = layout(pdu, True, False)
    at = {"bhs": 30, "ahs": lay.ahs + 2, "hd": lay.hd + 1}[region]
    wire = corrupted(wire_of(pdu, True, False), at)
    for point in range(1, len(wire)):
        r = reader(True, False)
        r.feed(bytearray(wire[:point]))
        assert r.next_pdu() is None  # checked once the PDU is whole
        r.feed(bytearray(wire[point:]))
        with pytest.raises(DigestError, match="header"):
            r.next_pdu()


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("region", ["data", "pad", "dd"])
def test_data_digest_mismatch_across_pieces_skips_the_pdu(kind: str, region: str) -> None:
    pdu = KINDS[kind]()
    lay = layout(pdu, True, True)
    if region == "pad" and lay.dd == lay.pad:
        pytest.skip("no padding")
    at = {"data": lay.data + 3, "pad": lay.dd - 1, "dd": lay.dd + 2}[region]
    wire = corrupted(wire_of(pdu, True, True), at)
    after = wire_of(nop(b"next", itt=99), True, True)
    for points in [[lay.data + 1], [lay.pad], [lay.dd + 1], [lay.data + 2, at, lay.dd + 3]]:
        for i in range(1, len(wire) + 1):  # and a cut at every byte before those
            chunks = cut(wire + after, [i, *points])
            r = reader(True, True)
            seen: list[object] = []
            for c in chunks:
                r.feed(c)
                while True:
                    try:
                        p = r.next_pdu()
                    except DigestError as exc:
                        seen.append(exc)
                        continue
                    if p is None:
                        break
                    seen.append(p)
            # The broken PDU was consumed whole: the next one follows it.
            assert len(seen) == 2, (i, points, seen)
            assert isinstance(seen[0], DigestError) and "data digest" in str(seen[0])
            nxt = seen[1]
            assert isinstance(nxt, Pdu) and nxt.itt == 99 and bytes(nxt.data) == b"next"
            assert r.buffered == 0


def test_good_data_digest_over_many_pieces() -> None:
    pdu = data_out(pattern(1001, 11))
    wire = wire_of(pdu, False, True)
    (p,) = read_all(reader(False, True), cut(wire, range(1, len(wire), 97)))
    assert isinstance(p.data, Segments) and p.data.tobytes() == pattern(1001, 11)


# ------------------------------------------------------------------------------ format errors


@pytest.mark.parametrize("hd", [False, True])
def test_huge_data_segment_length_in_a_split_header(hd: bool) -> None:
    bhs = bytearray(data_out(b"").bhs)
    bhs[5:8] = b"\x01\x00\x01"  # 65537 > 65536
    wire = bytes(bhs) + bytes(64)
    for point in range(1, len(wire)):
        r = reader(hd, False, max_data_length=65536)
        r.feed(bytearray(wire[:point]))
        if point < BHS_LEN:
            assert r.next_pdu() is None
            r.feed(bytearray(wire[point:]))
        with pytest.raises(PduFormatError, match="65537"):
            r.next_pdu()


def test_huge_data_segment_length_header_in_many_pieces() -> None:
    bhs = bytearray(command(b"").bhs)
    bhs[5:8] = b"\xff\xff\xff"
    r = reader(False, False, max_data_length=8192)
    for i in range(BHS_LEN - 1):
        r.feed(bytearray(bhs[i : i + 1]))
        assert r.next_pdu() is None
        assert r.buffered == i + 1
    r.feed(bytearray(bhs[-1:]))
    with pytest.raises(PduFormatError):
        r.next_pdu()


def test_unknown_opcode_in_a_split_header() -> None:
    wire = bytes([0x3E]) + bytes(47)
    r = reader(False, False)
    r.feed(bytearray(wire[:10]))
    assert r.next_pdu() is None
    r.feed(bytearray(wire[10:]))
    with pytest.raises(PduFormatError, match="opcode"):
        r.next_pdu()


# ------------------------------------------------------------------------------ property


def _pdu_strategy() -> st.SearchStrategy[Pdu]:
    payload = st.integers(0, 70).flatmap(lambda n: st.binary(min_size=n, max_size=n))
    itt = st.integers(0, 0xFFFF)
    return st.one_of(
        st.builds(lambda d, i: nop(d, i), payload, itt),
        st.builds(lambda d, i: text(d, i), payload, itt),
        st.builds(
            lambda d, i, a: command(d, i, ahs=EXT_CDB_AHS if a else b""),
            payload,
            itt,
            st.booleans(),
        ),
        st.builds(lambda d, i: data_out(d, i), payload, itt),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pdus=st.lists(_pdu_strategy(), min_size=1, max_size=5),
    hd=st.booleans(),
    dd=st.booleans(),
    data=st.data(),
)
def test_any_split_of_a_stream_parses_like_the_whole(
    pdus: list[Pdu], hd: bool, dd: bool, data: st.DataObject
) -> None:
    total = sum(len(wire_of(p, hd, dd)) for p in pdus)
    points = data.draw(st.lists(st.integers(1, total - 1), max_size=12), label="cuts")
    check_split(pdus, hd, dd, points)


def test_empty_feeds_between_pieces_change_nothing() -> None:
    pdus = [data_out(pattern(77, 12), itt=1), nop(b"xyz", itt=2)]
    wire = b"".join(wire_of(p, True, True) for p in pdus)
    chunks = cut(wire, [5, 60, 61, 140])
    r = reader(True, True)
    got: list[Pdu] = []
    for c in chunks:
        for piece in (bytearray(), c, b""):
            r.feed(piece)
            while (p := r.next_pdu()) is not None:
                got.append(p)
    assert [p.itt for p in got] == [1, 2] and r.buffered == 0
    assert all(same(g, w) for g, w in zip(got, pdus, strict=True))


def test_memoryview_chunks_of_receive_buffers_are_not_copied() -> None:
    """What the transport feeds: views of (the start of) big receive buffers."""
    payload = pattern(5000, 13)
    wire = wire_of(data_out(payload), False, False)
    buffers = [bytearray(1 << 16) for _ in range(3)]
    feeds = []
    for buf, (a, b) in zip(buffers, [(0, 1000), (1000, 3000), (3000, len(wire))], strict=True):
        buf[: b - a] = wire[a:b]
        feeds.append(memoryview(buf)[: b - a])
    (p,) = read_all(reader(False, False), feeds)
    assert isinstance(p.data, Segments) and p.data.tobytes() == payload
    assert all(v.obj is buf for v, buf in zip(p.data.parts, buffers, strict=True))
