"""``Connection.complete_good`` byte by byte, and the in-order hot path of ``_dispatch``.

A real sans-IO ``Connection`` is logged in with hand-built initiator PDUs; the replies are
checked against headers spelled out here from RFC 7143 (§11.7 SCSI Data-In, §11.4 SCSI
Response), and against what the general ``complete_command`` sends for the same outcome.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conn_stubs import StubPolicy

from iscsigw._types import FileSlice, Payload
from iscsigw.iscsi import pdu as P
from iscsigw.iscsi.connection import Connection
from iscsigw.iscsi.constants import RESERVED_TAG, Opcode, TmfFunction, TmfResponse
from iscsigw.iscsi.digest import crc32c
from iscsigw.iscsi.events import CommandReady, LoginCompleted, TaskManagementRequested
from iscsigw.iscsi.framing import PduReader, encode_bytes
from iscsigw.iscsi.keys import TargetSettings
from iscsigw.scsi.task import GOOD, ScsiResult

TARGET = "iqn.2026-11.io.iscsigw:complete-good"
INITIATOR = "iqn.2026-11.io.iscsigw:initiator"
DEPTH = TargetSettings().cmdsn_depth
FFFFFFFF = 0xFFFFFFFF

DATA_IN, SCSI_RSP, R2T = 0x25, 0x21, 0x31
LUN1 = bytes([0, 1, 0, 0, 0, 0, 0, 0])


def read10(lba: int, n: int) -> bytes:
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, n, 0)


def write10(lba: int, n: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, n, 0)


def received(data: Any) -> bytes:
    """The bytes of a command's Data-Out, however the connection gathered them."""
    tobytes = getattr(data, "tobytes", None)  # memoryview, or data left in pieces
    return bytes(tobytes()) if callable(tobytes) else bytes(data)


def pattern(n: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed + (i >> 8)) & 0xFF for i in range(n))


# ------------------------------------------------------------------------------- expectations


def data_in_hdr(
    *,
    flags: int,
    dsl: int,
    lun: bytes,
    itt: int,
    statsn: int,
    expcmdsn: int,
    maxcmdsn: int,
    status: int = 0,
    datasn: int = 0,
    offset: int = 0,
    residual: int = 0,
) -> bytes:
    """A SCSI Data-In BHS (RFC 7143 §11.7), from the field table."""
    h = bytearray(48)
    h[0] = DATA_IN
    h[1] = flags
    h[3] = status
    h[4] = 0  # TotalAHSLength
    h[5:8] = dsl.to_bytes(3, "big")
    h[8:16] = lun
    h[16:20] = itt.to_bytes(4, "big")
    h[20:24] = FFFFFFFF.to_bytes(4, "big")  # Target Transfer Tag
    h[24:28] = statsn.to_bytes(4, "big")
    h[28:32] = expcmdsn.to_bytes(4, "big")
    h[32:36] = maxcmdsn.to_bytes(4, "big")
    h[36:40] = datasn.to_bytes(4, "big")
    h[40:44] = offset.to_bytes(4, "big")
    h[44:48] = residual.to_bytes(4, "big")
    return bytes(h)


def scsi_rsp_hdr(
    *,
    itt: int,
    statsn: int,
    expcmdsn: int,
    maxcmdsn: int,
    flags: int = 0x80,
    status: int = GOOD,
    exp_datasn: int = 0,
    residual: int = 0,
    dsl: int = 0,
) -> bytes:
    """A SCSI Response BHS (RFC 7143 §11.4), from the field table."""
    h = bytearray(48)
    h[0] = SCSI_RSP
    h[1] = flags
    h[2] = 0  # Response: Command Completed at Target
    h[3] = status
    h[5:8] = dsl.to_bytes(3, "big")
    h[16:20] = itt.to_bytes(4, "big")
    h[24:28] = statsn.to_bytes(4, "big")
    h[28:32] = expcmdsn.to_bytes(4, "big")
    h[32:36] = maxcmdsn.to_bytes(4, "big")
    h[36:40] = exp_datasn.to_bytes(4, "big")
    h[44:48] = residual.to_bytes(4, "big")
    return bytes(h)


# ---------------------------------------------------------------------------------- harness


