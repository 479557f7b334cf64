"""Write data gathered without copying: Data-Out pieces of a real logged-in Connection.

The initiator's byte stream is cut into chunks at arbitrary places (inside headers, inside data
segments) and fed with ``receive_data``; the command handed to the runtime must carry exactly
the bytes that were sent, in buffer-offset order, as views of the chunks that were fed. Broken
first bursts fail the task with CHECK CONDITION, and a failed task keeps none of its data.
"""

from __future__ import annotations

import gc
import itertools
import struct
import weakref
from collections.abc import Iterable, Sequence

import pytest
from conn_stubs import StubPolicy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iscsigw._types import Segments
from iscsigw.iscsi import pdu as P
from iscsigw.iscsi.connection import SENSE_DATA_PHASE, Connection, Timeouts
from iscsigw.iscsi.constants import RESERVED_TAG, Opcode
from iscsigw.iscsi.events import CommandReady, LoginCompleted
from iscsigw.iscsi.framing import PduReader, encode_bytes
from iscsigw.iscsi.keys import TargetSettings
from iscsigw.iscsi.pdu import Pdu
from iscsigw.scsi.task import CHECK_CONDITION, GOOD, ScsiResult

TARGET = "iqn.2026-11.io.iscsigw:gather"
INITIATOR = "iqn.2026-11.io.iscsigw:initiator"


def write10(blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, 0, 0, blocks, 0)


def pattern(n: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed + (i >> 8)) & 0xFF for i in range(n))


class Chunk(bytearray):
    """A received chunk that can be weakly referenced (to see who still holds it)."""


def data_bytes(data: object) -> bytes:
    if isinstance(data, Segments):
        return bytes(data.tobytes())
    assert isinstance(data, bytes | bytearray | memoryview)
    return bytes(data)


def views_of(data: object) -> list[memoryview]:
    parts = data.parts if isinstance(data, Segments) else [data]
    assert all(isinstance(v, memoryview) for v in parts), [type(v) for v in parts]
    return parts  # type: ignore[return-value]


# ---------------------------------------------------------------------------------- harness


class R2T:
    def __init__(self, p: Pdu) -> None:
        assert p.opcode == Opcode.R2T
        self.itt = p.itt
        self.ttt = p.ttt
        self.r2tsn = p.u32(36)
        self.offset = p.u32(40)
        self.length = p.u32(44)

    def __repr__(self) -> str:
        return f"<R2T ttt={self.ttt} sn={self.r2tsn} {self.offset}+{self.length}>"


