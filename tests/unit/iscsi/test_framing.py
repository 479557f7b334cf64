import pytest

from iscsigw.errors import DigestError, PduFormatError
from iscsigw.iscsi import pdu as P
from iscsigw.iscsi.constants import Opcode
from iscsigw.iscsi.digest import crc32c, digest_of
from iscsigw.iscsi.framing import PduReader, encode, encode_bytes


def test_crc32c_rfc3720_vectors() -> None:
    assert digest_of([bytes(32)]) == bytes.fromhex("aa36918a")
    assert digest_of([bytes(range(32))]) == bytes.fromhex("4e79dd46")
    assert crc32c(bytes(32)) == 0x8A9136AA


def _nop(data: bytes = b"") -> P.Pdu:
    return P.generic_request(Opcode.NOP_OUT, 0x80, itt=7, cmdsn=1, immediate=True, data=data)


@pytest.mark.parametrize("hd,dd", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("payload", [b"", b"a", b"abcd", b"hello world"])
def test_round_trip_byte_by_byte(hd: bool, dd: bool, payload: bytes) -> None:
    wire = encode_bytes(_nop(payload), hd, dd)
    assert len(wire) % 4 == 0
    r = PduReader()
    r.header_digest, r.data_digest = hd, dd
    got = None
    for i in range(len(wire)):
        assert got is None
        r.feed(wire[i : i + 1])
        got = r.next_pdu()
    assert got is not None
    assert got.opcode == Opcode.NOP_OUT and got.immediate and got.itt == 7
    assert bytes(got.data) == payload
    assert r.next_pdu() is None


def test_two_pdus_in_one_chunk() -> None:
    r = PduReader()
    r.feed(encode_bytes(_nop(b"xy")) + encode_bytes(_nop(b"z")))
    a, b = r.next_pdu(), r.next_pdu()
    assert a is not None and b is not None
    assert (bytes(a.data), bytes(b.data)) == (b"xy", b"z")


def test_huge_data_segment_is_format_error() -> None:
    r = PduReader(max_data_length=8192)
    bhs = bytearray(encode_bytes(_nop()))
    bhs[5:8] = b"\xff\xff\xff"
    r.feed(bytes(bhs))
    with pytest.raises(PduFormatError):
        r.next_pdu()


def test_unknown_opcode_is_format_error() -> None:
    r = PduReader()
    r.feed(bytes([0x3E]) + bytes(47))
    with pytest.raises(PduFormatError):
        r.next_pdu()


def test_header_digest_mismatch() -> None:
    wire = bytearray(encode_bytes(_nop(), True, False))
    wire[48] ^= 1
    r = PduReader()
    r.header_digest = True
    r.feed(bytes(wire))
    with pytest.raises(DigestError):
        r.next_pdu()


def test_data_digest_mismatch_skips_pdu() -> None:
    wire = bytearray(encode_bytes(_nop(b"abcd"), False, True))
    wire[-1] ^= 1
    r = PduReader()
    r.data_digest = True
    r.feed(bytes(wire) + encode_bytes(_nop(b"ok"), False, True))
    with pytest.raises(DigestError):
        r.next_pdu()
    nxt = r.next_pdu()
    assert nxt is not None and bytes(nxt.data) == b"ok"


def test_ahs_is_skipped() -> None:
    p = _nop(b"dd")
    bhs = bytearray(p.bhs)
    bhs[4] = 2  # 8 bytes of AHS
    wire = bytes(bhs) + b"\x00\x05\x01\x00ABCD" + b"dd\0\0"
    r = PduReader()
    r.feed(wire)
    got = r.next_pdu()
    assert got is not None and got.ahs == b"\x00\x05\x01\x00ABCD" and bytes(got.data) == b"dd"


def test_encode_does_not_copy_data() -> None:
    data = bytearray(b"12345678")
    parts = encode(P.nop_in(1, 0xFFFFFFFF, data=data))
    assert any(part is data for part in parts)


def test_data_in_fields() -> None:
    p = P.data_in(
        0x11, bytes(8), b"x" * 8, 8, 3, 4096, final=True, status=0, rsp_flags=0x02, residual=5
    )
    assert p.opcode == Opcode.DATA_IN
    assert p.flags == 0x80 | 0x01 | 0x02
    assert p.itt == 0x11 and p.u32(36) == 3 and p.u32(40) == 4096 and p.u32(44) == 5
    assert p.data_length == 8
