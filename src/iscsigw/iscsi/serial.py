"""RFC 1982 serial number arithmetic on 32 bits, for CmdSN/StatSN/DataSN windows."""

from __future__ import annotations

_MOD = 1 << 32
_HALF = 1 << 31


def sn_add(a: int, n: int) -> int:
    return (a + n) & 0xFFFFFFFF


def sn_lt(a: int, b: int) -> bool:
    """a < b in serial arithmetic (undefined when they are exactly 2**31 apart: False)."""
    return a != b and ((b - a) % _MOD) < _HALF


def sn_le(a: int, b: int) -> bool:
    return a == b or sn_lt(a, b)


def sn_in_window(sn: int, low: int, high: int) -> bool:
    """low <= sn <= high in serial arithmetic."""
    return sn_le(low, sn) and sn_le(sn, high)
