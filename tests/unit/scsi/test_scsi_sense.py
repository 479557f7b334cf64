from __future__ import annotations

from iscsigw.errors import IscsiGwError
from iscsigw.scsi.sense import (
    LBA_OUT_OF_RANGE,
    MISCOMPARE_DURING_VERIFY,
    CheckCondition,
    encode,
    encode_descriptor,
    encode_fixed,
    invalid_field,
    invalid_param,
)


def test_fixed_format_basic_layout() -> None:
    s = encode_fixed(0x5, 0x21, 0x00)
    assert len(s) == 18
    assert s[0] == 0x70
    assert s[2] == 0x05
    assert s[3:7] == bytes(4)
    assert s[7] == 10
    assert s[12:14] == b"\x21\x00"
    assert s[15:18] == bytes(3)


def test_fixed_format_information_sets_valid() -> None:
    s = encode_fixed(0xE, 0x1D, 0x00, info=0x01020304)
    assert s[0] == 0xF0
    assert s[3:7] == b"\x01\x02\x03\x04"


def test_fixed_format_information_too_large_is_not_valid() -> None:
    s = encode_fixed(0xE, 0x1D, 0x00, info=1 << 40)
    assert s[0] == 0x70
    assert s[3:7] == bytes(4)


def test_field_pointer_with_bit() -> None:
    s = invalid_field(1, 7).encode()
    assert s[12:14] == b"\x24\x00"
    assert s[15] == 0x80 | 0x40 | 0x08 | 7
    assert s[16:18] == b"\x00\x01"


def test_field_pointer_without_bit() -> None:
    s = invalid_field(0x0123).encode()
    assert s[15] == 0xC0
    assert s[16:18] == b"\x01\x23"


def test_parameter_list_field_pointer_has_cd_clear() -> None:
    s = invalid_param(9, 2).encode()
    assert s[12] == 0x26
    assert s[15] == 0x80 | 0x08 | 2
    assert s[16:18] == b"\x00\x09"


def test_descriptor_format_with_information_and_sks() -> None:
    exc = CheckCondition(0x5, 0x24, 0x00, info=0x11, field=(3, None, True))
    s = exc.encode(descriptor=True)
    assert s[:4] == b"\x72\x05\x24\x00"
    assert s[7] == len(s) - 8 == 12 + 8
    assert s[8:12] == b"\x00\x0a\x80\x00"
    assert s[12:20] == (0x11).to_bytes(8, "big")
    assert s[20:24] == b"\x02\x06\x00\x00"
    assert s[24:27] == b"\xc0\x00\x03"


def test_descriptor_format_without_descriptors() -> None:
    s = encode_descriptor(0x6, 0x29, 0x00)
    assert s == b"\x72\x06\x29\x00\x00\x00\x00\x00"


def test_check_condition_of_and_code() -> None:
    exc = CheckCondition.of(MISCOMPARE_DURING_VERIFY, info=27)
    assert isinstance(exc, IscsiGwError)
    assert exc.code == MISCOMPARE_DURING_VERIFY
    assert exc.status == 0x02
    assert exc.encode()[3:7] == (27).to_bytes(4, "big")


def test_encode_helper_selects_format() -> None:
    assert encode(LBA_OUT_OF_RANGE)[0] == 0x70
    assert encode(LBA_OUT_OF_RANGE, descriptor=True)[0] == 0x72