def _random(n: int) -> bytes:
    return bytes.fromhex("3456789a")[:n].ljust(n, b"\x5a")


class Initiator:
    """Logs a real Connection in and talks to it with encoded PDUs."""

    def __init__(
        self,
        *,
        mrdsl: int = 8192,
        max_burst: int = 262144,
        first_burst: int = 65536,
        immediate_data: bool = True,
        initial_r2t: bool = True,
        digests: bool = False,
        cmdsn: int = 1,
    ) -> None:
        policy = StubPolicy(TargetSettings(), TARGET, tsih=7)
        self.conn = Connection(policy, policy, now=0.0, random_bytes=_random)
        self.digests = digests
        self.cmdsn = cmdsn
        digest = "CRC32C" if digests else "None"
        keys = (
            f"InitiatorName={INITIATOR}\0SessionType=Normal\0TargetName={TARGET}\0"
            f"HeaderDigest={digest}\0DataDigest={digest}\0MaxRecvDataSegmentLength={mrdsl}\0"
            f"ImmediateData={'Yes' if immediate_data else 'No'}\0"
            f"InitialR2T={'Yes' if initial_r2t else 'No'}\0"
            f"MaxBurstLength={max_burst}\0FirstBurstLength={first_burst}\0"
        )
        self.conn.receive_data(
            encode_bytes(
                P.login_request(
                    isid=0x023D00000001,
                    itt=0,
                    cmdsn=self.cmdsn,
                    csg=1,
                    nsg=3,
                    transit=True,
                    data=keys.encode(),
                )
            ),
            0.0,
        )
        ev = self.conn.next_event()
        assert isinstance(ev, LoginCompleted), ev
        (rsp,) = self.pdus(digests=False)
        assert rsp.opcode == Opcode.LOGIN_RSP and rsp.bhs[36] == 0, bytes(rsp.data)
        p = ev.outcome.params
        assert p.max_xmit_data_segment_length == mrdsl
        assert p.max_burst_length == max_burst
        assert (p.header_digest, p.data_digest) == (digests, digests)

    # -- sending
    def feed(self, *pdus: P.Pdu) -> list[CommandReady]:
        self.conn.receive_data(
            b"".join(encode_bytes(p, self.digests, self.digests) for p in pdus), 0.0
        )
        events: list[CommandReady] = []
        while (ev := self.conn.next_event()) is not None:
            assert isinstance(ev, CommandReady), ev
            events.append(ev)
        return events

    def command(
        self,
        itt: int,
        cdb: bytes,
        edtl: int,
        *,
        read: bool = False,
        write: bool = False,
        data: bytes = b"",
        lun: bytes = bytes(8),
        cmdsn: int | None = None,
        immediate: bool = False,
    ) -> P.Pdu:
        if cmdsn is None:
            cmdsn = self.cmdsn
            if not immediate:
                self.cmdsn = (self.cmdsn + 1) & FFFFFFFF
        return P.scsi_command(
            itt,
            cdb,
            edtl=edtl,
            cmdsn=cmdsn,
            read=read,
            write=write,
            data=data,
            lun=lun,
            immediate=immediate,
        )

    def cmd(self, itt: int, cdb: bytes, edtl: int, **kw: object) -> list[CommandReady]:
        return self.feed(self.command(itt, cdb, edtl, **kw))  # type: ignore[arg-type]

    # -- receiving
    def raw(self) -> bytes:
        out = self.conn.data_to_send()
        assert not any(isinstance(x, FileSlice) for x in out)
        return b"".join(bytes(x) for x in out)  # type: ignore[arg-type]

    def pdus(self, digests: bool | None = None) -> list[P.Pdu]:
        reader = PduReader(check_opcode=False)
        reader.header_digest = reader.data_digest = self.digests if digests is None else digests
        reader.feed(self.raw())
        out = []
        while (p := reader.next_pdu()) is not None:
            out.append(p)
        assert reader.buffered == 0
        return out

    def window(self) -> tuple[int, int]:
        """(ExpCmdSN, MaxCmdSN) the target should report with no task outstanding."""
        exp = self.conn.expcmdsn
        return exp, (exp + DEPTH - 1) & FFFFFFFF


