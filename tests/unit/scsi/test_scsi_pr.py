"""Persistent reservations: the pure state machine and the commands, byte by byte."""

from __future__ import annotations

import struct

import pytest
from scsi_helpers import Driver, cdb10, make_lu, nexus

from iscsigw.scsi.lun import LogicalUnit
from iscsigw.scsi.pr import (
    MemoryPrStore,
    PrAccess,
    PrOut,
    PrOutRequest,
    PrState,
    apply_out,
    parse_iscsi_transport_id,
    transport_id,
)
from iscsigw.scsi.sense import CheckCondition

A = nexus("iqn.x:a", 0x1)
B = nexus("iqn.x:b", 0x2)
C = nexus("iqn.x:c", 0x3)
WE, EA, WERO, EARO, WEAR, EAAR = 1, 3, 5, 6, 7, 8


def prin(sa: int, alloc: int = 8192) -> bytes:
    return struct.pack(">BBxxxxxHB", 0x5E, sa, alloc, 0)


def prout(sa: int, type_: int = 0, scope: int = 0, plen: int = 24) -> bytes:
    return struct.pack(">BBBxxIB", 0x5F, sa, (scope << 4) | type_, plen, 0)


def params(key: int = 0, sark: int = 0, flags: int = 0) -> bytes:
    return struct.pack(">QQxxxxBxxx", key, sark, flags)


async def _drivers(lu: LogicalUnit) -> tuple[Driver, Driver, Driver]:
    ds = tuple(Driver(lu, n) for n in (A, B, C))
    for d in ds:
        await d(bytes(6))  # consume POWER ON
    return ds  # type: ignore[return-value]


async def register(d: Driver, key: int) -> None:
    await d.ok(prout(PrOut.REGISTER_AND_IGNORE), params(sark=key))


async def read_keys(d: Driver) -> tuple[int, list[int]]:
    data = await d.ok(prin(0))
    gen, length = struct.unpack(">II", data[:8])
    assert length == len(data) - 8
    return gen, [struct.unpack(">Q", data[8 + i : 16 + i])[0] for i in range(0, length, 8)]


async def status(d: Driver, cdb: bytes, data: bytes = b"") -> int:
    return (await d(cdb, data)).status


async def test_read_keys_and_generation(lu: LogicalUnit) -> None:
    a, b, _ = await _drivers(lu)
    assert await a.ok(prin(0)) == bytes(8)
    await register(a, 0x1111)
    await register(b, 0x2222)
    assert await read_keys(a) == (2, [0x1111, 0x2222])
    # Truncated to 8 bytes: the ADDITIONAL LENGTH still says 16.
    assert await a.ok(prin(0, 8)) == bytes.fromhex("00000002 00000010")
    # REGISTER with the wrong key is a conflict and changes nothing.
    assert await status(a, prout(PrOut.REGISTER), params(0x9999, 0x3333)) == 0x18
    # REGISTER from an unregistered nexus with a nonzero key: conflict.
    c = Driver(lu, C)
    await c(bytes(6))
    assert await status(c, prout(PrOut.REGISTER), params(0x1, 0x5)) == 0x18
    # Unregistering an unregistered nexus: GOOD, no generation bump.
    await c.ok(prout(PrOut.REGISTER), params(0, 0))
    assert (await read_keys(a))[0] == 2
    # Re-register with a new key, then unregister.
    await a.ok(prout(PrOut.REGISTER), params(0x1111, 0x4444))
    await a.ok(prout(PrOut.REGISTER), params(0x4444, 0))
    assert await read_keys(b) == (4, [0x2222])


async def test_report_capabilities_bytes(scsi: Driver) -> None:
    assert await scsi.ok(prin(2)) == bytes.fromhex("0008 15 90 ea 01 0000")


async def test_prin_service_actions_and_lengths(scsi: Driver) -> None:
    for sa in range(4, 0x20):
        s = await scsi.fail(prin(sa))
        assert (s.key, s.asc) == (5, 0x24)
    s = await scsi.fail(prout(PrOut.REGISTER, plen=23), bytes(23))
    assert (s.key, s.asc) == (5, 0x1A)
    s = await scsi.fail(prout(PrOut.REGISTER), params(flags=0x08))  # SPEC_I_PT
    assert (s.asc, s.field) == (0x26, 20)