class Initiator:
    """A logged-in Connection fed with hand-cut byte streams."""

    def __init__(
        self,
        *,
        target: TargetSettings | None = None,
        digests: bool = False,
        **offer: object,
    ) -> None:
        settings = target or TargetSettings()
        policy = StubPolicy(settings, TARGET, tsih=9)
        self.conn = Connection(
            policy, policy, now=0.0, timeouts=Timeouts(login=10, nop_interval=1e6)
        )
        self.reader = PduReader(check_opcode=False)
        self.digests = digests
        self.cmdsn = 1
        self.chunks: list[Chunk] = []
        digest = "CRC32C" if digests else "None"
        keys = {
            "InitiatorName": INITIATOR,
            "SessionType": "Normal",
            "TargetName": TARGET,
            "HeaderDigest": digest,
            "DataDigest": digest,
            "MaxRecvDataSegmentLength": 8192,
            "ImmediateData": "Yes",
            "InitialR2T": "Yes",
            "MaxBurstLength": 262144,
            "FirstBurstLength": 65536,
        }
        keys.update(offer)
        text = "".join(f"{k}={v}\0" for k, v in keys.items())
        req = P.login_request(
            isid=0x023D00000001, itt=0, cmdsn=1, csg=1, nsg=3, transit=True, data=text.encode()
        )
        self.conn.receive_data(encode_bytes(req), 0.0)
        ev = self.conn.next_event()
        assert isinstance(ev, LoginCompleted), ev
        self.params = ev.outcome.params
        (rsp,) = self.sent()
        assert rsp.opcode == Opcode.LOGIN_RSP and rsp.bhs[36] == 0, bytes(rsp.data)
        self.reader.header_digest = self.reader.data_digest = digests

    # -- wire
    def wire(self, pdus: Iterable[Pdu]) -> bytes:
        return b"".join(encode_bytes(p, self.digests, self.digests) for p in pdus)

    def feed_stream(self, stream: bytes, points: Iterable[int] = ()) -> list[object]:
        """``stream`` cut at ``points``, each piece a new Chunk fed on its own; the events."""
        bounds = [0, *sorted({p for p in points if 0 < p < len(stream)}), len(stream)]
        events: list[object] = []
        for a, b in itertools.pairwise(bounds):
            chunk = Chunk(stream[a:b])
            self.chunks.append(chunk)
            self.conn.receive_data(chunk, 0.0)
            while (ev := self.conn.next_event()) is not None:
                events.append(ev)
        return events

    def feed(self, pdus: Iterable[Pdu], points: Iterable[int] = ()) -> list[object]:
        return self.feed_stream(self.wire(pdus), points)

    def sent(self) -> list[Pdu]:
        for buf in self.conn.data_to_send():
            self.reader.feed(bytes(buf))
        out = []
        while (p := self.reader.next_pdu()) is not None:
            out.append(p)
        return out

    def r2ts(self) -> list[R2T]:
        return [R2T(p) for p in self.sent()]

    # -- PDUs
    def command(
        self, itt: int, edtl: int, imm: bytes = b"", *, final: bool = True, blocks: int = 0
    ) -> Pdu:
        sn = self.cmdsn
        self.cmdsn += 1
        return P.scsi_command(
            itt,
            write10(blocks or edtl // 512),
            edtl=edtl,
            cmdsn=sn,
            write=True,
            data=imm,
            final=final,
        )


def data_outs(
    itt: int, ttt: int, payload: bytes, start: int, length: int, seg: int, first_datasn: int = 0
) -> list[Pdu]:
    """The Data-Out PDUs of one sequence: ``payload[start:start+length]`` in ``seg`` pieces."""
    out = []
    for k, off in enumerate(range(start, start + length, seg)):
        n = min(seg, start + length - off)
        out.append(
            P.data_out(
                itt,
                ttt,
                first_datasn + k,
                off,
                payload[off : off + n],
                final=off + n == start + length,
            )
        )
    return out


def check_ready(
    h: Initiator, events: Sequence[object], itt: int, payload: bytes, *, copied: bool = False
) -> CommandReady:
    (ev,) = events
    assert isinstance(ev, CommandReady) and ev.itt == itt and ev.write
    assert len(ev.data) == len(payload)
    assert data_bytes(ev.data) == payload
    if copied:
        return ev
    # No copy: every piece is a view of a chunk that was fed.
    fed = {id(c) for c in h.chunks}
    for v in views_of(ev.data):
        assert id(v.obj) in fed
    return ev


def check_failed(h: Initiator, itt: int) -> None:
    (rsp,) = h.sent()
    assert rsp.opcode == Opcode.SCSI_RSP and rsp.itt == itt
    assert rsp.bhs[3] == CHECK_CONDITION
    assert bytes(rsp.data) == len(SENSE_DATA_PHASE).to_bytes(2, "big") + SENSE_DATA_PHASE
    assert itt not in h.conn.tasks


# ------------------------------------------------------------- immediate + unsolicited + R2T

FBL = 16384
EDTL = 40960


def unsolicited_initiator(digests: bool = False) -> Initiator:
    return Initiator(
        target=TargetSettings(initial_r2t=False, max_recv_data_segment_length=8192),
        digests=digests,
        InitialR2T="No",
        FirstBurstLength=FBL,
        MaxBurstLength=16384,
    )


def all_phases_write(
    h: Initiator, payload: bytes, cut: Iterable[int], cut2: Iterable[int]
) -> list[object]:
    """Immediate 4 KiB + unsolicited Data-Out to FBL, then each R2T answered; returns events."""
    edtl = len(payload)
    first = [
        h.command(0x10, edtl, payload[:4096], final=False),
        *data_outs(0x10, RESERVED_TAG, payload, 4096, FBL - 4096, 4096),
    ]
    assert h.feed(first, cut) == []
    (r2t,) = h.r2ts()
    assert (r2t.offset, r2t.length) == (FBL, 16384)
    assert h.feed(data_outs(0x10, r2t.ttt, payload, r2t.offset, r2t.length, 8192), cut2) == []
    (r2t2,) = h.r2ts()
    assert (r2t2.offset, r2t2.length) == (FBL + 16384, edtl - FBL - 16384)
    return h.feed(data_outs(0x10, r2t2.ttt, payload, r2t2.offset, r2t2.length, 8192), cut2)


@pytest.mark.parametrize("digests", [False, True])
@pytest.mark.parametrize(
    "cut",
    [
        [],  # every phase in one chunk
        [30],  # the command's BHS split
        [48 + 100],  # its immediate data split
        [48 + 4096 + 20, 48 + 4096 + 48 + 1000],  # a Data-Out header and data split
        list(range(1000, 20000, 1000)),
        list(range(1, 60)) + list(range(4000, 4200)),  # byte by byte in places
    ],
)
def test_immediate_unsolicited_and_solicited_in_pieces(digests: bool, cut: list[int]) -> None:
    h = unsolicited_initiator(digests=digests)
    assert not h.params.initial_r2t and h.params.first_burst_length == FBL
    payload = pattern(EDTL, 3)
    events = all_phases_write(h, payload, cut, [x + 7 for x in cut])
    ev = check_ready(h, events, 0x10, payload)
    assert isinstance(ev.data, Segments)
    h.conn.complete_command(0x10, ScsiResult(GOOD), EDTL)
    (rsp,) = h.sent()
    assert rsp.opcode == Opcode.SCSI_RSP and rsp.bhs[3] == GOOD


def test_write_byte_by_byte() -> None:
    h = unsolicited_initiator()
    payload = pattern(EDTL, 4)
    every = range(1, 1 << 16)
    events = all_phases_write(h, payload, every, every)
    ev = check_ready(h, events, 0x10, payload)
    assert isinstance(ev.data, Segments)
    assert len(ev.data.parts) == EDTL  # one view per fed byte: nothing was joined


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.lists(st.integers(1, FBL + 4 * 48), max_size=20),
    cut2=st.lists(st.integers(1, 16384 + 2 * 48), max_size=20),
    digests=st.booleans(),
)
def test_any_cut_of_a_write_gathers_the_sent_bytes(
    cut: list[int], cut2: list[int], digests: bool
) -> None:
    h = unsolicited_initiator(digests=digests)
    payload = pattern(EDTL, 5)
    check_ready(h, all_phases_write(h, payload, cut, cut2), 0x10, payload)