@pytest.fixture
def ini() -> Initiator:
    return Initiator()


# ------------------------------------------------------------------------------- reads


def test_read_4k_is_one_data_in_with_status(ini: Initiator) -> None:
    (ev,) = ini.cmd(0x11, read10(8, 8), 4096, read=True, lun=LUN1)
    assert ev.read and not ev.write and ev.expected_length == 4096 and ev.lun == 1
    assert ev is ini.conn.tasks[0x11]  # the task is the event (one object per command)
    statsn = ini.conn.statsn
    data = pattern(4096)
    ini.conn.complete_good(0x11, data)
    assert ini.conn.statsn == (statsn + 1) & FFFFFFFF
    assert 0x11 not in ini.conn.tasks
    exp, maxsn = ini.window()
    assert exp == 2 and maxsn == 2 + DEPTH - 1
    expected = data_in_hdr(
        flags=0x81,  # F + S, no O/U
        dsl=4096,
        lun=LUN1,
        itt=0x11,
        statsn=statsn,
        expcmdsn=exp,
        maxcmdsn=maxsn,
    )
    assert ini.raw() == expected + data
    # The next reply takes the next StatSN.
    ini.cmd(0x12, read10(0, 1), 512, read=True)
    ini.conn.complete_good(0x12, bytes(512))
    (p,) = ini.pdus()
    assert p.opcode == Opcode.DATA_IN and p.u32(24) == statsn + 1
    assert ini.conn.statsn == statsn + 2
    assert (p.u32(28), p.u32(32)) == (3, 3 + DEPTH - 1)


def test_sequence_numbers_wrap() -> None:
    ini = Initiator(cmdsn=FFFFFFFF)
    ini.conn.statsn = FFFFFFFF
    (ev,) = ini.cmd(1, read10(0, 1), 512, read=True)  # CmdSN 0xFFFFFFFF, in order
    assert ev.cmdsn == FFFFFFFF and ini.conn.expcmdsn == 0
    ini.conn.complete_good(1, bytes(512))
    assert ini.conn.statsn == 0
    (p,) = ini.pdus()
    assert (p.u32(24), p.u32(28), p.u32(32)) == (FFFFFFFF, 0, DEPTH - 1)
    (ev,) = ini.cmd(2, write10(0, 1), 512, write=True, data=bytes(512))
    assert ev.cmdsn == 0 and ini.conn.expcmdsn == 1
    ini.conn.complete_good(2)
    assert ini.raw() == scsi_rsp_hdr(itt=2, statsn=0, expcmdsn=1, maxcmdsn=DEPTH)


def test_read_of_exactly_max_xmit_and_odd_sizes(ini: Initiator) -> None:
    # MaxRecvDataSegmentLength=8192: 8 KiB still fits one PDU.
    ini.cmd(1, read10(0, 16), 8192, read=True)
    statsn = ini.conn.statsn
    data = pattern(8192, 3)
    ini.conn.complete_good(1, data)
    exp, maxsn = ini.window()
    hdr = data_in_hdr(
        flags=0x81, dsl=8192, lun=bytes(8), itt=1, statsn=statsn, expcmdsn=exp, maxcmdsn=maxsn
    )
    assert ini.raw() == hdr + data
    # A length that is not a multiple of 4 is padded.
    ini.cmd(2, bytes(16), 510, read=True)
    data = pattern(510, 5)
    ini.conn.complete_good(2, data)
    exp, maxsn = ini.window()
    hdr = data_in_hdr(
        flags=0x81, dsl=510, lun=bytes(8), itt=2, statsn=statsn + 1, expcmdsn=exp, maxcmdsn=maxsn
    )
    assert ini.raw() == hdr + data + b"\0\0"


