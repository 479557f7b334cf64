from __future__ import annotations

import asyncio

import pytest
from scsi_helpers import BLOCK, BLOCKS, UUID, Driver, cdb10, cdb16, make_lu, nexus, parse_sense

from iscsigw._types import Buffer
from iscsigw.backends.memory import MemoryBackend
from iscsigw.errors import BackendError, BackendFenced, BackendNoSpace, BackendNotFound
from iscsigw.scsi.alua import AluaState, PortGroup, PortGroups
from iscsigw.scsi.identity import LuIdentity
from iscsigw.scsi.lun import LogicalUnit
from iscsigw.scsi.task import ScsiCommand

TUR = bytes(6)
INQUIRY = bytes.fromhex("120000006000")
REPORT_LUNS = bytes.fromhex("a0000000000000000100 0000".replace(" ", ""))
REQUEST_SENSE = bytes.fromhex("030000001200")


async def test_first_command_of_a_nexus_gets_power_on_ua(lu: LogicalUnit) -> None:
    drv = Driver(lu, nexus())
    s = await drv.fail(TUR)
    assert (s.key, s.asc, s.ascq) == (6, 0x29, 0x00)
    await drv.ok(TUR)
    # another nexus has its own queue
    s = await drv.fail(cdb10(0x28, 0, 1), nexus=nexus(isid=2))
    assert (s.key, s.asc) == (6, 0x29)


async def test_inquiry_and_report_luns_do_not_consume_ua(lu: LogicalUnit) -> None:
    drv = Driver(lu, nexus())
    await drv.ok(INQUIRY)
    await drv.ok(REPORT_LUNS)
    s = await drv.fail(TUR)
    assert s.asc == 0x29


async def test_request_sense_returns_and_clears_ua(lu: LogicalUnit) -> None:
    drv = Driver(lu, nexus())
    d = await drv.ok(REQUEST_SENSE)
    assert d[0] == 0x70 and d[2] == 6 and d[12:14] == b"\x29\x00"
    await drv.ok(TUR)
    d = await drv.ok(REQUEST_SENSE)
    assert d[2] == 0 and d[12] == 0


async def test_unknown_opcode_after_ua(scsi: Driver) -> None:
    s = await scsi.fail(bytes.fromhex("ff0000000000"))
    assert (s.key, s.asc, s.ascq) == (5, 0x20, 0)
    s = await scsi.fail(bytes.fromhex("3c000000000000000000"))  # READ BUFFER: not implemented
    assert s.asc == 0x20


async def test_unknown_service_action_points_at_byte1(scsi: Driver) -> None:
    s = await scsi.fail(bytes.fromhex("9e1f") + bytes(14))
    assert (s.key, s.asc, s.field, s.cd) == (5, 0x24, 1, True)
    s = await scsi.fail(bytes.fromhex("a305") + bytes(10))
    assert (s.asc, s.field) == (0x24, 1)


async def test_empty_cdb_is_an_error_not_a_crash(scsi: Driver) -> None:
    res = await scsi(b"")
    assert res.status == 0x02
    assert parse_sense(res.sense).key == 5


async def test_capacity_changed_ua_reaches_every_nexus(lu: LogicalUnit) -> None:
    a, b = nexus(), nexus(isid=9)
    drv = Driver(lu, a)
    await drv(TUR)
    await drv(TUR, nexus=b)
    await lu.backend.resize((BLOCKS + 8) * BLOCK)
    lu.notify_capacity_changed()
    for n in (a, b):
        s = await drv.fail(TUR, nexus=n)
        assert (s.key, s.asc, s.ascq) == (6, 0x2A, 0x09)
        await drv.ok(TUR, nexus=n)
    assert lu.capacity == BLOCKS + 8


async def test_ua_is_not_queued_twice(scsi: Driver) -> None:
    scsi.lu.notify_capacity_changed()
    scsi.lu.notify_capacity_changed()
    await scsi.fail(TUR)
    await scsi.ok(TUR)


