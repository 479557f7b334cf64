"""Cluster-wide SCSI state between two gateways exporting the same LU.

Gateway A (127.0.0.2) and gateway B (127.0.0.3) are two ``iscsigw serve --demo`` processes on
one shared ``--data-dir``: one gateway.conf, one file-backed demo LUN reachable through two
target portal groups (tpgt 1 on A, 2 on B), and one per-LU shared state
(``gateway/prstore.py``).

The initiator is the project's raw iSCSI client (``rawclient.py``, written from RFC 7143):
the checks need two initiators with chosen names on chosen gateways issuing single commands
and looking at status and sense bytes. ``sg_persist`` needs a kernel block device (there is
none here) and libiscsi's ``iscsi-*`` tools do not send PERSISTENT RESERVE OUT; the libiscsi
view across gateways is ``tests/conformance/test_iscsi_test_cu_multigw.py``.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.harness import Gateway
from integration.rawclient import OP_TMF_REQ, RESERVED_TAG, ScsiResult, Session, bhs

I1 = "iqn.2026-11.io.iscsigw.test:node1"
I2 = "iqn.2026-11.io.iscsigw.test:node2"
I3 = "iqn.2026-11.io.iscsigw.test:node3"
K1, K2 = 0x1111, 0x2222
BS = 512
GOOD, CHECK, CONFLICT = 0x00, 0x02, 0x18
WE, EA, WE_RO = 1, 3, 5


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Gateway, Gateway]]:
    data, logs = tmp_path / "data", tmp_path / "logs"
    a = Gateway(data, logs, host="127.0.0.2", name="gwa")
    b = Gateway(data, logs, host="127.0.0.3", name="gwb")
    try:
        a.start()
        b.start()
        yield a, b
        a.assert_no_tracebacks()
        b.assert_no_tracebacks()
    finally:
        for gw in (b, a):
            if gw.alive():
                gw.stop()
            gw.cleanup()


ISIDS = {I1: bytes.fromhex("400000000001"), I2: bytes.fromhex("400000000002")}


def login(gw: Gateway, initiator: str) -> Session:
    """A session with a fixed ISID per initiator, so a new login is the same initiator port
    (registrations are per I_T nexus: initiator name + ISID, target port)."""
    s = gw.session()
    if initiator in ISIDS:
        s.isid = ISIDS[initiator]
    try:
        s.login(gw.iqn, initiator=initiator, user=gw.user, password=gw.password)
    except BaseException:
        s.close()
        raise
    assert s.test_unit_ready(retries=8).status == GOOD
    return s


# -- PERSISTENT RESERVE helpers ----------------------------------------------------------------


def prout(
    s: Session, sa: int, key: int = 0, sa_key: int = 0, type_: int = 0, aptpl: bool = False
) -> ScsiResult:
    params = struct.pack(">QQ4xB3x", key, sa_key, 0x01 if aptpl else 0)
    cdb = struct.pack(">BBB2xIB", 0x5F, sa, type_, len(params), 0)
    return s.scsi(cdb, write_data=params)


def prin(s: Session, sa: int) -> ScsiResult:
    res = s.scsi(struct.pack(">BB5xHB", 0x5E, sa, 8192, 0), read_len=8192)
    assert res.status == GOOD, res
    return res


def read_keys(s: Session) -> list[int]:
    data = prin(s, 0).data
    n = struct.unpack_from(">I", data, 4)[0]
    return [struct.unpack_from(">Q", data, 8 + i)[0] for i in range(0, n, 8)]


def read_reservation(s: Session) -> tuple[int, int] | None:
    data = prin(s, 1).data
    if struct.unpack_from(">I", data, 4)[0] == 0:
        return None
    return struct.unpack_from(">Q", data, 8)[0], data[21] & 0x0F


def asc(res: ScsiResult) -> tuple[int, int, int]:
    sense = res.sense
    if sense[0] & 0x7F in (0x72, 0x73):
        return sense[1] & 0x0F, sense[2], sense[3]
    return sense[2] & 0x0F, sense[12], sense[13]


def lun_reset(s: Session) -> int:
    itt = s.next_itt()
    lun = struct.pack(">HHI", s.lun & 0x3FFF, 0, 0)
    s.send_pdu(
        bhs(
            OP_TMF_REQ,
            0x80 | 5,  # LOGICAL UNIT RESET
            immediate=True,
            lun=lun,
            itt=itt,
            w20=RESERVED_TAG,
            w24=s.cmdsn,
            w28=s.expstatsn,
        )
    )
    rsp = s._recv_for(itt)
    s._track_statsn(rsp)
    return rsp.bhs[2]


# -- tests -------------------------------------------------------------------------------------


def test_reservation_through_a_blocks_write_through_b(pair: tuple[Gateway, Gateway]) -> None:
    a, b = pair
    s1, s2, s3 = login(a, I1), login(b, I2), login(b, I3)
    block = b"B" * BS
    try:
        assert prout(s1, 0, 0, K1).status == GOOD  # REGISTER via A
        assert prout(s2, 0, 0, K2).status == GOOD  # REGISTER via B
        # Registrations are one list, whichever gateway is asked.
        assert sorted(read_keys(s1)) == sorted(read_keys(s2)) == [K1, K2]
        assert prout(s1, 1, K1, 0, WE).status == GOOD  # RESERVE Write Exclusive via A
        assert read_reservation(s2) == (K1, WE)  # ... seen through B

        # Through B, immediately: a registrant that is not the holder, and a stranger.
        for s in (s2, s3):
            assert s.write10(8, block, BS).status == CONFLICT
            assert s.read10(8, 1, BS).status == GOOD  # Write Exclusive still allows reads
        assert s1.write10(8, block, BS).status == GOOD  # the holder writes through A

        # Exclusive Access: reads conflict too (RELEASE, RESERVE with the other type).
        assert prout(s1, 2, K1, 0, WE).status == GOOD
        assert prout(s1, 1, K1, 0, EA).status == GOOD
        assert s3.read10(8, 1, BS).status == CONFLICT
        assert s2.read10(8, 1, BS).status == CONFLICT

        # PREEMPT through B: A's registration is gone; A's nexus hears 2A/05 (or 2A/03) first.
        assert prout(s2, 4, K2, K1, WE_RO).status == GOOD
        res = s1.read10(8, 1, BS)
        assert res.status == CHECK and asc(res)[:2] == (0x06, 0x2A), res.sense.hex()
        assert read_keys(s1) == [K2]
        assert read_reservation(s1) == (K2, WE_RO)
        assert s1.write10(8, block, BS).status == CONFLICT  # not registered any more
        assert s2.write10(8, block, BS).status == GOOD
        assert prout(s2, 3, K2).status == GOOD  # CLEAR
        assert read_reservation(s1) is None and read_keys(s1) == []
    finally:
        for s in (s1, s2, s3):
            s.close()


def test_scsi2_reserve_and_lun_reset_cross_gateways(pair: tuple[Gateway, Gateway]) -> None:
    a, b = pair
    s1, s2 = login(a, I1), login(b, I2)
    try:
        assert s1.scsi(bytes((0x16, 0, 0, 0, 0, 0))).status == GOOD  # RESERVE(6) via A
        assert s2.scsi(bytes((0x16, 0, 0, 0, 0, 0))).status == CONFLICT
        assert s2.read10(0, 1, BS).status == CONFLICT
        # LOGICAL UNIT RESET through B: releases A's reservation, 29/03 on both gateways.
        assert lun_reset(s2) == 0
        res = s1.scsi(bytes(6))
        assert res.status == CHECK and asc(res) == (0x06, 0x29, 0x03), res.sense.hex()
        res = s2.scsi(bytes(6))
        assert res.status == CHECK and asc(res) == (0x06, 0x29, 0x03), res.sense.hex()
        assert s2.scsi(bytes((0x16, 0, 0, 0, 0, 0))).status == GOOD
        assert s1.read10(0, 1, BS).status == CONFLICT
        s2.logout()  # nexus loss releases it everywhere
        deadline = time.monotonic() + 5
        while s1.read10(0, 1, BS).status == CONFLICT and time.monotonic() < deadline:
            time.sleep(0.02)
        assert s1.read10(0, 1, BS).status == GOOD
    finally:
        s1.close()
        s2.close()


def test_mode_select_d_sense_applies_on_both_gateways(pair: tuple[Gateway, Gateway]) -> None:
    a, b = pair
    s1, s2 = login(a, I1), login(b, I2)
    try:
        cur = s1.scsi(bytes((0x1A, 0x08, 0x0A, 0, 255, 0)), read_len=255)
        assert cur.status == GOOD
        page = bytearray(cur.data[4 : 4 + 12])
        page[0] &= 0x3F
        page[2] |= 0x04  # D_SENSE
        params = bytes(4) + bytes(page)
        sel = s1.scsi(bytes((0x15, 0x10, 0, 0, len(params), 0)), write_data=params)
        assert sel.status == GOOD, sel.sense.hex()
        res = s2.scsi(bytes(6))  # B's nexus: MODE PARAMETERS CHANGED, in descriptor format
        assert res.status == CHECK and res.sense[0] == 0x72, res.sense.hex()
        assert asc(res) == (0x06, 0x2A, 0x01)
        bad = s2.read10(0xFFFFFFF0, 1, BS)  # LBA out of range, descriptor format through B
        assert bad.status == CHECK and bad.sense[0] == 0x72 and asc(bad) == (0x05, 0x21, 0x00)
    finally:
        s1.close()
        s2.close()


def test_compare_and_write_is_atomic_across_gateways(pair: tuple[Gateway, Gateway]) -> None:
    a, b = pair
    s1, s2 = login(a, I1), login(b, I2)
    lba = 100
    try:
        for rnd in range(40):
            base = f"round {rnd}".encode().ljust(BS, b".")
            assert s1.write10(lba, base, BS).status == GOOD
            results: dict[str, int] = {}

            def caw(
                s: Session, who: str, base: bytes = base, results: dict[str, int] = results
            ) -> None:
                new = f"{who} won".encode().ljust(BS, b"!")
                cdb = struct.pack(">BBQ3xBBB", 0x89, 0, lba, 1, 0, 0)
                results[who] = s.scsi(cdb, write_data=base + new).status

            threads = [
                threading.Thread(target=caw, args=(s1, "A")),
                threading.Thread(target=caw, args=(s2, "B")),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sorted(results.values()) == [GOOD, CHECK], (rnd, results)
            winner = next(w for w, st in results.items() if st == GOOD)
            data = s2.read10(lba, 1, BS).data
            assert data.startswith(f"{winner} won".encode()), (rnd, data[:16])
    finally:
        s1.close()
        s2.close()


def test_aptpl_registration_survives_restart_of_every_gateway(
    pair: tuple[Gateway, Gateway],
) -> None:
    a, b = pair
    s1, s2 = login(a, I1), login(b, I2)
    try:
        assert prout(s1, 0, 0, K1).status == GOOD
        assert prout(s2, 0, 0, K2).status == GOOD
    finally:
        s1.close()
        s2.close()
    # One gateway restarting is no power loss: B comes back and sees both registrations.
    b.stop()
    b.start()
    s2 = login(b, I2)
    try:
        assert sorted(read_keys(s2)) == [K1, K2]
        # Now with APTPL (REGISTER of the same key again, APTPL=1) and a WE reservation.
        assert prout(s2, 0, K2, K2, aptpl=True).status == GOOD
        assert prout(s2, 1, K2, 0, WE).status == GOOD
        caps = prin(s2, 2).data
        assert caps[3] & 0x01  # PTPL_A
    finally:
        s2.close()
    a.stop()
    b.stop()  # every gateway down: the next start is a cold start
    a.start()
    b.start()
    s1 = login(a, I1)
    try:
        assert sorted(read_keys(s1)) == [K1, K2]  # APTPL keeps the whole state
        assert read_reservation(s1) == (K2, WE)
        assert s1.write10(0, b"x" * BS, BS).status == CONFLICT
        assert prout(s1, 3, K1).status == GOOD  # CLEAR also drops APTPL
    finally:
        s1.close()
    a.stop()
    b.stop()
    a.start()
    s1 = login(a, I1)
    try:
        assert read_keys(s1) == [] and read_reservation(s1) is None
        assert prout(s1, 0, 0, K1).status == GOOD  # without APTPL: gone after a cold start
    finally:
        s1.close()
    a.stop()
    a.start()
    s1 = login(a, I1)
    try:
        assert read_keys(s1) == []
    finally:
        s1.close()