def test_read_larger_than_max_xmit_is_split(ini: Initiator) -> None:
    ini = Initiator(mrdsl=4096)
    ini.cmd(0x21, read10(0, 32), 16384, read=True, lun=LUN1)
    statsn = ini.conn.statsn
    data = pattern(16384, 9)
    ini.conn.complete_good(0x21, data)
    assert ini.conn.statsn == statsn + 1
    pdus = ini.pdus()
    assert [p.opcode for p in pdus] == [Opcode.DATA_IN] * 4
    assert [p.data_length for p in pdus] == [4096] * 4
    assert [p.u32(36) for p in pdus] == [0, 1, 2, 3]  # DataSN
    assert [p.u32(40) for p in pdus] == [0, 4096, 8192, 12288]  # Buffer Offset
    assert [p.flags for p in pdus] == [0x00, 0x00, 0x00, 0x81]  # status on the last only
    assert all(bytes(p.bhs[8:16]) == LUN1 and p.itt == 0x21 for p in pdus)
    assert all(p.ttt == RESERVED_TAG and p.u32(44) == 0 for p in pdus)
    last = pdus[-1]
    exp, maxsn = ini.window()
    assert last.bhs[3] == GOOD and last.u32(24) == statsn
    assert (last.u32(28), last.u32(32)) == (exp, maxsn)
    assert b"".join(bytes(p.data) for p in pdus) == data


def test_read_larger_than_max_burst_is_split_at_the_burst(ini: Initiator) -> None:
    ini = Initiator(mrdsl=16384, max_burst=8192, first_burst=8192)
    ini.cmd(3, read10(0, 24), 12288, read=True)
    statsn = ini.conn.statsn
    data = pattern(12288, 4)
    ini.conn.complete_good(3, data)
    pdus = ini.pdus()
    assert [p.data_length for p in pdus] == [8192, 4096]
    assert [p.flags for p in pdus] == [0x80, 0x81]  # F at the burst boundary, S on the last
    assert [p.u32(36) for p in pdus] == [0, 1]
    assert pdus[1].u32(24) == statsn and ini.conn.statsn == statsn + 1
    assert b"".join(bytes(p.data) for p in pdus) == data


def test_read_of_fewer_bytes_than_edtl_reports_underflow(ini: Initiator) -> None:
    ini.cmd(4, read10(0, 8), 4096, read=True, lun=LUN1)
    statsn = ini.conn.statsn
    data = pattern(2048, 6)
    ini.conn.complete_good(4, data)
    exp, maxsn = ini.window()
    expected = data_in_hdr(
        flags=0x83,  # F + S + U
        dsl=2048,
        lun=LUN1,
        itt=4,
        statsn=statsn,
        expcmdsn=exp,
        maxcmdsn=maxsn,
        residual=2048,
    )
    assert ini.raw() == expected + data
    assert ini.conn.statsn == statsn + 1


def test_read_of_more_bytes_than_edtl_reports_overflow(ini: Initiator) -> None:
    ini.cmd(5, read10(0, 16), 4096, read=True)
    statsn = ini.conn.statsn
    data = pattern(8192, 7)
    ini.conn.complete_good(5, data)
    exp, maxsn = ini.window()
    expected = data_in_hdr(
        flags=0x85,  # F + S + O
        dsl=4096,
        lun=bytes(8),
        itt=5,
        statsn=statsn,
        expcmdsn=exp,
        maxcmdsn=maxsn,
        residual=4096,
    )
    assert ini.raw() == expected + data[:4096]


def test_read_without_data_is_a_full_underflow(ini: Initiator) -> None:
    ini.cmd(6, read10(0, 8), 4096, read=True)
    statsn = ini.conn.statsn
    ini.conn.complete_good(6)
    exp, maxsn = ini.window()
    expected = scsi_rsp_hdr(
        itt=6,
        statsn=statsn,
        expcmdsn=exp,
        maxcmdsn=maxsn,
        flags=0x82,  # F + U
        residual=4096,
    )
    assert ini.raw() == expected
    assert ini.conn.statsn == statsn + 1


def test_command_without_data(ini: Initiator) -> None:
    ini.cmd(7, bytes(16), 0)  # TEST UNIT READY
    statsn = ini.conn.statsn
    ini.conn.complete_good(7)
    exp, maxsn = ini.window()
    assert ini.raw() == scsi_rsp_hdr(itt=7, statsn=statsn, expcmdsn=exp, maxcmdsn=maxsn)
    # A read CDB with EDTL 0 (R flag set): GOOD, no residual.
    ini.cmd(8, read10(0, 0), 0, read=True)
    ini.conn.complete_good(8)
    exp, maxsn = ini.window()
    assert ini.raw() == scsi_rsp_hdr(itt=8, statsn=statsn + 1, expcmdsn=exp, maxcmdsn=maxsn)