async def test_lun_reset_ua_to_every_nexus_and_releases_reservation(lu: LogicalUnit) -> None:
    a, b = nexus(), nexus(isid=9)
    drv = Driver(lu, a)
    await drv(TUR)
    await drv(TUR, nexus=b)
    await drv.ok(bytes.fromhex("160000000000"))  # RESERVE(6) by a
    assert (await drv(TUR, nexus=b)).status == 0x18
    lu.reset(a)
    for n in (a, b):
        s = await drv.fail(TUR, nexus=n)
        assert (s.key, s.asc, s.ascq) == (6, 0x29, 0x03)
    await drv.ok(TUR, nexus=b)  # reservation gone


async def test_nexus_loss(lu: LogicalUnit) -> None:
    a = nexus()
    drv = Driver(lu, a)
    await drv(TUR)
    await drv.ok(bytes.fromhex("160000000000"))
    lu.nexus_lost(a)
    assert lu.reservation_holder is None
    s = await drv.fail(TUR)
    assert (s.asc, s.ascq) == (0x29, 0x07)


async def test_set_port_groups_queues_state_changed(scsi: Driver) -> None:
    lu = scsi.lu
    lu.set_port_groups(lu.port_groups)  # identical: nothing queued
    await scsi.ok(TUR)
    lu.set_port_groups(PortGroups.implicit([1, 2], owner=2))
    s = await scsi.fail(TUR)
    assert (s.key, s.asc, s.ascq) == (6, 0x2A, 0x06)


@pytest.mark.parametrize(
    ("state", "ascq", "allowed"),
    [
        (AluaState.STANDBY, 0x0B, [INQUIRY, REQUEST_SENSE, bytes.fromhex("1a003f00ff00")]),
        (AluaState.TRANSITIONING, 0x0A, [INQUIRY, REQUEST_SENSE]),
        (AluaState.UNAVAILABLE, 0x0C, [INQUIRY]),
    ],
)
async def test_alua_access_states(state: AluaState, ascq: int, allowed: list[bytes]) -> None:
    lu = make_lu(port_groups=PortGroups((PortGroup(1, state), PortGroup(2))))
    drv = Driver(lu, nexus(tpgt=1))
    await drv(TUR)
    s = await drv.fail(cdb10(0x28, 0, 1))
    assert (s.key, s.asc, s.ascq) == (2, 0x04, ascq)
    s = await drv.fail(TUR)
    assert s.ascq == ascq
    for cdb in allowed:
        await drv.ok(cdb)
    # the other gateway's port group is active
    other = nexus(tpgt=2)
    await drv(TUR, nexus=other)
    await drv.ok(cdb10(0x28, 0, 1), nexus=other)


async def test_read_only_lu(scsi: Driver) -> None:
    lu = make_lu(read_only=True)
    drv = Driver(lu, nexus())
    await drv(TUR)
    for cdb, data in [
        (cdb10(0x2A, 0, 1), bytes(BLOCK)),
        (cdb16(0x93, 0, 1, 0x08), bytes(BLOCK)),
        (bytes.fromhex("42000000000000001800"), bytes(24)),
        (bytes.fromhex("89") + bytes(12) + b"\x01\x00\x00", bytes(2 * BLOCK)),
    ]:
        s = await drv.fail(cdb, data)
        assert (s.key, s.asc, s.ascq) == (7, 0x27, 0)
    await drv.ok(cdb10(0x28, 0, 1))


