"""LU state shared between gateways (``gateway/prstore.py`` FileLuState as PrStore + LuCluster).

Two LogicalUnits over two FileLuState objects on one directory stand in for two gateway
processes exporting the same LU (flock and the mmap-ed sequence page behave the same between
two open file descriptions of one process). Gateway A serves tpgt 1, gateway B tpgt 2.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from scsi_helpers import Driver, make_lu, nexus, parse_sense

from iscsigw.gateway.prstore import FileLuState, FileRangeLock, LuStateDirectory, state_name
from iscsigw.scsi.alua import AluaState, PortGroups
from iscsigw.scsi.lun import LogicalUnit
from iscsigw.scsi.pr import PrState
from iscsigw.scsi.task import ITNexus

NA = nexus("iqn.1994-05.com.redhat:a", tpgt=1)
NB = nexus("iqn.1994-05.com.redhat:b", tpgt=2)
NB2 = nexus("iqn.1994-05.com.redhat:c", tpgt=2)
K1, K2 = 0xAA, 0xBB
CONFLICT = 0x18


def open_state(directory: Path, gateway: str) -> FileLuState:
    st = FileLuState(directory, state_name("pool/disk", "wwn-1"), gateway)
    st.open()
    return st


def lu_over(state: FileLuState) -> LogicalUnit:
    return make_lu(pr_store=state, cluster=state)


async def fresh(drv: Driver, nx: ITNexus) -> None:
    res = await drv(bytes(6), nexus=nx)  # the POWER ON unit attention of a new nexus
    assert res.status == 0x02


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[Driver, Driver, FileLuState, FileLuState]]:
    sa, sb = open_state(tmp_path, "gwa"), open_state(tmp_path, "gwb")
    a, b = Driver(lu_over(sa), NA), Driver(lu_over(sb), NB)
    await fresh(a, NA)
    await fresh(b, NB)
    await fresh(b, NB2)
    yield a, b, sa, sb
    a.lu.close_pr()
    b.lu.close_pr()


def prout(sa: int, type_: int = 0) -> bytes:
    return struct.pack(">BBB2xIB", 0x5F, sa, type_, 24, 0)


def params(key: int = 0, sa_key: int = 0, aptpl: bool = False) -> bytes:
    return struct.pack(">QQ4xB3x", key, sa_key, 1 if aptpl else 0)


async def register(drv: Driver, nx: ITNexus, key: int, aptpl: bool = False) -> None:
    await drv.ok(prout(0), params(0, key, aptpl), nexus=nx)


WRITE10 = struct.pack(">BBIBHB", 0x2A, 0, 0, 0, 1, 0)
READ10 = struct.pack(">BBIBHB", 0x28, 0, 0, 0, 1, 0)


async def test_reservation_taken_on_a_is_enforced_on_b_at_once(two: tuple) -> None:
    a, b, _sa, _sb = two
    await register(a, NA, K1)
    await register(b, NB, K2)
    await a.ok(prout(1, type_=1), params(K1), nexus=NA)  # RESERVE Write Exclusive
    # No poll has run: B's very next commands see it.
    assert (await b(WRITE10, bytes(512), nexus=NB)).status == CONFLICT
    assert (await b(WRITE10, bytes(512), nexus=NB2)).status == CONFLICT
    await b.ok(READ10, nexus=NB2)
    keys = await b.ok(struct.pack(">BB5xHB", 0x5E, 0, 512, 0), nexus=NB)
    assert struct.unpack_from(">IIQQ", keys) == (2, 16, K1, K2)
    await a.ok(WRITE10, bytes(512), nexus=NA)


async def test_preempt_on_b_notifies_and_aborts_on_a(two: tuple) -> None:
    a, b, sa, _sb = two
    await register(a, NA, K1)
    await register(b, NB, K2)
    await a.ok(prout(1, type_=3), params(K1), nexus=NA)  # Exclusive Access
    aborted: list[ITNexus] = []
    a.lu.abort_nexus_tasks = aborted.append
    await b.ok(prout(5, type_=3), params(K2, K1), nexus=NB)  # PREEMPT AND ABORT
    # A's next command: REGISTRATIONS PREEMPTED; the abort waits for the poll (it could be
    # this very command otherwise).
    s = await a.fail(READ10, nexus=NA)
    assert (s.key, s.asc, s.ascq) == (6, 0x2A, 0x05)
    assert aborted == []
    sa.poll()
    assert aborted == [NA]
    assert (await a(READ10, nexus=NA)).status == CONFLICT


async def test_preempt_and_abort_reaches_an_idle_gateway_through_the_poll(two: tuple) -> None:
    a, b, sa, _sb = two
    await register(a, NA, K1)
    await register(b, NB, K2)
    aborted: list[ITNexus] = []
    a.lu.abort_nexus_tasks = aborted.append
    await b.ok(prout(5, type_=1), params(K2, K1), nexus=NB)
    sa.poll()  # no command went through A
    assert aborted == [NA]
    assert [(c.asc, c.ascq) for c in a.lu.pending_unit_attentions(NA)] == [(0x2A, 0x05)]


async def test_scsi2_reservation_and_lun_reset_are_shared(two: tuple) -> None:
    a, b, _sa, _sb = two
    reserve6 = bytes((0x16, 0, 0, 0, 0, 0))
    await a.ok(reserve6, nexus=NA)
    assert (await b(reserve6, nexus=NB)).status == CONFLICT
    assert (await b(READ10, nexus=NB)).status == CONFLICT
    # LU reset through B: released everywhere, 29/03 on A's nexus too.
    b.lu.reset(NB)
    await b.lu.publish_reset()
    s = await a.fail(bytes(6), nexus=NA)
    assert (s.key, s.asc, s.ascq) == (6, 0x29, 0x03)
    s = await b.fail(bytes(6), nexus=NB)
    assert (s.key, s.asc, s.ascq) == (6, 0x29, 0x03)
    await b.ok(reserve6, nexus=NB)
    assert (await a(READ10, nexus=NA)).status == CONFLICT
    await b.lu.release_reservation_of(NB)
    await a.ok(READ10, nexus=NA)
    # The issuer's own gateway does not report the reset twice.
    a.lu.reset(NA)
    await a.lu.publish_reset()
    assert (await a.fail(bytes(6), nexus=NA)).asc == 0x29
    await a.ok(bytes(6), nexus=NA)


async def test_nexus_loss_releases_the_shared_reservation(two: tuple) -> None:
    a, b, _sa, _sb = two
    await a.ok(bytes((0x16, 0, 0, 0, 0, 0)), nexus=NA)
    a.lu.nexus_lost(NA)
    for _ in range(100):
        if (await b(READ10, nexus=NB)).status == 0:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the reservation of a lost nexus stayed")


async def test_mode_select_on_a_changes_sense_format_on_b(two: tuple) -> None:
    a, b, _sa, _sb = two
    page = bytearray(await a.ok(bytes((0x1A, 0x08, 0x0A, 0, 255, 0)), nexus=NA))[4:16]
    page[0] &= 0x3F
    page[2] |= 0x04  # D_SENSE
    await a.ok(bytes((0x15, 0x10, 0, 0, 16, 0)), bytes(4) + bytes(page), nexus=NA)
    res = await b(bytes(6), nexus=NB)
    assert res.sense[0] == 0x72
    s = parse_sense(res.sense)
    assert (s.key, s.asc, s.ascq) == (6, 0x2A, 0x01)
    await a.ok(bytes(6), nexus=NA)  # the changer gets no 2A/01
    bad = await b(struct.pack(">BBIBHB", 0x28, 0, 0xFFFFFFF0, 0, 1, 0), nexus=NB)
    assert bad.sense[0] == 0x72


async def test_sanitize_elsewhere_is_reported_here(two: tuple) -> None:
    a, b, _sa, _sb = two
    await a.lu.publish_sanitize("running")
    s = await b.fail(bytes(6), nexus=NB)
    assert (s.key, s.asc, s.ascq) == (2, 0x04, 0x1B)
    await a.ok(bytes(6), nexus=NA)  # the gateway running it knows from its own task
    await a.lu.publish_sanitize("failed")
    s = await b.fail(WRITE10, bytes(512), nexus=NB)
    assert (s.key, s.asc, s.ascq) == (3, 0x31, 0x03)
    await b.ok(bytes((0x48, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0)), nexus=NB)  # EXIT FAILURE MODE
    await a.ok(WRITE10, bytes(512), nexus=NA)


async def test_pr_commit_race_between_gateways_keeps_every_registration(tmp_path: Path) -> None:
    states = [open_state(tmp_path, f"gw{i}") for i in range(2)]
    drivers = [Driver(lu_over(s), NA) for s in states]
    nexuses = [nexus(f"iqn.1994-05.com.redhat:n{i}", tpgt=1 + i % 2) for i in range(12)]
    for i, nx in enumerate(nexuses):
        await fresh(drivers[i % 2], nx)
    await asyncio.gather(*(register(drivers[i % 2], nx, 0x100 + i) for i, nx in enumerate(nexuses)))
    keys = await drivers[0].ok(struct.pack(">BB5xHB", 0x5E, 0, 4096, 0), nexus=nexuses[0])
    n = struct.unpack_from(">I", keys, 4)[0] // 8
    assert sorted(struct.unpack_from(f">{n}Q", keys, 8)) == [0x100 + i for i in range(12)]
    assert struct.unpack_from(">I", keys)[0] == 12  # PRGENERATION: one per registration
    for d in drivers:
        d.lu.close_pr()


async def test_cold_start_keeps_only_aptpl_state(tmp_path: Path) -> None:
    st = open_state(tmp_path, "gwa")
    assert st.cold_start
    drv = Driver(lu_over(st), NA)
    await fresh(drv, NA)
    await register(drv, NA, K1)
    other = open_state(tmp_path, "gwb")  # A still has it open: no power loss
    assert not other.cold_start and other.current.registrations
    other.close()
    drv.lu.close_pr()
    st = open_state(tmp_path, "gwa")  # nobody had it open: a power loss
    assert st.cold_start and not st.current.registrations
    drv = Driver(lu_over(st), NA)
    await fresh(drv, NA)
    await register(drv, NA, K1, aptpl=True)
    await drv.ok(prout(1, type_=1), params(K1), nexus=NA)
    drv.lu.close_pr()
    st = open_state(tmp_path, "gwb")
    assert st.cold_start
    assert st.current.aptpl and st.current.reservation is not None
    assert [r.key for r in st.current.registrations] == [K1]
    st.close()
    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert PrState.from_dict(doc["pr"]).aptpl


async def test_alua_transition_reports_transitioning_then_final(tmp_path: Path) -> None:
    lu = make_lu()
    drv = Driver(lu, NA)
    await fresh(drv, NA)
    seen: list[int] = []

    async def work() -> None:
        s = await drv.fail(bytes(6), nexus=NA)
        assert (s.key, s.asc, s.ascq) == (6, 0x2A, 0x06)
        rtpg = await drv.ok(bytes((0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0)), nexus=NA)
        seen.extend(rtpg[4 + 12 * i] & 0x0F for i in range(2))
        s = await drv.fail(READ10, nexus=NA)  # transitioning: media access gets 2/04/0A
        assert (s.key, s.asc, s.ascq) == (2, 0x04, 0x0A)
        await drv.ok(bytes((0x12, 0, 0, 0, 96, 0)), nexus=NA)  # INQUIRY still works

    # The owner moves from group 1 to group 2.
    await lu.transition(PortGroups.implicit([1, 2], owner=2), work)
    assert seen == [AluaState.TRANSITIONING, AluaState.TRANSITIONING]
    groups = {g.tpg_id: g for g in lu.port_groups.groups}
    assert groups[2].state == AluaState.ACTIVE_OPTIMIZED and groups[2].status_code == 2
    # Re-applying the same owner (status codes differ only) reports nothing.
    await lu.transition(PortGroups.implicit([1, 2], owner=2))
    pending = lu.pending_unit_attentions(NA)
    assert [c.asc for c in pending] == [0x2A]  # one 2A/06 (merged), not more


async def test_file_range_lock_excludes_another_open_file(tmp_path: Path) -> None:
    path = tmp_path / "disk"
    path.write_bytes(bytes(4096))
    one, two = FileRangeLock(path), FileRangeLock(path)
    order: list[str] = []

    async def hold(lock: FileRangeLock, name: str) -> None:
        async with lock(0, 512):
            order.append(f"{name}+")
            await asyncio.sleep(0.02)
            order.append(f"{name}-")

    await asyncio.gather(hold(one, "a"), hold(two, "b"))
    assert order in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])


async def test_directory_poll_task(tmp_path: Path) -> None:
    da, db = LuStateDirectory(tmp_path, "gwa", interval=0.01), LuStateDirectory(tmp_path, "gwb")
    sa = await da.open("pool/disk", "wwn")
    sb = await db.open("pool/disk", "wwn")
    a, b = Driver(lu_over(sa), NA), Driver(lu_over(sb), NB)
    await fresh(a, NA)
    await fresh(b, NB)
    await register(a, NA, K1)
    await register(b, NB, K2)
    aborted: list[ITNexus] = []
    a.lu.abort_nexus_tasks = aborted.append
    await b.ok(prout(5, type_=1), params(K2, K1), nexus=NB)
    for _ in range(100):
        if aborted:
            break
        await asyncio.sleep(0.01)
    assert aborted == [NA]
    await da.close()
    await db.close()