async def test_reserve_read_reservation_release(lu: LogicalUnit) -> None:
    a, b, _ = await _drivers(lu)
    await register(a, 0xAA)
    await register(b, 0xBB)
    assert await a.ok(prin(1)) == bytes.fromhex("00000002 00000000")
    await a.ok(prout(PrOut.RESERVE, WE), params(0xAA))
    assert await a.ok(prin(1)) == bytes.fromhex(
        "00000002 00000010 00000000000000aa 00000000 00 01 0000"
    )
    await a.ok(prout(PrOut.RESERVE, WE), params(0xAA))  # same type again: GOOD
    assert await status(a, prout(PrOut.RESERVE, EA), params(0xAA)) == 0x18
    assert await status(b, prout(PrOut.RESERVE, WE), params(0xBB)) == 0x18
    s = await a.fail(prout(PrOut.RESERVE, 2), params(0xAA))  # invalid type
    assert s.asc == 0x24
    # RELEASE with the wrong type: 26/04 INVALID RELEASE OF PERSISTENT RESERVATION.
    s = await a.fail(prout(PrOut.RELEASE, EA), params(0xAA))
    assert (s.key, s.asc, s.ascq) == (5, 0x26, 0x04)
    await b.ok(prout(PrOut.RELEASE, WE), params(0xBB))  # not the holder: no-op
    assert (await a.ok(prin(1)))[4:8] == b"\x00\x00\x00\x10"
    await a.ok(prout(PrOut.RELEASE, WE), params(0xAA))
    assert await a.ok(prin(1)) == bytes.fromhex("00000002 00000000")


@pytest.mark.parametrize(
    ("type_", "reg_read", "reg_write", "unreg_read", "unreg_write"),
    [
        (EA, False, False, False, False),
        (WE, True, False, True, False),
        (EARO, True, True, False, False),
        (WERO, True, True, True, False),
        (EAAR, True, True, False, False),
        (WEAR, True, True, True, False),
    ],
)
async def test_access_matrix(
    type_: int, reg_read: bool, reg_write: bool, unreg_read: bool, unreg_write: bool
) -> None:
    lu = make_lu()
    a, b, c = await _drivers(lu)
    await register(a, 0xA)
    await register(b, 0xB)
    await a.ok(prout(PrOut.RESERVE, type_), params(0xA))
    read, write = cdb10(0x28, 1, 1), cdb10(0x2A, 1, 1)
    block = bytes(512)
    assert await status(a, read) == 0 and await status(a, write, block) == 0
    assert (await status(b, read) == 0) is reg_read
    assert (await status(b, write, block) == 0) is reg_write
    assert (await status(c, read) == 0) is unreg_read
    assert (await status(c, write, block) == 0) is unreg_write
    if not unreg_read:
        assert await status(c, read) == 0x18
    # Always allowed: INQUIRY, TUR, REPORT LUNS, PR IN, REQUEST SENSE.
    for cdb in (bytes.fromhex("120000006000"), bytes(6), prin(0), bytes.fromhex("030000001200")):
        assert await status(c, cdb) == 0, cdb.hex()
    # READ CAPACITY is a read; SYNCHRONIZE CACHE and MODE SELECT count as writes.
    assert (await status(c, cdb10(0x25, 0, 0)) == 0) is unreg_read
    assert await status(c, cdb10(0x35, 0, 0)) == 0x18


async def test_reservation_key_reported_zero_for_all_registrants(lu: LogicalUnit) -> None:
    a, b, _ = await _drivers(lu)
    await register(a, 0xA)
    await register(b, 0xB)
    await a.ok(prout(PrOut.RESERVE, EAAR), params(0xA))
    data = await b.ok(prin(1))
    assert data[8:16] == bytes(8) and data[21] == EAAR
    # b is a holder too: the same RESERVE is GOOD, another type a conflict.
    await b.ok(prout(PrOut.RESERVE, EAAR), params(0xB))
    # The reservation survives a's unregistration and ends with the last registrant.
    await a.ok(prout(PrOut.REGISTER), params(0xA, 0))
    assert (await b.ok(prin(1)))[21] == EAAR
    await b.ok(prout(PrOut.REGISTER), params(0xB, 0))
    assert (await b.ok(prin(1)))[4:8] == bytes(4)


async def test_holder_unregister_releases_ro_with_ua(lu: LogicalUnit) -> None:
    a, b, _ = await _drivers(lu)
    await register(a, 0xA)
    await register(b, 0xB)
    await a.ok(prout(PrOut.RESERVE, WERO), params(0xA))
    await a.ok(prout(PrOut.REGISTER), params(0xA, 0))
    s = await b.fail(bytes(6))
    assert (s.key, s.asc, s.ascq) == (6, 0x2A, 0x04)  # RESERVATIONS RELEASED
    assert (await b.ok(prin(1)))[4:8] == bytes(4)
    await b.ok(bytes(6))