class FailingBackend(MemoryBackend):
    def __init__(self, exc: Exception) -> None:
        super().__init__(BLOCKS * BLOCK, BLOCK)
        self.exc = exc

    async def read(self, offset: int, length: int) -> Buffer:
        raise self.exc

    async def write(self, offset: int, data: Buffer, *, fua: bool = False) -> None:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "triple"),
    [
        (BackendNoSpace("full"), (7, 0x27, 0x07)),
        (BackendFenced("lock lost"), (2, 0x04, 0x0A)),
        (BackendNotFound("gone"), (2, 0x04, 0x03)),
        (BackendError("io"), (4, 0x44, 0x00)),
        (RuntimeError("bug"), (4, 0x44, 0x00)),
    ],
)
async def test_backend_errors_become_sense(exc: Exception, triple: tuple[int, int, int]) -> None:
    lu = LogicalUnit(FailingBackend(exc), LuIdentity.from_stable_id(UUID))
    drv = Driver(lu, nexus())
    await drv(TUR)
    s = await drv.fail(cdb10(0x2A, 0, 1), bytes(BLOCK))
    assert (s.key, s.asc, s.ascq) == triple
    s = await drv.fail(cdb10(0x28, 0, 1))
    assert (s.key, s.asc, s.ascq) == triple


async def test_cancellation_propagates() -> None:
    class Slow(MemoryBackend):
        async def read(self, offset: int, length: int) -> Buffer:
            await asyncio.sleep(10)
            return b""

    lu = LogicalUnit(Slow(BLOCKS * BLOCK, BLOCK), LuIdentity.from_stable_id(UUID))
    drv = Driver(lu, nexus())
    await drv(TUR)
    task = asyncio.create_task(drv(cdb10(0x28, 0, 1)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_descriptor_sense_when_d_sense_set(scsi: Driver) -> None:
    scsi.lu.set_mode(d_sense=True)
    res = await scsi(cdb16(0x88, (1 << 64) - 1, 1))
    assert res.sense[:4] == b"\x72\x05\x21\x00"
    res = await scsi(cdb10(0x28, 0, 1, flags=0x20))
    s = parse_sense(res.sense)
    assert res.sense[0] == 0x72 and (s.asc, s.sksv, s.field, s.bit) == (0x24, True, 1, 7)


def test_data_out_length_never_raises(lu: LogicalUnit) -> None:
    assert lu.data_out_length(b"") == 0
    assert lu.data_out_length(b"\x2a") == 0  # truncated CDB
    assert lu.data_out_length(bytes.fromhex("ff0000000000")) == 0
    assert lu.data_out_length(cdb10(0x2A, 0, 4)) == 4 * BLOCK
    assert lu.data_out_length(bytes.fromhex("150000001c00")) == 0x1C
    assert lu.data_out_length(bytes.fromhex("89") + bytes(12) + b"\x01\x00\x00") == 2 * BLOCK
    assert lu.data_out_length(cdb16(0x8F, 0, 4, 0x02)) == 4 * BLOCK
    assert lu.data_out_length(cdb16(0x8F, 0, 4, 0x00)) == 0


async def test_execute_accepts_memoryview_data(scsi: Driver) -> None:
    buf = bytearray(b"q" * 2 * BLOCK)
    res = await scsi.lu.execute(
        ScsiCommand(cdb10(0x2A, 0, 1), scsi.nexus, BLOCK, memoryview(buf)[BLOCK:])
    )
    assert res.status == 0
    assert await scsi.ok(cdb10(0x28, 0, 1)) == b"q" * BLOCK
    # Data-Out longer than the CDB asks for: only the CDB's length is written.
    await scsi.ok(cdb10(0x2A, 10, 1), b"z" * 2 * BLOCK)
    assert await scsi.ok(cdb10(0x28, 10, 2)) == b"z" * BLOCK + bytes(BLOCK)


async def test_short_data_out_is_rejected_not_partially_written(scsi: Driver) -> None:
    s = await scsi.fail(cdb10(0x2A, 0, 2), b"x" * BLOCK)
    assert (s.key, s.asc, s.ascq) == (5, 0x0E, 0x03)
    assert await scsi.ok(cdb10(0x28, 0, 1)) == bytes(BLOCK)
