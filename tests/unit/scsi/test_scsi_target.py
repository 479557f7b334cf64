from __future__ import annotations

import struct

import pytest
from scsi_helpers import cdb10, make_lu, nexus, parse_sense

from iscsigw.scsi.target import LunMap, decode_lun, encode_lun
from iscsigw.scsi.task import ScsiCommand


def report_luns(alloc: int = 4096, select: int = 0) -> bytes:
    return struct.pack(">BBBBBBIBB", 0xA0, 0, select, 0, 0, 0, alloc, 0, 0)


def cmd(cdb: bytes) -> ScsiCommand:
    return ScsiCommand(cdb=cdb, nexus=nexus())


@pytest.mark.parametrize(
    ("lun", "wire"),
    [(0, "0000"), (1, "0001"), (255, "00ff"), (256, "4100"), (300, "412c"), (16383, "7fff")],
)
def test_lun_encoding(lun: int, wire: str) -> None:
    field = encode_lun(lun)
    assert field == bytes.fromhex(wire) + bytes(6)
    assert decode_lun(field) == lun


def test_lun_encoding_errors() -> None:
    with pytest.raises(ValueError):
        encode_lun(16384)
    with pytest.raises(ValueError):
        encode_lun(-1)
    with pytest.raises(ValueError):
        decode_lun(bytes.fromhex("8001") + bytes(6))  # logical unit addressing
    with pytest.raises(ValueError):
        decode_lun(bytes.fromhex("0101") + bytes(6))  # bus id


async def test_report_luns_lists_map_from_any_lun() -> None:
    lu = make_lu()
    luns = LunMap({0: lu, 3: lu, 300: lu})
    for target_lun in (0, 3, 77):
        res = await luns.execute(target_lun, cmd(report_luns()))
        d = bytes(res.data)
        assert res.status == 0
        assert struct.unpack(">I", d[:4])[0] == 24
        assert d[8:] == encode_lun(0) + encode_lun(3) + encode_lun(300)
    res = await luns.execute(0, cmd(report_luns(alloc=12)))
    assert len(res.data) == 12
    res = await luns.execute(0, cmd(report_luns(select=1)))
    assert bytes(res.data) == bytes(8)
    res = await luns.execute(0, cmd(report_luns(select=7)))
    assert res.status == 2 and parse_sense(res.sense).asc == 0x24


async def test_empty_map_reports_lun0() -> None:
    res = await LunMap().execute(0, cmd(report_luns()))
    assert bytes(res.data) == b"\x00\x00\x00\x08" + bytes(12)


async def test_unmapped_lun() -> None:
    luns = LunMap({0: make_lu()})
    res = await luns.execute(5, cmd(bytes.fromhex("120000006000")))
    d = bytes(res.data)
    assert res.status == 0 and d[0] == 0x7F and d[4] == len(d) - 5
    res = await luns.execute(5, cmd(bytes.fromhex("120000000400")))
    assert len(res.data) == 4
    res = await luns.execute(5, cmd(bytes.fromhex("030000001200")))
    assert res.status == 0
    assert bytes(res.data)[2] == 5 and bytes(res.data)[12] == 0x25
    for cdb in (bytes(6), cdb10(0x28, 0, 1), bytes.fromhex("120100000400")):
        res = await luns.execute(5, cmd(cdb))
        s = parse_sense(res.sense)
        assert (res.status, s.key, s.asc, s.ascq) == (2, 5, 0x25, 0)


async def test_mapped_lun_is_dispatched_and_map_changes_queue_ua() -> None:
    lu = make_lu()
    luns = LunMap({0: lu})
    res = await luns.execute(0, cmd(bytes(6)))
    assert parse_sense(res.sense).asc == 0x29
    assert (await luns.execute(0, cmd(bytes(6)))).status == 0
    luns.add(1, make_lu())
    res = await luns.execute(0, cmd(bytes(6)))
    s = parse_sense(res.sense)
    assert (s.key, s.asc, s.ascq) == (6, 0x3F, 0x0E)
    assert 1 in luns and list(luns) == [0, 1] and len(luns) == 2
    assert luns.remove(1) is not None
    assert luns.get(1) is None
    with pytest.raises(ValueError):
        luns.add(20000, lu)