def test_whole_write_in_one_split_command_pdu() -> None:
    """Immediate data == EDTL, its PDU split in three: the PDU's Segments go straight through."""
    h = Initiator()
    payload = pattern(8192, 6)
    events = h.feed([h.command(0x11, 8192, payload)], [40, 48 + 3000, 48 + 6000])
    ev = check_ready(h, events, 0x11, payload)
    assert isinstance(ev.data, Segments) and len(ev.data.parts) == 3
    assert [v.obj for v in ev.data.parts] == h.chunks[1:]
    assert all(v.obj is c for v, c in zip(ev.data.parts, h.chunks[1:], strict=True))


def test_immediate_data_beyond_edtl_in_pieces_is_cut() -> None:
    h = Initiator()
    payload = pattern(4096, 7)
    events = h.feed([h.command(0x12, 3072, payload, blocks=6)], [48 + 1000, 48 + 2000])
    check_ready(h, events, 0x12, payload[:3072], copied=True)


# ------------------------------------------------------------------- MaxOutstandingR2T = 2


def two_r2t_initiator() -> Initiator:
    return Initiator(
        target=TargetSettings(max_outstanding_r2t=2),
        MaxOutstandingR2T=2,
        MaxBurstLength=8192,
        ImmediateData="No",
    )


def test_max_outstanding_r2t_is_negotiable() -> None:
    h = two_r2t_initiator()
    assert h.params.max_outstanding_r2t == 2 and h.params.max_burst_length == 8192