async def test_clear(lu: LogicalUnit) -> None:
    a, b, c = await _drivers(lu)
    await register(a, 0xA)
    await register(b, 0xB)
    await a.ok(prout(PrOut.RESERVE, EA), params(0xA))
    assert await status(c, prout(PrOut.CLEAR), params(0xC)) == 0x18  # not registered
    await a.ok(prout(PrOut.CLEAR), params(0xA))
    assert await read_keys(a) == (3, [])
    assert await a.ok(prin(1)) == bytes.fromhex("00000003 00000000")
    s = await b.fail(bytes(6))
    assert (s.asc, s.ascq) == (0x2A, 0x03)  # RESERVATIONS PREEMPTED
    await a.ok(bytes(6))  # the issuer gets no UA


async def test_preempt_registration_and_reservation(lu: LogicalUnit) -> None:
    a, b, _c = await _drivers(lu)
    await register(a, 0xA)
    await register(b, 0xB)
    # No reservation: PREEMPT removes the registrations of SARK.
    await b.ok(prout(PrOut.PREEMPT, EA), params(0xB, 0xA))
    assert await read_keys(b) == (3, [0xB])
    s = await a.fail(bytes(6))
    assert (s.asc, s.ascq) == (0x2A, 0x05)  # REGISTRATIONS PREEMPTED
    # Nothing registered under SARK: conflict. SARK 0 without an AR reservation: 26/00.
    assert await status(b, prout(PrOut.PREEMPT, EA), params(0xB, 0x77)) == 0x18
    s = await b.fail(prout(PrOut.PREEMPT, EA), params(0xB, 0))
    assert s.asc == 0x26
    # Preempting the holder takes over its reservation with the new type.
    await register(a, 0xA)
    await a.ok(prout(PrOut.RESERVE, WE), params(0xA))
    await b.ok(prout(PrOut.PREEMPT, EA), params(0xB, 0xA))
    data = await b.ok(prin(1))
    assert data[8:16] == struct.pack(">Q", 0xB) and data[21] == EA
    assert await status(a, cdb10(0x28, 0, 1)) != 0  # a lost its registration (UA first)
    assert await status(a, cdb10(0x28, 0, 1)) == 0x18


async def test_preempt_and_abort_calls_the_abort_hook(lu: LogicalUnit) -> None:
    a, b, _ = await _drivers(lu)
    aborted: list[str] = []
    lu.abort_nexus_tasks = lambda nx: aborted.append(nx.initiator_name)
    await register(a, 0xA)
    await register(b, 0xB)
    await a.ok(prout(PrOut.RESERVE, EA), params(0xA))
    await b.ok(prout(PrOut.PREEMPT_AND_ABORT, EA), params(0xB, 0xA))
    assert aborted == ["iqn.x:a"]


async def test_all_registrants_preempt_with_zero_key(lu: LogicalUnit) -> None:
    a, b, c = await _drivers(lu)
    for d, k in ((a, 0xA), (b, 0xB), (c, 0xC)):
        await register(d, k)
    await a.ok(prout(PrOut.RESERVE, WEAR), params(0xA))
    await b.ok(prout(PrOut.PREEMPT, WE), params(0xB, 0))
    assert (await read_keys(b))[1] == [0xB]
    data = await b.ok(prin(1))
    assert data[8:16] == struct.pack(">Q", 0xB) and data[21] == WE


async def test_read_full_status(lu: LogicalUnit) -> None:
    a, b, _ = await _drivers(lu)
    await register(a, 0xA)
    await b.ok(prout(PrOut.REGISTER_AND_IGNORE), params(sark=0xB, flags=0x04))  # ALL_TG_PT
    await a.ok(prout(PrOut.RESERVE, WE), params(0xA))
    data = await a.ok(prin(3))
    gen, length = struct.unpack(">II", data[:8])
    assert (gen, length) == (2, len(data) - 8)
    d0 = data[8:]
    assert d0[0:8] == struct.pack(">Q", 0xA)
    assert d0[12] == 0x01 and d0[13] == WE  # R_HOLDER, scope/type
    assert d0[18:20] == b"\x00\x01"  # RTPI
    tid_len = struct.unpack(">I", d0[20:24])[0]
    tid = d0[24 : 24 + tid_len]
    assert tid[0] == 0x45 and tid[4:].rstrip(b"\x00") == b"iqn.x:a,i,0x000000000001"
    d1 = d0[24 + tid_len :]
    assert d1[0:8] == struct.pack(">Q", 0xB) and d1[12] == 0x02  # ALL_TG_PT, not holder


