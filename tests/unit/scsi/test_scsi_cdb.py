from __future__ import annotations

import pytest
from scsi_helpers import cdb6, cdb10, cdb12, cdb16

from iscsigw.scsi.cdb import (
    block_range,
    cdb_length,
    check_range,
    truncate,
    u24,
)
from iscsigw.scsi.sense import CheckCondition


def test_block_range_all_sizes() -> None:
    assert block_range(cdb6(0x08, 0x1ABCDE, 7)) == (0x1ABCDE, 7)
    assert block_range(cdb10(0x28, 0xDEADBEEF, 0x1234)) == (0xDEADBEEF, 0x1234)
    assert block_range(cdb12(0xA8, 5, 0x10000)) == (5, 0x10000)
    assert block_range(cdb16(0x88, 1 << 40, 9)) == (1 << 40, 9)


def test_six_byte_zero_length_means_256() -> None:
    assert block_range(cdb6(0x0A, 0, 0)).blocks == 256


def test_short_cdb_is_invalid_field() -> None:
    with pytest.raises(CheckCondition) as ei:
        block_range(b"\x28\x00\x00")
    assert ei.value.asc == 0x24


@pytest.mark.parametrize(
    ("lba", "count", "ok"),
    [
        (0, 100, True),
        (99, 1, True),
        (100, 0, True),
        (100, 1, False),
        (101, 0, False),
        (0x80000000, 1, False),
        ((1 << 64) - 1, 1, False),
        ((1 << 64) - 1, 2, False),  # would wrap to 0 in 64-bit arithmetic
    ],
)
def test_check_range(lba: int, count: int, ok: bool) -> None:
    if ok:
        check_range(lba, count, 100)
    else:
        with pytest.raises(CheckCondition) as ei:
            check_range(lba, count, 100)
        assert (ei.value.key, ei.value.asc) == (5, 0x21)


def test_cdb_length_by_group() -> None:
    assert [cdb_length(op) for op in (0x00, 0x28, 0x5A, 0x88, 0xA0)] == [6, 10, 10, 16, 12]


def test_truncate_and_u24() -> None:
    assert truncate(b"abcdef", 3) == b"abc"
    assert truncate(b"ab", 300) == b"ab"
    assert u24(b"\x01\x02\x03", 0) == 0x010203