@pytest.mark.parametrize("cut", [[], [10, 100, 5000, 9000, 20000]])
def test_interleaved_bursts_are_gathered_in_offset_order(cut: list[int]) -> None:
    h = two_r2t_initiator()
    payload = pattern(32768, 8)
    assert h.feed([h.command(0x20, 32768)]) == []
    a, b = h.r2ts()  # two bursts solicited at once
    assert (a.offset, a.length, b.offset, b.length) == (0, 8192, 8192, 8192)
    a0, a1 = data_outs(0x20, a.ttt, payload, 0, 8192, 4096)
    b0, b1 = data_outs(0x20, b.ttt, payload, 8192, 8192, 4096)
    # The second burst's data first, the first burst's interleaved with it.
    assert h.feed([b0, a0, b1], cut) == []
    (c,) = h.r2ts()  # burst b done: one more solicited
    assert (c.offset, c.length) == (16384, 8192)
    assert h.feed([a1]) == []
    (d,) = h.r2ts()
    assert (d.offset, d.length) == (24576, 8192)
    d0, d1 = data_outs(0x20, d.ttt, payload, 24576, 8192, 4096)
    cs = data_outs(0x20, c.ttt, payload, 16384, 8192, 2048)
    c0, c1 = cs[:2], cs[2:]
    assert h.feed([d0, *c0, d1], [x + 3 for x in cut]) == []
    events = h.feed(c1, [100, 2100])
    ev = check_ready(h, events, 0x20, payload)
    assert isinstance(ev.data, Segments)
    # In offset order, each view where its bytes belong.
    pos = 0
    for v in ev.data.parts:
        assert bytes(v) == payload[pos : pos + v.nbytes]
        pos += v.nbytes
    assert pos == 32768


# ------------------------------------------------------------------ short first burst (F bit)


def test_first_burst_ended_early_fails_the_task() -> None:
    """EDTL < FirstBurstLength: the unsolicited burst must run to EDTL."""
    h = unsolicited_initiator()
    payload = pattern(8192, 9)
    cmd = h.command(0x30, 8192, final=False)
    early = P.data_out(0x30, RESERVED_TAG, 0, 0, payload[:4096], final=True)
    assert h.feed([cmd, early], [60, 48 + 48 + 100]) == []
    check_failed(h, 0x30)


def test_first_burst_ended_early_after_immediate_data_fails_the_task() -> None:
    h = unsolicited_initiator()
    payload = pattern(32768, 10)
    cmd = h.command(0x31, 32768, payload[:2048], final=False)
    early = P.data_out(0x31, RESERVED_TAG, 0, 2048, payload[2048:8192], final=True)
    assert h.feed([cmd, early], [2000]) == []
    (r2t,) = h.r2ts()  # the part past the first burst was solicited at once
    assert (r2t.offset, r2t.length) == (FBL, 16384)
    # The failure is reported when the last outstanding sequence ends.
    assert h.feed(data_outs(0x31, r2t.ttt, payload, FBL, 16384, 8192)) == []
    check_failed(h, 0x31)