def test_file_slice_is_sent_as_is(ini: Initiator, tmp_path: Path) -> None:
    path = tmp_path / "img"
    data = pattern(4096, 11)
    path.write_bytes(bytes(512) + data)
    with open(path, "rb") as f:
        fs = FileSlice(f.fileno(), 512, 4096)
        ini.cmd(9, read10(1, 8), 4096, read=True)
        statsn = ini.conn.statsn
        ini.conn.complete_good(9, fs)
        out = ini.conn.data_to_send()
        exp, maxsn = ini.window()
        hdr = data_in_hdr(
            flags=0x81, dsl=4096, lun=bytes(8), itt=9, statsn=statsn, expcmdsn=exp, maxcmdsn=maxsn
        )
        assert len(out) == 2 and bytes(out[0]) == hdr  # type: ignore[arg-type]
        assert out[1] is fs  # no copy: sendfile(2) material


def test_digests_cover_the_reply() -> None:
    ini = Initiator(digests=True)
    ini.cmd(0x31, read10(0, 8), 4096, read=True)
    statsn = ini.conn.statsn
    data = pattern(4096, 13)
    ini.conn.complete_good(0x31, data)
    raw = ini.raw()
    exp, maxsn = ini.window()
    hdr = data_in_hdr(
        flags=0x81, dsl=4096, lun=bytes(8), itt=0x31, statsn=statsn, expcmdsn=exp, maxcmdsn=maxsn
    )
    assert raw == hdr + crc32c(hdr).to_bytes(4, "little") + data + crc32c(data).to_bytes(
        4, "little"
    )
    # A write reply carries a header digest and no data segment.
    ini.cmd(0x32, write10(0, 8), 4096, write=True, data=data)
    ini.conn.complete_good(0x32)
    raw = ini.raw()
    exp, maxsn = ini.window()
    hdr = scsi_rsp_hdr(itt=0x32, statsn=statsn + 1, expcmdsn=exp, maxcmdsn=maxsn)
    assert raw == hdr + crc32c(hdr).to_bytes(4, "little")


# ------------------------------------------------------------------------------- writes


def test_write_with_immediate_data(ini: Initiator) -> None:
    data = pattern(4096, 15)
    (ev,) = ini.cmd(0x41, write10(0, 8), 4096, write=True, data=data, lun=LUN1)
    assert ev.write and received(ev.data) == data
    statsn = ini.conn.statsn
    ini.conn.complete_good(0x41)
    exp, maxsn = ini.window()
    # SCSI Response: response 0, GOOD, no residual; the LUN field is reserved there.
    assert ini.raw() == scsi_rsp_hdr(itt=0x41, statsn=statsn, expcmdsn=exp, maxcmdsn=maxsn)
    assert ini.conn.statsn == statsn + 1