async def test_register_and_move(lu: LogicalUnit) -> None:
    a, b, _ = await _drivers(lu)
    await register(a, 0xA)
    await a.ok(prout(PrOut.RESERVE, EA), params(0xA))
    tid = transport_id(B.initiator_port)
    plist = struct.pack(">QQxBHI", 0xA, 0xBB, 0x02, B.tpgt, len(tid)) + tid  # UNREG
    await a.ok(prout(PrOut.REGISTER_AND_MOVE, EA, plen=len(plist)), plist)
    data = await b.ok(prin(1))
    assert data[8:16] == struct.pack(">Q", 0xBB) and data[21] == EA
    assert (await read_keys(b))[1] == [0xBB]
    await b.ok(cdb10(0x28, 0, 1))


async def test_scsi2_reserve_and_pr_interplay(lu: LogicalUnit) -> None:
    a, b, _ = await _drivers(lu)
    await register(a, 0xA)
    # RESERVE(6) while registrations exist: conflict (CRH=1 only helps the PR holder).
    assert await status(b, bytes.fromhex("160000000000")) == 0x18
    await a.ok(prout(PrOut.RESERVE, WE), params(0xA))
    await a.ok(bytes.fromhex("160000000000"))  # the holder: GOOD, no SCSI-2 reservation
    assert lu.reservation_holder is None
    await a.ok(prout(PrOut.CLEAR), params(0xA))
    # A SCSI-2 reservation blocks PR OUT, not PR IN, from other nexuses.
    await b.ok(bytes.fromhex("160000000000"))
    assert await status(a, prout(PrOut.REGISTER_AND_IGNORE), params(sark=1)) == 0x18
    await a.ok(prin(0))


async def test_state_shared_between_gateways() -> None:
    """Two LUs (two gateways) over one store: a reservation taken on one is enforced on the
    other, and its unit attentions reach the other gateway's nexuses."""
    store = MemoryPrStore()
    gw1, gw2 = make_lu(pr_store=store), make_lu(pr_store=store)
    a = Driver(gw1, nexus("iqn.x:a", 1, tpgt=1))
    b = Driver(gw2, nexus("iqn.x:b", 2, tpgt=2))
    await a(bytes(6))
    await b(bytes(6))
    await register(a, 0xA)
    await register(b, 0xB)
    await a.ok(prout(PrOut.RESERVE, WE), params(0xA))
    assert await status(b, cdb10(0x2A, 0, 1), bytes(512)) == 0x18
    await b.ok(cdb10(0x28, 0, 1))
    await a.ok(prout(PrOut.CLEAR), params(0xA))
    s = await b.fail(bytes(6))
    assert (s.asc, s.ascq) == (0x2A, 0x03)
    await b.ok(cdb10(0x2A, 0, 1), bytes(512))


async def test_commit_retries_after_a_lost_race(lu: LogicalUnit) -> None:
    class Racy(MemoryPrStore):
        raced = False

        async def commit(self, expected_version: int, new: PrState) -> bool:
            if not self.raced:  # another gateway commits first
                self.raced = True
                other = apply_out(
                    self.current, C, PrOutRequest(PrOut.REGISTER_AND_IGNORE, 0, 0, 0, 0xC)
                )
                await super().commit(self.current.version, other)
            return await super().commit(expected_version, new)

    store = Racy()
    lu2 = make_lu(pr_store=store)
    a = Driver(lu2, A)
    await a(bytes(6))
    await register(a, 0xA)
    assert sorted(store.current.registrations[i].key for i in range(2)) == [0xA, 0xC]
    assert store.current.generation == 2


def test_state_round_trips_through_dict() -> None:
    s = apply_out(PrState(), A, PrOutRequest(PrOut.REGISTER, 0, 0, 0, 0xA, aptpl=True))
    s = apply_out(s, A, PrOutRequest(PrOut.RESERVE, 0, WE, 0xA, 0))
    assert PrState.from_dict(s.to_dict()) == s
    assert s.after_power_loss() == s
    s2 = apply_out(PrState(), A, PrOutRequest(PrOut.REGISTER, 0, 0, 0, 0xA))
    assert s2.after_power_loss().registrations == ()
    assert s.conflicts(B, PrAccess.WRITE) and not s.conflicts(B, PrAccess.READ)


def test_transport_id_round_trip() -> None:
    tid = transport_id("iqn.x:a,i,0x000000000001")
    assert len(tid) % 4 == 0 and len(tid) >= 24
    assert parse_iscsi_transport_id(tid) == "iqn.x:a,i,0x000000000001"
    with pytest.raises(CheckCondition):
        parse_iscsi_transport_id(b"\x41\x00\x00\x04abcd")  # not iSCSI (protocol 1)