def test_first_burst_ended_at_first_burst_length_succeeds() -> None:
    h = unsolicited_initiator()
    payload = pattern(32768, 11)
    first = [
        h.command(0x32, 32768, payload[:1024], final=False),
        *data_outs(0x32, RESERVED_TAG, payload, 1024, FBL - 1024, 5000),
    ]
    assert h.feed(first, [77]) == []
    (r2t,) = h.r2ts()
    events = h.feed(data_outs(0x32, r2t.ttt, payload, FBL, 16384, 8192))
    check_ready(h, events, 0x32, payload)


def test_first_burst_ended_at_edtl_below_first_burst_length_succeeds() -> None:
    h = unsolicited_initiator()
    payload = pattern(8192, 15)
    stream = [
        h.command(0x34, 8192, final=False),
        *data_outs(0x34, RESERVED_TAG, payload, 0, 8192, 3000),
    ]
    events = h.feed(stream, [48 + 48 + 1500, 48 + 2 * 48 + 3000 + 10])
    assert h.sent() == []  # nothing solicited: the first burst is all of it
    check_ready(h, events, 0x34, payload)


def test_failed_task_itt_is_free_again() -> None:
    h = unsolicited_initiator()
    payload = pattern(8192, 12)
    h.feed([h.command(0x33, 8192, final=False)])
    h.feed([P.data_out(0x33, RESERVED_TAG, 0, 0, payload[:512], final=True)])
    check_failed(h, 0x33)
    events = h.feed([h.command(0x33, 8192, payload)])
    check_ready(h, events, 0x33, payload)


# ------------------------------------------------------------ a failed task drops its parts


def _alive(refs: Sequence[weakref.ref[Chunk]]) -> list[int]:
    gc.collect()
    return [i for i, r in enumerate(refs) if r() is not None]


def _ping(h: Initiator) -> None:
    """A NOP-Out in its own chunk: the reader lets go of the previous chunk."""
    nop = P.generic_request(Opcode.NOP_OUT, 0x80, itt=0x77, cmdsn=h.cmdsn, immediate=True)
    h.feed([nop])
    h.sent()


@pytest.mark.parametrize("how", ["bad_datasn", "bad_offset", "short_first_burst"])
def test_failed_task_releases_received_chunks(how: str) -> None:
    h = unsolicited_initiator()
    payload = pattern(32768, 13)
    h.feed([h.command(0x40, 32768, payload[:4096], final=False)], [48 + 10, 48 + 2000])
    unsolicited = data_outs(0x40, RESERVED_TAG, payload, 4096, FBL - 4096, 4096)
    if how == "short_first_burst":
        unsolicited = unsolicited[:1]
        unsolicited[0].bhs[1] |= 0x80
    h.feed(unsolicited, [100, 3000])
    (r2t,) = h.r2ts()
    solicited = data_outs(0x40, r2t.ttt, payload, FBL, 16384, 4096)
    if how == "bad_datasn":
        struct.pack_into(">I", solicited[1].bhs, 36, 7)
    elif how == "bad_offset":
        struct.pack_into(">I", solicited[2].bhs, 40, FBL + 100)
    h.feed(solicited[:-1], [50, 4000, 9000])
    refs = [weakref.ref(c) for c in h.chunks]
    h.chunks.clear()
    task = h.conn.tasks[0x40]
    assert task.parts is not None and task.parts  # still waiting: data held so far
    assert h.feed(solicited[-1:]) == []
    check_failed(h, 0x40)
    assert task.parts is None
    _ping(h)
    del task
    assert _alive(refs) == []


def test_completed_task_releases_chunks_once_the_runtime_is_done() -> None:
    h = unsolicited_initiator()
    payload = pattern(EDTL, 14)
    events = all_phases_write(h, payload, [100, 5000], [200, 300])
    check_ready(h, events, 0x10, payload)
    refs = [weakref.ref(c) for c in h.chunks]
    h.chunks.clear()
    _ping(h)
    assert _alive(refs) != []  # the CommandReady's data still refers to them
    h.conn.complete_command(0x10, ScsiResult(GOOD), EDTL)
    del events
    assert _alive(refs) == []