def _r2t_write(ini: Initiator, itt: int, data: bytes, imm: int = 0) -> tuple[CommandReady, int]:
    """Send a write whose data beyond ``imm`` bytes of immediate data is solicited by R2Ts;
    returns the event and the number of R2Ts received."""
    edtl = len(data)
    events = ini.cmd(itt, write10(0, edtl // 512), edtl, write=True, data=data[:imm], lun=LUN1)
    r2ts = 0
    while not events:
        (r2t,) = ini.pdus()
        assert r2t.opcode == Opcode.R2T and r2t.itt == itt
        assert r2t.u32(36) == r2ts  # R2TSN
        offset, length = r2t.u32(40), r2t.u32(44)
        r2ts += 1
        pos, datasn = offset, 0
        while pos < offset + length:
            chunk = min(4096, offset + length - pos)
            events += ini.feed(
                P.data_out(
                    itt,
                    r2t.ttt,
                    datasn,
                    pos,
                    data[pos : pos + chunk],
                    final=pos + chunk == offset + length,
                    lun=LUN1,
                )
            )
            pos += chunk
            datasn += 1
    (ev,) = events
    assert received(ev.data) == data
    return ev, r2ts


@pytest.mark.parametrize("imm", [0, 4096])
def test_write_solicited_by_r2ts_reports_their_count(imm: int) -> None:
    ini = Initiator(mrdsl=8192, max_burst=8192, first_burst=8192)
    data = pattern(24576, 17)
    _ev, r2ts = _r2t_write(ini, 0x42, data, imm)
    assert r2ts == 3  # 8K + 8K + 8K, or 4K immediate then 8K + 8K + 4K
    statsn = ini.conn.statsn
    ini.conn.complete_good(0x42)
    exp, maxsn = ini.window()
    expected = scsi_rsp_hdr(itt=0x42, statsn=statsn, expcmdsn=exp, maxcmdsn=maxsn, exp_datasn=r2ts)
    assert ini.raw() == expected


def test_write_with_one_r2t(ini: Initiator) -> None:
    data = pattern(16384, 19)
    _ev, r2ts = _r2t_write(ini, 0x43, data, imm=4096)
    assert r2ts == 1
    statsn = ini.conn.statsn
    ini.conn.complete_good(0x43)
    exp, maxsn = ini.window()
    assert ini.raw() == scsi_rsp_hdr(
        itt=0x43, statsn=statsn, expcmdsn=exp, maxcmdsn=maxsn, exp_datasn=1
    )


# ---------------------------------------------------------------- same bytes as the general path


Scenario = Callable[[Initiator], tuple[int, Payload, ScsiResult, int | None]]


def _read_4k(ini: Initiator) -> tuple[int, Payload, ScsiResult, int | None]:
    ini.cmd(1, read10(0, 8), 4096, read=True, lun=LUN1)
    data = pattern(4096, 21)
    return 1, data, ScsiResult(GOOD, data), None


def _read_split(ini: Initiator) -> tuple[int, Payload, ScsiResult, int | None]:
    ini.cmd(1, read10(0, 64), 32768, read=True)
    data = pattern(32768, 22)
    return 1, data, ScsiResult(GOOD, data), None


def _read_short(ini: Initiator) -> tuple[int, Payload, ScsiResult, int | None]:
    ini.cmd(1, read10(0, 8), 4096, read=True)
    data = pattern(1024, 23)
    return 1, data, ScsiResult(GOOD, data), None


def _read_nothing(ini: Initiator) -> tuple[int, Payload, ScsiResult, int | None]:
    ini.cmd(1, read10(0, 8), 4096, read=True)
    return 1, b"", ScsiResult(GOOD), None


def _write_imm(ini: Initiator) -> tuple[int, Payload, ScsiResult, int | None]:
    ini.cmd(1, write10(0, 8), 4096, write=True, data=pattern(4096, 24))
    return 1, b"", ScsiResult(GOOD), 4096


def _write_r2t(ini: Initiator) -> tuple[int, Payload, ScsiResult, int | None]:
    _r2t_write(ini, 1, pattern(12288, 25))
    return 1, b"", ScsiResult(GOOD), 12288


@pytest.mark.parametrize(
    "scenario",
    [_read_4k, _read_split, _read_short, _read_nothing, _write_imm, _write_r2t],
    ids=["read-4k", "read-split", "read-short", "read-nothing", "write-imm", "write-r2t"],
)
def test_same_bytes_as_complete_command(scenario: Scenario) -> None:
    a, b = Initiator(), Initiator()
    itt, data, result, needed = scenario(a)
    scenario(b)
    assert a.conn.statsn == b.conn.statsn
    a.conn.complete_good(itt, data)
    b.conn.complete_command(itt, result, needed)
    assert a.raw() == b.raw()
    assert a.conn.statsn == b.conn.statsn


# ------------------------------------------------------------------------- nothing to send


def test_aborted_task_gets_nothing(ini: Initiator) -> None:
    ini.cmd(0x51, read10(0, 8), 4096, read=True)
    ini.cmd(0x52, write10(0, 8), 4096, write=True, data=bytes(4096))
    statsn = ini.conn.statsn
    assert sorted(ini.conn.abort_tasks()) == [0x51, 0x52]
    ini.conn.complete_good(0x51, bytes(4096))
    ini.conn.complete_good(0x52)
    assert ini.conn.data_to_send() == []
    assert ini.conn.statsn == statsn


def test_aborted_by_lun_and_by_abort_task(ini: Initiator) -> None:
    ini.cmd(1, read10(0, 8), 4096, read=True, lun=LUN1)
    ini.cmd(2, read10(0, 8), 4096, read=True)
    assert ini.conn.abort_tasks(lun=1) == [1]
    ini.conn.complete_good(1, bytes(4096))
    assert ini.conn.data_to_send() == []
    # ABORT TASK for the other one.
    ini.conn.receive_data(
        encode_bytes(
            P.generic_request(
                Opcode.TMF_REQ,
                0x80 | TmfFunction.ABORT_TASK,
                itt=3,
                cmdsn=ini.cmdsn,
                immediate=True,
                ttt=2,
            )
        ),
        0.0,
    )
    tmf = ini.conn.next_event()
    assert isinstance(tmf, TaskManagementRequested)
    assert ini.conn.abort_task(2, 0, tmf.cmdsn) == TmfResponse.FUNCTION_COMPLETE
    statsn = ini.conn.statsn
    ini.conn.complete_good(2, bytes(4096))
    assert ini.conn.data_to_send() == [] and ini.conn.statsn == statsn


def test_unknown_or_repeated_itt_gets_nothing(ini: Initiator) -> None:
    statsn = ini.conn.statsn
    ini.conn.complete_good(0x999, bytes(512))
    ini.conn.complete_good(0x998)
    assert ini.conn.data_to_send() == [] and ini.conn.statsn == statsn
    ini.cmd(1, read10(0, 1), 512, read=True)
    ini.conn.complete_good(1, bytes(512))
    assert len(ini.pdus()) == 1
    ini.conn.complete_good(1, bytes(512))  # answered already
    assert ini.conn.data_to_send() == [] and ini.conn.statsn == statsn + 1


def test_closed_connection_gets_nothing(ini: Initiator) -> None:
    ini.cmd(1, read10(0, 1), 512, read=True)
    ini.conn.close()
    ini.conn.complete_good(1, bytes(512))
    assert ini.conn.data_to_send() == []


# -------------------------------------------------------------------- CmdSN order, hot path


class _Spy:
    """Counts the PDUs ``_dispatch`` hands to the general ordered handler."""

    def __init__(self, conn: Connection) -> None:
        self.calls: list[int] = []
        inner = conn._handle_ordered

        def spy(pdu: P.Pdu) -> None:
            self.calls.append(pdu.cmdsn)
            inner(pdu)

        conn._handle_ordered = spy  # type: ignore[method-assign]


def test_in_order_commands_take_the_hot_path(ini: Initiator) -> None:
    spy = _Spy(ini.conn)
    events = ini.feed(
        ini.command(1, read10(0, 1), 512, read=True),
        ini.command(2, read10(1, 1), 512, read=True),
        ini.command(3, write10(2, 1), 512, write=True, data=bytes(512)),
    )
    assert [ev.itt for ev in events] == [1, 2, 3]
    assert [ev.cmdsn for ev in events] == [1, 2, 3]
    assert ini.conn.expcmdsn == 4
    assert spy.calls == []  # none went through the general path


def test_out_of_order_command_is_queued_and_delivered_in_order(ini: Initiator) -> None:
    spy = _Spy(ini.conn)
    first = ini.command(1, read10(0, 1), 512, read=True)  # CmdSN 1
    second = ini.command(2, read10(1, 1), 512, read=True)  # CmdSN 2
    assert ini.feed(second) == []  # ahead of ExpCmdSN: held
    assert ini.conn.expcmdsn == 1 and 2 in ini.conn._reorder
    events = ini.feed(first)
    assert [ev.itt for ev in events] == [1, 2]
    assert ini.conn.expcmdsn == 3 and not ini.conn._reorder
    assert spy.calls == [1, 2]
    # Answers carry the window as it is now.
    for itt in (1, 2):
        ini.conn.complete_good(itt, bytes(512))
    pdus = ini.pdus()
    assert [p.itt for p in pdus] == [1, 2]
    assert all(p.u32(28) == 3 for p in pdus)
    # Back in order: the hot path again.
    spy.calls.clear()
    (ev,) = ini.cmd(3, read10(2, 1), 512, read=True)
    assert ev.cmdsn == 3 and spy.calls == []


def test_gap_of_two_is_filled_in_order(ini: Initiator) -> None:
    c1 = ini.command(1, read10(0, 1), 512, read=True)
    c2 = ini.command(2, read10(1, 1), 512, read=True)
    c3 = ini.command(3, read10(2, 1), 512, read=True)
    c4 = ini.command(4, read10(3, 1), 512, read=True)
    assert ini.feed(c3) == []
    # CmdSN 1 is in order, but something waits in the reorder queue: general path, 1 only.
    assert [ev.itt for ev in ini.feed(c1)] == [1]
    assert 3 in ini.conn._reorder and ini.conn.expcmdsn == 2
    assert [ev.itt for ev in ini.feed(c2)] == [2, 3]
    assert not ini.conn._reorder
    assert [ev.itt for ev in ini.feed(c4)] == [4]
    assert ini.conn.expcmdsn == 5


def test_gap_with_batch_delivery(ini: Initiator) -> None:
    c = [ini.command(i, read10(i, 1), 512, read=True) for i in range(1, 6)]
    events = ini.feed(c[2], c[4], c[0], c[3], c[1])
    assert [ev.itt for ev in events] == [1, 2, 3, 4, 5]
    assert [ev.cmdsn for ev in events] == [1, 2, 3, 4, 5]
    assert ini.conn.expcmdsn == 6 and not ini.conn._reorder


def test_immediate_command_does_not_advance_cmdsn(ini: Initiator) -> None:
    (ev,) = ini.cmd(1, bytes(16), 0, immediate=True)
    assert ev.itt == 1 and ini.conn.expcmdsn == 1
    (ev,) = ini.cmd(2, read10(0, 1), 512, read=True)
    assert ev.itt == 2 and ini.conn.expcmdsn == 2


def test_duplicate_and_out_of_window_commands_are_dropped(ini: Initiator) -> None:
    assert [ev.itt for ev in ini.cmd(1, read10(0, 1), 512, read=True)] == [1]
    assert ini.cmd(2, read10(0, 1), 512, read=True, cmdsn=1) == []  # duplicate CmdSN
    assert ini.cmd(3, read10(0, 1), 512, read=True, cmdsn=2 + DEPTH + 10) == []  # beyond Max
    assert ini.conn.data_to_send() == []
    assert ini.conn.expcmdsn == 2
    (ev,) = ini.cmd(4, read10(0, 1), 512, read=True)
    assert ev.itt == 4 and ev.cmdsn == 2


def test_aborted_command_not_yet_arrived_is_skipped(ini: Initiator) -> None:
    # CmdSN 1 is delayed; the initiator aborts it with an immediate TMF carrying CmdSN 2.
    late = ini.command(1, read10(0, 1), 512, read=True)
    ini.conn.receive_data(
        encode_bytes(
            P.generic_request(
                Opcode.TMF_REQ,
                0x80 | TmfFunction.ABORT_TASK,
                itt=9,
                cmdsn=ini.cmdsn,
                immediate=True,
                ttt=1,
            )
        ),
        0.0,
    )
    tmf = ini.conn.next_event()
    assert isinstance(tmf, TaskManagementRequested) and tmf.cmdsn == 2
    assert ini.conn.abort_task(1, 1, tmf.cmdsn) == TmfResponse.FUNCTION_COMPLETE
    # The aborted command arrives in order but must not run.
    assert ini.feed(late) == []
    assert ini.conn.expcmdsn == 2 and 1 not in ini.conn.tasks
    (ev,) = ini.cmd(2, read10(0, 1), 512, read=True)
    assert ev.itt == 2 and ev.cmdsn == 2


def test_command_events_compare_by_identity(ini: Initiator) -> None:
    a, b = ini.feed(
        ini.command(1, read10(0, 1), 512, read=True),
        ini.command(2, read10(0, 1), 512, read=True),
    )
    assert a != b and a == a
    assert len({a, b}) == 2
    assert "itt=0x00000001" in repr(a)
    plain = CommandReady(1, 0, bytes(8), read10(0, 1), 512, True, False, b"", 1, 1)
    assert plain != CommandReady(1, 0, bytes(8), read10(0, 1), 512, True, False, b"", 1, 1)
