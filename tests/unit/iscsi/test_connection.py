"""Drive the sans-IO target connection with hand-built initiator PDUs; no sockets, no clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conn_stubs import StubPolicy

from iscsigw.iscsi import pdu as P
from iscsigw.iscsi.connection import Connection, Timeouts
from iscsigw.iscsi.constants import RESERVED_TAG, Opcode, TmfFunction, TmfResponse
from iscsigw.iscsi.events import (
    CommandReady,
    ConnectionFailed,
    LoginCompleted,
    LogoutRequested,
    TaskManagementRequested,
)
from iscsigw.iscsi.framing import PduReader, encode_bytes
from iscsigw.iscsi.keys import TargetSettings
from iscsigw.scsi.task import CHECK_CONDITION, GOOD, ScsiResult

TARGET = "iqn.2026-11.io.iscsigw:test"
INITIATOR = "iqn.2026-11.io.iscsigw:initiator"


class Harness:
    def __init__(self, **settings: object) -> None:
        s = TargetSettings(**settings)  # type: ignore[arg-type]
        policy = StubPolicy(s, TARGET, tsih=5)
        self.now = 1000.0
        self.conn = Connection(
            policy,
            policy,
            now=self.now,
            timeouts=Timeouts(login=10, nop_interval=5, nop_response=5),
        )
        self.reader = PduReader(check_opcode=False)
        self.cmdsn = 1

    def feed(self, pdu: P.Pdu, hd: bool = False, dd: bool = False) -> list[object]:
        self.conn.receive_data(encode_bytes(pdu, hd, dd), self.now)
        events = []
        while (ev := self.conn.next_event()) is not None:
            events.append(ev)
        return events

    def sent(self) -> list[P.Pdu]:
        for buf in self.conn.data_to_send():
            self.reader.feed(bytes(buf))
        out = []
        while (p := self.reader.next_pdu()) is not None:
            out.append(p)
        return out

    def login(self, extra: str = "") -> LoginCompleted:
        keys = (
            f"InitiatorName={INITIATOR}\0SessionType=Normal\0TargetName={TARGET}\0"
            "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=4096\0"
            "ImmediateData=Yes\0InitialR2T=Yes\0MaxBurstLength=262144\0FirstBurstLength=65536\0"
            + extra
        )
        req = P.login_request(
            isid=0x023D00000001,
            itt=1,
            cmdsn=self.cmdsn,
            csg=1,
            nsg=3,
            transit=True,
            data=keys.encode(),
        )
        events = self.feed(req)
        rsp = self.sent()
        assert len(rsp) == 1 and rsp[0].opcode == Opcode.LOGIN_RSP
        assert rsp[0].bhs[36] == 0, (
            f"login failed: {rsp[0].bhs[36]:02x}{rsp[0].bhs[37]:02x} {rsp[0].data!r}"
        )
        assert len(events) == 1 and isinstance(events[0], LoginCompleted)
        return events[0]

    def cmd(
        self,
        itt: int,
        cdb: bytes,
        edtl: int,
        *,
        read: bool = False,
        write: bool = False,
        data: bytes = b"",
        final: bool = True,
        cmdsn: int | None = None,
    ) -> list[object]:
        sn = self.cmdsn if cmdsn is None else cmdsn
        if cmdsn is None:
            self.cmdsn += 1
        return self.feed(
            P.scsi_command(
                itt, cdb, edtl=edtl, cmdsn=sn, read=read, write=write, data=data, final=final
            )
        )


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    harness.login()
    yield harness


READ10 = bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 16, 0])
WRITE10_32 = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 32, 0])


def test_login_enters_full_feature(h: Harness) -> None:
    assert h.conn.outcome is not None and h.conn.outcome.tsih == 5


def test_read_is_segmented_with_status_on_last(h: Harness) -> None:
    (ev,) = h.cmd(0x10, READ10, 8192, read=True)
    assert isinstance(ev, CommandReady) and ev.read and ev.expected_length == 8192
    payload = bytes(range(256)) * 32
    h.conn.complete_command(0x10, ScsiResult(GOOD, payload))
    pdus = h.sent()
    assert [p.opcode for p in pdus] == [Opcode.DATA_IN, Opcode.DATA_IN]
    assert [p.data_length for p in pdus] == [4096, 4096]
    assert [p.u32(36) for p in pdus] == [0, 1]  # DataSN
    assert [p.u32(40) for p in pdus] == [0, 4096]  # buffer offset
    assert not pdus[0].flags & 0x01 and pdus[1].flags & 0x81 == 0x81
    assert b"".join(bytes(p.data) for p in pdus) == payload


def test_read_overflow_and_underflow_residuals(h: Harness) -> None:
    h.cmd(1, READ10, 200, read=True)
    h.conn.complete_command(1, ScsiResult(GOOD, bytes(512)))
    (p,) = h.sent()
    assert p.data_length == 200 and p.flags & 0x04 and p.u32(44) == 312
    h.cmd(2, READ10, 1024, read=True)
    h.conn.complete_command(2, ScsiResult(GOOD, bytes(512)))
    (p,) = h.sent()
    assert p.data_length == 512 and p.flags & 0x02 and p.u32(44) == 512


def test_check_condition_sends_sense_in_scsi_response(h: Harness) -> None:
    h.cmd(3, READ10, 8192, read=True)
    sense = bytes([0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0])
    h.conn.complete_command(3, ScsiResult(CHECK_CONDITION, sense=sense))
    (p,) = h.sent()
    assert p.opcode == Opcode.SCSI_RSP and p.bhs[3] == CHECK_CONDITION
    assert bytes(p.data) == len(sense).to_bytes(2, "big") + sense


def test_write_immediate_then_r2t(h: Harness) -> None:
    data = bytes(range(256)) * 64  # 16 KiB
    events = h.cmd(4, WRITE10_32, 16384, write=True, data=data[:4096], final=True)
    assert events == []
    (r2t,) = h.sent()
    assert r2t.opcode == Opcode.R2T and r2t.u32(40) == 4096 and r2t.u32(44) == 12288
    ttt = r2t.ttt
    ev1 = h.feed(P.data_out(4, ttt, 0, 4096, data[4096:8192], final=False))
    assert ev1 == []
    (ev,) = h.feed(P.data_out(4, ttt, 1, 8192, data[8192:], final=True))
    assert isinstance(ev, CommandReady) and bytes(ev.data) == data
    h.conn.complete_command(4, ScsiResult(GOOD), 16384)
    (rsp,) = h.sent()
    assert (
        rsp.opcode == Opcode.SCSI_RSP and rsp.bhs[3] == GOOD and rsp.u32(36) == 1
    )  # ExpDataSN = R2Ts


def test_write_all_immediate_is_not_copied(h: Harness) -> None:
    data = b"\xab" * 4096
    (ev,) = h.cmd(5, WRITE10_32, 4096, write=True, data=data)
    assert isinstance(ev, CommandReady) and bytes(ev.data) == data


def test_bad_datasn_fails_the_write(h: Harness) -> None:
    h.cmd(6, WRITE10_32, 8192, write=True)
    (r2t,) = h.sent()
    h.feed(P.data_out(6, r2t.ttt, 0, 0, bytes(4096), final=False))
    events = h.feed(P.data_out(6, r2t.ttt, 0, 4096, bytes(4096), final=True))
    assert events == []
    (rsp,) = h.sent()
    assert rsp.opcode == Opcode.SCSI_RSP and rsp.bhs[3] == CHECK_CONDITION


def test_write_residual_underflow(h: Harness) -> None:
    (_ev,) = h.cmd(7, WRITE10_32, 4096, write=True, data=bytes(4096))
    h.conn.complete_command(7, ScsiResult(GOOD), 512)
    (rsp,) = h.sent()
    assert rsp.flags & 0x02 and rsp.u32(44) == 4096 - 512


def test_cmdsn_window(h: Harness) -> None:
    start = h.cmdsn
    # Ahead of ExpCmdSN but inside the window: held until the gap is filled.
    assert h.cmd(20, READ10, 0, cmdsn=start + 1) == []
    (first, second) = h.cmd(21, READ10, 0, cmdsn=start)
    assert [first.itt, second.itt] == [21, 20]  # type: ignore[attr-defined]
    # Too high and too low: dropped silently.
    assert h.cmd(22, READ10, 0, cmdsn=start + 10_000) == []
    assert h.cmd(23, READ10, 0, cmdsn=start - 1) == []
    assert h.sent() == []


def test_nop_out_ping_is_echoed(h: Harness) -> None:
    statsn = h.conn.statsn
    h.feed(
        P.generic_request(
            Opcode.NOP_OUT, 0x80, itt=0x99, cmdsn=h.cmdsn, immediate=True, data=b"ping"
        )
    )
    (rsp,) = h.sent()
    assert rsp.opcode == Opcode.NOP_IN and rsp.itt == 0x99 and bytes(rsp.data) == b"ping"
    assert rsp.u32(24) == statsn


def test_target_pings_when_idle_and_drops_silent_initiator(h: Harness) -> None:
    t = h.conn.get_timer()
    assert t is not None and t == pytest.approx(h.now + 5)
    h.conn.handle_timer(t)
    (ping,) = h.sent()
    assert ping.opcode == Opcode.NOP_IN and ping.itt == RESERVED_TAG and ping.ttt != RESERVED_TAG
    t2 = h.conn.get_timer()
    assert t2 is not None
    h.conn.handle_timer(t2)
    assert isinstance(h.conn.next_event(), ConnectionFailed)


def test_ping_answer_keeps_connection(h: Harness) -> None:
    t = h.conn.get_timer()
    assert t is not None
    h.conn.handle_timer(t)
    (ping,) = h.sent()
    h.now = t + 1
    h.feed(
        P.generic_request(
            Opcode.NOP_OUT, 0x80, itt=RESERVED_TAG, ttt=ping.ttt, cmdsn=h.cmdsn, immediate=True
        )
    )
    t2 = h.conn.get_timer()
    assert t2 is not None and t2 > t + 1
    h.conn.handle_timer(t + 5.5)
    assert h.conn.next_event() is None and not h.conn.wants_close


def test_abort_task_drops_response(h: Harness) -> None:
    h.cmd(30, WRITE10_32, 8192, write=True)
    h.sent()
    (tmf,) = h.feed(
        P.generic_request(
            Opcode.TMF_REQ,
            0x80 | TmfFunction.ABORT_TASK,
            itt=31,
            cmdsn=h.cmdsn,
            immediate=True,
            ttt=30,
        )
    )
    assert isinstance(tmf, TaskManagementRequested) and tmf.ref_itt == 30
    assert h.conn.abort_task(30, 0, tmf.cmdsn) == TmfResponse.FUNCTION_COMPLETE
    h.conn.complete_tmf(31, TmfResponse.FUNCTION_COMPLETE)
    (rsp,) = h.sent()
    assert rsp.opcode == Opcode.TMF_RSP and rsp.bhs[2] == 0
    # Data-Out still in flight for the aborted task is drained silently.
    assert h.feed(P.data_out(30, 1, 0, 0, bytes(512), final=True)) == []
    assert h.sent() == []


def test_logout(h: Harness) -> None:
    (ev,) = h.feed(
        P.generic_request(Opcode.LOGOUT_REQ, 0x80, itt=40, cmdsn=h.cmdsn, immediate=True)
    )
    assert isinstance(ev, LogoutRequested) and ev.reason == 0
    h.conn.complete_logout(40)
    (rsp,) = h.sent()
    assert rsp.opcode == Opcode.LOGOUT_RSP and rsp.bhs[2] == 0 and h.conn.wants_close


def test_data_out_for_unknown_itt_is_rejected(h: Harness) -> None:
    h.feed(P.data_out(0x77, 5, 0, 0, bytes(512), final=True))
    (rej,) = h.sent()
    assert (
        rej.opcode == Opcode.REJECT
        and rej.bhs[2] == 0x09
        and bytes(rej.data)[16:20] == (0x77).to_bytes(4, "big")
    )


def test_garbage_before_login_fails_connection() -> None:
    harness = Harness()
    harness.conn.receive_data(b"\x3e" * 48, harness.now)
    assert isinstance(harness.conn.next_event(), ConnectionFailed)


def test_digests_after_login() -> None:
    harness = Harness()
    harness.login(extra="")  # initiator offers None: no digests
    harness2 = Harness()
    keys = (
        f"InitiatorName={INITIATOR}\0SessionType=Normal\0TargetName={TARGET}\0"
        "HeaderDigest=CRC32C\0DataDigest=CRC32C\0"
    )
    harness2.feed(
        P.login_request(isid=1, itt=1, cmdsn=1, csg=1, nsg=3, transit=True, data=keys.encode())
    )
    harness2.sent()
    harness2.reader.header_digest = harness2.reader.data_digest = True
    (ev,) = harness2.feed(P.scsi_command(9, READ10, edtl=512, cmdsn=1, read=True), hd=True, dd=True)
    assert isinstance(ev, CommandReady)
    harness2.conn.complete_command(9, ScsiResult(GOOD, bytes(512)))
    (p,) = harness2.sent()
    assert p.opcode == Opcode.DATA_IN and p.data_length == 512
