from iscsigw.iscsi.serial import sn_add, sn_in_window, sn_le, sn_lt


def test_wraps_at_32_bits() -> None:
    assert sn_add(0xFFFFFFFF, 1) == 0
    assert sn_lt(0xFFFFFFFF, 0)
    assert not sn_lt(0, 0xFFFFFFFF)


def test_order_and_window() -> None:
    assert sn_lt(5, 6) and not sn_lt(6, 5) and not sn_lt(5, 5)
    assert sn_le(5, 5)
    assert sn_in_window(0, 0xFFFFFFF0, 0x10)
    assert not sn_in_window(0x11, 0xFFFFFFF0, 0x10)
    assert not sn_in_window(0xFFFFFFEF, 0xFFFFFFF0, 0x10)


def test_half_range_is_not_less() -> None:
    assert not sn_lt(0, 1 << 31)
    assert not sn_lt(1 << 31, 0)
