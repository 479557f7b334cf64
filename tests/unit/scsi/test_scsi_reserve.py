from __future__ import annotations

from scsi_helpers import Driver, cdb10, nexus

from iscsigw.scsi.lun import LogicalUnit

RESERVE6 = bytes.fromhex("160000000000")
RELEASE6 = bytes.fromhex("170000000000")
RESERVE10 = bytes.fromhex("56000000000000000000")
RELEASE10 = bytes.fromhex("57000000000000000000")


async def _pair(lu: LogicalUnit) -> tuple[Driver, Driver]:
    a = Driver(lu, nexus("iqn.x:a"))
    b = Driver(lu, nexus("iqn.x:b"))
    await a(bytes(6))
    await b(bytes(6))
    return a, b


async def test_reserve_blocks_other_nexus(lu: LogicalUnit) -> None:
    a, b = await _pair(lu)
    await a.ok(RESERVE6)
    await a.ok(RESERVE6)  # holder may reserve again
    assert (await b(cdb10(0x28, 0, 1))).status == 0x18
    assert (await b(bytes(6))).status == 0x18
    assert (await b(RESERVE6)).status == 0x18
    await b.ok(bytes.fromhex("120000006000"))  # INQUIRY allowed
    await b.ok(bytes.fromhex("030000001200"))  # REQUEST SENSE allowed
    await b.ok(RELEASE6)  # RELEASE by a non-holder: GOOD, no effect
    assert (await b(bytes(6))).status == 0x18
    await a.ok(cdb10(0x28, 0, 1))
    await a.ok(RELEASE6)
    await b.ok(bytes(6))


async def test_reserve10_and_bad_fields(lu: LogicalUnit) -> None:
    a, b = await _pair(lu)
    await a.ok(RESERVE10)
    assert (await b(RESERVE10)).status == 0x18
    await a.ok(RELEASE10)
    s = await a.fail(bytes.fromhex("56100000000000000000"))  # 3RDPTY
    assert (s.asc, s.field, s.bit) == (0x24, 1, 4)
    s = await a.fail(bytes.fromhex("160100000000"))  # extent
    assert (s.asc, s.field) == (0x24, 1)
