"""The target side of one iSCSI connection, sans-IO.

The runtime feeds received bytes with ``receive_data``, drains events with ``next_event``,
writes ``data_to_send()`` to the socket and arms a timer from ``get_timer()``; time enters only
through ``now`` arguments. With MaxConnections=1 (ERL 0) a connection is its session, so the
session's sequencing state (CmdSN window, StatSN, task table) lives here too.

Theory of operation for SCSI commands:
  * Non-immediate PDUs are handled in CmdSN order. A PDU inside the window but ahead of
    ExpCmdSN waits in ``_reorder``; one outside the window is dropped silently (RFC 7143 §4.2.2.1).
  * A write's Data-Out (immediate, unsolicited, solicited by R2T) is gathered into one buffer;
    the command is handed to the runtime only when all of it has arrived, so the SCSI layer
    never sees a partial transfer. When immediate data is the whole transfer (the common 4K
    case) the PDU's own data segment is passed on with no copy.
  * Data-In is cut to the initiator's MaxRecvDataSegmentLength, with F at every MaxBurstLength
    boundary and the status piggybacked on the last PDU when there is no sense data.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .._types import Buffer, FileSlice, Payload, Received, Segments, contiguous
from ..errors import DigestError, LoginError, PduFormatError, PduRejected, ProtocolError
from ..scsi.task import CHECK_CONDITION, GOOD, ScsiResult
from . import pdu as P
from .constants import (
    RESERVED_TAG,
    RSP_OVERFLOW,
    RSP_UNDERFLOW,
    LogoutReason,
    LogoutResponse,
    Opcode,
    RejectReason,
    TmfFunction,
    TmfResponse,
)
from .digest import crc32c
from .discovery import SendTargetsPolicy, TextExchange
from .events import (
    CommandReady,
    ConnectionFailed,
    Event,
    LoginCompleted,
    LogoutRequested,
    TaskManagementRequested,
)
from .framing import PduReader, encode, encode_data_segment
from .login import LoginNegotiator, LoginOutcome, LoginPolicy
from .pdu import Pdu
from .serial import sn_add, sn_in_window, sn_le, sn_lt

LOGIN_MAX_DATA = 65536
_U32 = struct.Struct(">I")


# Fixed sense for the errors the transport itself reports (SPC-4 §4.5.3).
def _fixed_sense(key: int, asc: int, ascq: int) -> bytes:
    s = bytearray(18)
    s[0] = 0x70
    s[2] = key
    s[7] = 10
    s[12] = asc
    s[13] = ascq
    return bytes(s)


# INVALID FIELD IN COMMAND INFORMATION UNIT: the CDB asks for more Data-Out than EDTL.
SENSE_OVERFLOW = _fixed_sense(0x05, 0x0E, 0x03)
# DATA PHASE ERROR / protocol service CRC error for broken Data-Out sequences.
SENSE_DATA_PHASE = _fixed_sense(0x0B, 0x4B, 0x00)
SENSE_CRC = _fixed_sense(0x0B, 0x47, 0x05)
SENSE_INTERNAL_FAILURE = _fixed_sense(0x04, 0x44, 0x00)


@dataclass(slots=True)
class Timeouts:
    login: float = 15.0
    nop_interval: float = 5.0  # idle time before the target pings (ceph nopin_timeout)
    nop_response: float = 5.0  # no answer within this closes the connection


def decode_lun(raw: Buffer) -> int:
    """SAM LUN: peripheral (00 LL) or flat (01xx xxxx LL) addressing; others map to 0xFFFF."""
    b0 = raw[0]
    method = b0 >> 6
    if method == 0:
        return int(raw[1]) if b0 == 0 else 0xFFFF
    if method == 1:
        return ((b0 & 0x3F) << 8) | raw[1]
    return 0xFFFF


# Shared by every task that never solicits Data-Out; replaced (never mutated) when it does.
_NO_SEQUENCES: dict[int, tuple[int, int, int]] = {}
_NO_DATASN: dict[int, int] = {}


class _Task(CommandReady):
    """One SCSI command in flight: the event the runtime gets, plus the transfer state.

    A slots class: one is made per I/O. The Data-Out bookkeeping of solicited transfers
    (``outstanding``, ``expected_datasn``) starts as shared empty dicts and gets its own only
    when R2Ts are issued.
    """

    __slots__ = (
        "datain_pdus",
        "expected_datasn",
        "failed",
        "next_r2t_offset",
        "outstanding",
        "parts",
        "r2tsn",
        "received",
        "unsolicited_limit",
    )

    def __init__(
        self,
        itt: int,
        lun: int,
        lun_bytes: bytes,
        cdb: bytes,
        edtl: int,
        read: bool,
        write: bool,
        attr: int,
        cmdsn: int,
    ) -> None:
        self.itt = itt
        self.lun = lun
        self.lun_bytes = lun_bytes
        self.cdb = cdb
        self.expected_length = edtl
        self.read = read
        self.write = write
        self.data = b""
        self.task_attr = attr
        self.cmdsn = cmdsn
        # Write data gathered so far: (buffer offset, bytes) in arrival order; None when the
        # task is not (or no longer) waiting for Data-Out.
        self.parts: list[tuple[int, Received]] | None = None
        self.received = 0  # bytes of Data-Out received so far
        self.next_r2t_offset = 0  # first byte not yet solicited
        self.r2tsn = 0
        self.outstanding = _NO_SEQUENCES  # ttt -> (offset, length, received)
        self.expected_datasn = _NO_DATASN  # ttt -> next DataSN
        self.unsolicited_limit = 0
        self.failed = False
        self.datain_pdus = 0


class Connection:
    """One target connection: login, then Full Feature Phase."""

    def __init__(
        self,
        policy: LoginPolicy,
        send_targets: SendTargetsPolicy,
        *,
        now: float,
        timeouts: Timeouts | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.policy = policy
        self._send_targets = send_targets
        self.timeouts = timeouts or Timeouts()
        self._random = random_bytes
        self._reader = PduReader(max_data_length=LOGIN_MAX_DATA)
        self._login: LoginNegotiator | None = LoginNegotiator(policy, random_bytes=random_bytes)
        self.outcome: LoginOutcome | None = None
        self._text: TextExchange | None = None
        self._out: list[Payload] = []
        self._events: deque[Event] = deque()
        self._hd = False
        self._dd = False
        self.closed = False
        self._closing_after_flush = False
        # sequencing
        self.statsn = int.from_bytes(random_bytes(4), "big") & 0x7FFFFFFF
        self.expcmdsn = 0
        self._maxcmdsn = 0
        self._depth = policy.settings.cmdsn_depth
        self._reorder: dict[int, Pdu] = {}
        self._skip_cmdsn: set[int] = set()
        self.tasks: dict[int, _Task] = {}
        self._r2t_by_ttt: dict[int, _Task] = {}
        self._aborted_itts: deque[int] = deque(maxlen=256)
        self._next_ttt = 1
        self._max_xmit = 8192
        self._max_burst = 262144
        self._first_burst = 65536
        self._initial_r2t = True
        self._immediate_data = True
        self._ffp_normal = False  # Full Feature Phase of a normal session
        self._max_r2t = 1
        # timers
        self._login_deadline: float | None = now + self.timeouts.login
        self._last_rx = now
        self._ping_deadline: float | None = None
        self._ping_ttt = RESERVED_TAG

    # ------------------------------------------------------------------ I/O surface
    def receive_data(self, data: Buffer, now: float) -> None:
        self._last_rx = now
        self._reader.feed(data)

    def next_event(self) -> Event | None:
        """Process buffered PDUs until an event for the runtime appears or bytes run out."""
        while not self._events:
            if self.closed or self._closing_after_flush:
                return None
            try:
                pdu = self._reader.next_pdu()
            except DigestError as exc:
                self._fail(f"{exc}")
                break
            except PduFormatError as exc:
                self._fail(f"malformed PDU: {exc}")
                break
            if pdu is None:
                break
            try:
                self._dispatch(pdu)
            except PduRejected as exc:
                self._send(P.reject(exc.reason, exc.bhs or pdu.bhs))
            except ProtocolError as exc:
                self._fail(f"protocol error: {exc}")
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> list[Payload]:
        out = self._out
        self._out = []
        return out

    @property
    def data_digest(self) -> bool:
        """True once DataDigest=CRC32C is in force (FileSlice payloads must be materialized)."""
        return self._dd

    @property
    def wants_close(self) -> bool:
        """True once everything queued must be flushed and the socket closed."""
        return self._closing_after_flush or self.closed

    def get_timer(self) -> float | None:
        if self.closed:
            return None
        if self._login_deadline is not None:
            return self._login_deadline
        if self._ping_deadline is not None:
            return self._ping_deadline
        return self._last_rx + self.timeouts.nop_interval

    def handle_timer(self, now: float) -> None:
        if self.closed or self._closing_after_flush:
            return
        if self._login_deadline is not None:
            if now >= self._login_deadline:
                self._fail("login timed out")
            return
        if self._ping_deadline is not None:
            if now >= self._ping_deadline:
                if self._last_rx >= self._ping_deadline - self.timeouts.nop_response:
                    # Traffic arrived after the ping went out: the initiator is alive.
                    self._ping_deadline = None
                    self._ping_ttt = RESERVED_TAG
                else:
                    self._fail("no answer to NOP-In ping")
            return
        if now >= self._last_rx + self.timeouts.nop_interval and self.outcome is not None:
            self._ping_ttt = self._new_ttt()
            self._ping_deadline = now + self.timeouts.nop_response
            self._send(P.nop_in(RESERVED_TAG, self._ping_ttt), advance=False)

    # ------------------------------------------------------------------ runtime → connection
    def complete_command(
        self, itt: int, result: ScsiResult, data_out_needed: int | None = None
    ) -> None:
        """Send the result of a command handed out by a CommandReady event.

        ``data_out_needed`` is what the CDB asked to transfer to the target (for write residuals).
        A result for a task that was aborted meanwhile is dropped.
        """
        task = self.tasks.pop(itt, None)
        if task is None or self.closed:
            return
        self._send_result(task, result, data_out_needed)

    def complete_good(self, itt: int, data: Payload = b"") -> None:
        """GOOD status for a command that transferred exactly its EDTL.

        ``data`` is the Data-In of a read (all EDTL bytes), empty for a write that consumed
        all its Data-Out. The reply of the common I/O without building a ``ScsiResult``;
        anything else is handed to the general ``complete_command`` logic.
        """
        task = self.tasks.pop(itt, None)
        if task is None or self.closed:
            return
        n = len(data)
        edtl = task.expected_length
        if n:
            if n != edtl or not task.read or n > self._max_xmit or n > self._max_burst:
                self._send_result(task, ScsiResult(data=data), None)
                return
            statsn = self.statsn
            self.statsn = (statsn + 1) & 0xFFFFFFFF
            hdr = _DATA_IN_STATUS_HDR.pack(
                Opcode.DATA_IN,
                0x81,
                GOOD,
                n,
                task.lun_bytes,
                itt,
                RESERVED_TAG,
                statsn,
                self.expcmdsn,
                self._maxcmdsn_now(),
                0,
                0,
                0,
            )
            self._emit(hdr, data, n)
            return
        if task.read and edtl:
            self._send_result(task, ScsiResult(), None)
            return
        statsn = self.statsn
        self.statsn = (statsn + 1) & 0xFFFFFFFF
        self._emit(
            _SCSI_RSP_HDR.pack(
                Opcode.SCSI_RSP,
                0x80,
                0,
                GOOD,
                0,
                itt,
                statsn,
                self.expcmdsn,
                self._maxcmdsn_now(),
                task.r2tsn,
                0,
            ),
            b"",
            0,
        )

    def complete_tmf(self, itt: int, response: int) -> None:
        if not self.closed:
            self._send(P.tmf_response(itt, response))
            if self._cold_reset_pending:
                self._closing_after_flush = True

    def complete_logout(self, itt: int) -> None:
        if not self.closed:
            self._send(P.logout_response(itt, LogoutResponse.SUCCESS, 0, 0))
            self._closing_after_flush = True

    def abort_tasks(self, lun: int | None = None) -> list[int]:
        """Forget every task (of ``lun``); returns their ITTs so the runtime can cancel them."""
        itts = [t.itt for t in self.tasks.values() if lun is None or t.lun == lun]
        for itt in itts:
            self._forget(itt)
        return itts

    def abort_task(self, ref_itt: int, ref_cmdsn: int, tmf_cmdsn: int) -> int:
        """ABORT TASK bookkeeping (RFC 7143 §11.5.1); returns the TMF response code."""
        task = self.tasks.get(ref_itt)
        if task is not None:
            self._forget(ref_itt)
            return TmfResponse.FUNCTION_COMPLETE
        if sn_lt(ref_cmdsn, tmf_cmdsn) and sn_le(self.expcmdsn, ref_cmdsn):
            # Not arrived yet: when it does, it counts as received but never runs.
            self._skip_cmdsn.add(ref_cmdsn)
            return TmfResponse.FUNCTION_COMPLETE
        return TmfResponse.TASK_DOES_NOT_EXIST

    def close(self) -> None:
        self.closed = True
        self.tasks.clear()
        self._r2t_by_ttt.clear()

    _cold_reset_pending = False

    def request_close_after_tmf(self) -> None:
        """TARGET COLD RESET: close once the TMF response is out."""
        self._cold_reset_pending = True

    # ------------------------------------------------------------------ output helpers
    def _maxcmdsn_now(self) -> int:
        # The window shrinks as tasks pile up (backpressure), but never below what was granted.
        maxcmdsn = (self.expcmdsn + max(self._depth - len(self.tasks), 1) - 1) & 0xFFFFFFFF
        if sn_lt(maxcmdsn, self._maxcmdsn):
            return self._maxcmdsn
        self._maxcmdsn = maxcmdsn
        return maxcmdsn

    def _stamp(self, bhs: bytearray, advance: bool) -> None:
        P.stamp_sequence(bhs, self.statsn, self.expcmdsn, self._maxcmdsn_now())
        if advance:
            self.statsn = (self.statsn + 1) & 0xFFFFFFFF

    def _emit(self, hdr: bytes, data: Payload, n: int) -> None:
        """Queue a ready 48-byte header and its data segment (digests and padding added)."""
        out = self._out
        out.append(hdr)
        if self._hd:
            out.append(crc32c(hdr).to_bytes(4, "little"))
        if n:
            if self._dd:
                out.extend(encode_data_segment(data, n, True))
            else:
                out.append(data)
                if n & 3:
                    out.append(_PAD[n & 3])

    def _send(self, pdu: Pdu, advance: bool = True) -> None:
        assert isinstance(pdu.bhs, bytearray)
        self._stamp(pdu.bhs, advance)
        self._out.extend(encode(pdu, self._hd, self._dd))

    def _fail(self, reason: str) -> None:
        self._closing_after_flush = True
        self._events.append(ConnectionFailed(reason))

    def _new_ttt(self) -> int:
        ttt = self._next_ttt
        self._next_ttt = (ttt + 1) & 0x7FFFFFFF or 1
        return ttt

    def _forget(self, itt: int) -> None:
        task = self.tasks.pop(itt, None)
        if task is not None:
            for ttt in task.outstanding:
                self._r2t_by_ttt.pop(ttt, None)
            self._aborted_itts.append(itt)

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, pdu: Pdu) -> None:
        if pdu.bhs[0] == Opcode.SCSI_CMD and self._ffp_normal:
            # The hot path: the next in-order, non-immediate SCSI Command of a normal session.
            sn = pdu.cmdsn
            if sn == self.expcmdsn and not self._reorder and not self._skip_cmdsn:
                self.expcmdsn = (sn + 1) & 0xFFFFFFFF
                self._handle_scsi_cmd(pdu)
                return
        op = pdu.opcode
        if self._login is not None:
            self._handle_login(pdu)
            return
        if op == Opcode.DATA_OUT:
            self._handle_data_out(pdu)
            return
        if op == Opcode.LOGIN_REQ:
            raise ProtocolError("Login Request in Full Feature Phase")
        if op == Opcode.SNACK:
            raise PduRejected(RejectReason.PROTOCOL_ERROR, "SNACK at ErrorRecoveryLevel 0")
        if (
            self.outcome is not None
            and self.outcome.session_type == "Discovery"
            and op
            not in (
                Opcode.TEXT_REQ,
                Opcode.LOGOUT_REQ,
                Opcode.NOP_OUT,
            )
        ):
            raise PduRejected(
                RejectReason.COMMAND_NOT_SUPPORTED, "not allowed in a discovery session"
            )
        if pdu.immediate:
            self._handle_ordered(pdu)
            return
        sn = pdu.cmdsn
        if sn == self.expcmdsn:
            self._consume(pdu)
            while self._reorder:
                nxt = self._reorder.pop(self.expcmdsn, None)
                if nxt is None:
                    break
                self._consume(nxt)
            return
        if sn_in_window(sn, self.expcmdsn, self._maxcmdsn) and sn not in self._reorder:
            self._reorder[sn] = pdu
        # else: outside the window (or a duplicate): dropped silently, RFC 7143 §4.2.2.1

    def _consume(self, pdu: Pdu) -> None:
        sn = self.expcmdsn
        self.expcmdsn = sn_add(sn, 1)
        if sn in self._skip_cmdsn:
            self._skip_cmdsn.discard(sn)
            return
        self._handle_ordered(pdu)

    def _handle_ordered(self, pdu: Pdu) -> None:
        op = pdu.opcode
        handler = self._HANDLERS.get(op)
        if handler is None:
            raise PduRejected(RejectReason.COMMAND_NOT_SUPPORTED, f"opcode 0x{op:02x}")
        handler(self, pdu)

    # ------------------------------------------------------------------ login
    def _handle_login(self, pdu: Pdu) -> None:
        assert self._login is not None
        if pdu.opcode != Opcode.LOGIN_REQ:
            raise ProtocolError("only Login Requests are allowed before Full Feature Phase")
        step = self._login.handle(pdu)
        rsp = step.response
        assert isinstance(rsp.bhs, bytearray)
        self.expcmdsn = pdu.cmdsn
        P.stamp_sequence(rsp.bhs, self.statsn, pdu.cmdsn, sn_add(pdu.cmdsn, self._depth - 1))
        self._maxcmdsn = sn_add(pdu.cmdsn, self._depth - 1)
        self.statsn = sn_add(self.statsn, 1)
        self._out.extend(encode(rsp))
        if step.failed:
            self._closing_after_flush = True
            self._events.append(ConnectionFailed("login failed"))
            return
        if step.outcome is not None:
            self._enter_full_feature(step.outcome)

    def _enter_full_feature(self, outcome: LoginOutcome) -> None:
        self._login = None
        self._login_deadline = None
        self.outcome = outcome
        p = outcome.params
        self._hd = self._reader.header_digest = p.header_digest
        self._dd = self._reader.data_digest = p.data_digest
        self._reader.max_data_length = p.max_recv_data_segment_length
        self._max_xmit = p.max_xmit_data_segment_length
        self._max_burst = p.max_burst_length
        self._first_burst = p.first_burst_length
        self._initial_r2t = p.initial_r2t
        self._immediate_data = p.immediate_data
        self._max_r2t = max(1, p.max_outstanding_r2t)
        self._ffp_normal = outcome.session_type == "Normal"
        self._text = TextExchange(
            self._send_targets,
            initiator_name=outcome.initiator_name,
            session_type=outcome.session_type,
            target_name=outcome.target.name if outcome.target is not None else None,
        )
        self._events.append(LoginCompleted(outcome))

    # ------------------------------------------------------------------ FFP handlers
    def _handle_nop_out(self, pdu: Pdu) -> None:
        if pdu.itt == RESERVED_TAG:
            # The answer to our ping (or an unsolicited ping that wants no answer).
            if pdu.ttt == self._ping_ttt:
                self._ping_deadline = None
                self._ping_ttt = RESERVED_TAG
            return
        if pdu.ttt != RESERVED_TAG:
            raise PduRejected(RejectReason.INVALID_PDU_FIELD, "NOP-Out with a TTT and an ITT")
        self._send(P.nop_in(pdu.itt, RESERVED_TAG, pdu.lun_bytes, contiguous(pdu.data)))

    def _handle_text(self, pdu: Pdu) -> None:
        assert self._text is not None
        rsp = self._text.handle(pdu, self._max_xmit, self._new_ttt)
        self._send(rsp)

    def _handle_logout(self, pdu: Pdu) -> None:
        reason = pdu.flags & 0x7F
        if reason == LogoutReason.REMOVE_FOR_RECOVERY:
            self._send(P.logout_response(pdu.itt, LogoutResponse.RECOVERY_NOT_SUPPORTED))
            return
        if reason not in (LogoutReason.CLOSE_SESSION, LogoutReason.CLOSE_CONNECTION):
            raise PduRejected(RejectReason.INVALID_PDU_FIELD, f"logout reason {reason}")
        self._events.append(LogoutRequested(pdu.itt, reason))

    def _handle_tmf(self, pdu: Pdu) -> None:
        function = pdu.flags & 0x7F
        if function == TmfFunction.TARGET_COLD_RESET:
            self._cold_reset_pending = True
        self._events.append(
            TaskManagementRequested(
                itt=pdu.itt,
                function=function,
                lun=decode_lun(pdu.bhs[8:16]),
                ref_itt=pdu.ref_task_tag,
                ref_cmdsn=pdu.ref_cmdsn,
                cmdsn=pdu.cmdsn,
            )
        )

    def _handle_scsi_cmd(self, pdu: Pdu) -> None:
        flags, lun_bytes, itt, edtl, cmdsn, cdb = _SCSI_CMD.unpack_from(pdu.bhs, 1)
        if itt in self.tasks:
            raise PduRejected(RejectReason.TASK_IN_PROGRESS, f"ITT 0x{itt:08x} already in use")
        read = bool(flags & 0x40)
        write = bool(flags & 0x20)
        if pdu.ahs:
            cdb += _extended_cdb(pdu.ahs)
        lun = lun_bytes[1] if lun_bytes[0] == 0 else decode_lun(lun_bytes)
        task = _Task(itt, lun, lun_bytes, cdb, edtl, read, write, flags & 0x07, cmdsn)
        imm = pdu.data
        n_imm = len(imm)
        if n_imm and not write:
            raise PduRejected(RejectReason.PROTOCOL_ERROR, "immediate data on a command without W")
        self.tasks[itt] = task
        if not write or edtl == 0:
            self._ready(task, b"")
            return
        if n_imm > edtl:
            imm = memoryview(contiguous(imm))[:edtl]
            n_imm = edtl
        if n_imm and not self._immediate_data:
            raise PduRejected(RejectReason.PROTOCOL_ERROR, "immediate data was negotiated off")
        task.received = n_imm
        if n_imm == edtl:
            self._ready(task, imm)
            return
        task.parts = [(0, imm)] if n_imm else []
        task.outstanding = {}
        task.expected_datasn = {}
        unsolicited = n_imm
        if not self._initial_r2t and not pdu.final:
            unsolicited = min(self._first_burst, edtl)
        task.unsolicited_limit = unsolicited
        task.next_r2t_offset = unsolicited
        if unsolicited > n_imm:
            task.expected_datasn[RESERVED_TAG] = 0
        self._issue_r2ts(task)

    _HANDLERS: dict[int, Callable[[Connection, Pdu], None]] = {}

    # ------------------------------------------------------------------ write data
    def _issue_r2ts(self, task: _Task) -> None:
        while len(task.outstanding) < self._max_r2t and task.next_r2t_offset < task.expected_length:
            offset = task.next_r2t_offset
            length = min(self._max_burst, task.expected_length - offset)
            ttt = self._new_ttt()
            task.outstanding[ttt] = (offset, length, 0)
            task.expected_datasn[ttt] = 0
            self._r2t_by_ttt[ttt] = task
            task.next_r2t_offset = offset + length
            self._send(
                P.r2t(task.itt, task.lun_bytes, ttt, task.r2tsn, offset, length), advance=False
            )
            task.r2tsn += 1

    def _handle_data_out(self, pdu: Pdu) -> None:
        itt = pdu.itt
        ttt = pdu.ttt
        task = self.tasks.get(itt)
        if task is None or task.parts is None:
            if itt in self._aborted_itts:
                return  # Data-Out still in flight for an aborted task: drain silently
            raise PduRejected(
                RejectReason.INVALID_PDU_FIELD, f"Data-Out for unknown ITT 0x{itt:08x}"
            )
        data = pdu.data
        n = len(data)
        offset = pdu.buffer_offset
        if ttt == RESERVED_TAG:
            # Unsolicited data: only within the first burst.
            expected = task.expected_datasn.get(RESERVED_TAG)
            if expected is None:
                raise PduRejected(RejectReason.PROTOCOL_ERROR, "unsolicited Data-Out not allowed")
            if (
                pdu.datasn != expected
                or offset + n > task.unsolicited_limit
                or offset != task_received_unsolicited(task)
            ):
                task.failed = True
            task.expected_datasn[RESERVED_TAG] = expected + 1
            if not task.failed and n:
                task.parts.append((offset, data))
            task.received += n
            if pdu.final:
                del task.expected_datasn[RESERVED_TAG]
                if task.received != task.unsolicited_limit:
                    task.failed = True  # the first burst must be sent whole (RFC 7143 §13.14)
        else:
            seq = task.outstanding.get(ttt)
            if seq is None or self._r2t_by_ttt.get(ttt) is not task:
                raise PduRejected(
                    RejectReason.INVALID_PDU_FIELD, f"Data-Out with unknown TTT 0x{ttt:08x}"
                )
            start, length, got = seq
            expected = task.expected_datasn[ttt]
            if pdu.datasn != expected or offset != start + got or got + n > length:
                task.failed = True
            elif n and not task.failed:
                task.parts.append((offset, data))
            task.expected_datasn[ttt] = expected + 1
            got += n
            task.received += n
            if pdu.final or got >= length:
                del task.outstanding[ttt]
                del task.expected_datasn[ttt]
                self._r2t_by_ttt.pop(ttt, None)
                if not pdu.final or got != length:
                    task.failed = True
                self._issue_r2ts(task)
            else:
                task.outstanding[ttt] = (start, length, got)
        if (
            not task.outstanding
            and task.next_r2t_offset >= task.expected_length
            and RESERVED_TAG not in task.expected_datasn
        ):
            if task.failed:
                self.tasks.pop(task.itt, None)
                task.parts = None
                self._send_check(task, SENSE_DATA_PHASE)
            else:
                self._ready(task, _gathered(task.parts))

    def _ready(self, task: _Task, data: Received) -> None:
        task.parts = None
        task.data = data
        self._events.append(task)

    # ------------------------------------------------------------------ responses
    def _send_check(self, task: _Task, sense: bytes) -> None:
        self._send(P.scsi_response(task.itt, CHECK_CONDITION, sense=sense, exp_datasn=task.r2tsn))

    def _send_result(self, task: _Task, result: ScsiResult, data_out_needed: int | None) -> None:
        edtl = task.expected_length
        status = result.status
        data = result.data
        n = len(data)
        rsp_flags = 0
        residual = 0
        if task.write and data_out_needed is not None:
            if data_out_needed < edtl:
                rsp_flags, residual = RSP_UNDERFLOW, edtl - data_out_needed
            elif data_out_needed > edtl:
                rsp_flags, residual = RSP_OVERFLOW, data_out_needed - edtl
        send_len = 0
        if n or (task.read and not task.write):
            # Data-In: cut to EDTL; X > EDTL is overflow, X < EDTL underflow.
            if task.read:
                send_len = min(n, edtl)
                if n > edtl:
                    rsp_flags, residual = RSP_OVERFLOW, n - edtl
                elif n < edtl:
                    rsp_flags, residual = RSP_UNDERFLOW, edtl - n
            elif n:
                rsp_flags, residual = RSP_OVERFLOW, n
        if (
            send_len
            and send_len <= self._max_xmit
            and send_len <= self._max_burst
            and status == GOOD
            and not result.sense
        ):
            # The common read: one Data-In carrying data and status (RFC 7143 §11.7).
            statsn = self.statsn
            self.statsn = (statsn + 1) & 0xFFFFFFFF
            hdr = _DATA_IN_STATUS_HDR.pack(
                Opcode.DATA_IN,
                0x81 | rsp_flags,
                status,
                send_len,
                task.lun_bytes,
                task.itt,
                RESERVED_TAG,
                statsn,
                self.expcmdsn,
                self._maxcmdsn_now(),
                0,
                0,
                residual,
            )
            self._emit(hdr, data if send_len == n else _cut(data, send_len), send_len)
            return
        if send_len:
            piggyback = status == GOOD and not result.sense
            self._send_data_in(
                task, data, send_len, status if piggyback else None, rsp_flags, residual
            )
            if piggyback:
                return
        sense = result.sense
        segment = _U16.pack(len(sense)) + sense if sense else b""
        statsn = self.statsn
        self.statsn = (statsn + 1) & 0xFFFFFFFF
        hdr = _SCSI_RSP_HDR.pack(
            Opcode.SCSI_RSP,
            0x80 | rsp_flags,
            0,
            status,
            len(segment),
            task.itt,
            statsn,
            self.expcmdsn,
            self._maxcmdsn_now(),
            task.datain_pdus if task.read else task.r2tsn,
            residual,
        )
        self._emit(hdr, segment, len(segment))

    def _send_data_in(
        self,
        task: _Task,
        data: Payload,
        length: int,
        status: int | None,
        rsp_flags: int,
        residual: int,
    ) -> None:
        file_data = data if isinstance(data, FileSlice) else None
        view = memoryview(b"") if isinstance(data, FileSlice) else memoryview(data)
        seg = self._max_xmit
        burst = self._max_burst
        offset = 0
        datasn = 0
        itt = task.itt
        lun = task.lun_bytes
        while offset < length:
            chunk = min(seg, length - offset, burst - (offset % burst))
            end = offset + chunk
            last = end >= length
            pdu = P.data_in(
                itt,
                lun,
                view[offset:end] if file_data is None else file_data.slice(offset, chunk),
                chunk,
                datasn,
                offset,
                final=last or end % burst == 0,
                status=status if last else None,
                rsp_flags=rsp_flags,
                residual=residual,
            )
            self._send(pdu, advance=last and status is not None)
            datasn += 1
            offset = end
        task.datain_pdus = datasn


# SCSI Command BHS from byte 1: flags, LUN, ITT, EDTL, CmdSN, (ExpStatSN), CDB.
_SCSI_CMD = struct.Struct(">B6x8sIII4x16s")
# Data-In with status: opcode, flags, status, DSL (TotalAHSLength 0), LUN, ITT, TTT, StatSN,
# ExpCmdSN, MaxCmdSN, DataSN, Buffer Offset, Residual Count.
_DATA_IN_STATUS_HDR = struct.Struct(">BBxBI8sIIIIIIII")
# SCSI Response: opcode, flags, response, status, DSL, (LUN), ITT, (SNACK tag), StatSN,
# ExpCmdSN, MaxCmdSN, ExpDataSN, (bidi residual), Residual Count.
_SCSI_RSP_HDR = struct.Struct(">BBBBI8xI4xIIII4xI")
_U16 = struct.Struct(">H")
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")


def _cut(data: Payload, n: int) -> Payload:
    return data.slice(0, n) if isinstance(data, FileSlice) else memoryview(data)[:n]


def _gathered(parts: list[tuple[int, Received]]) -> Received:
    """The Data-Out pieces of a task as one buffer, in buffer-offset order, without copying.

    Every byte of [0, EDTL) arrived exactly once (the sequence checks made sure), so sorting
    by offset is all it takes; with MaxOutstandingR2T=1 they are in order already.
    """
    if len(parts) == 1:
        return parts[0][1]
    if any(parts[i][0] > parts[i + 1][0] for i in range(len(parts) - 1)):
        parts = sorted(parts, key=lambda p: p[0])
    flat: list[Buffer] = []
    for _, piece in parts:
        if isinstance(piece, Segments):
            flat.extend(piece.parts)
        else:
            flat.append(piece)
    return Segments(flat)


def task_received_unsolicited(task: _Task) -> int:
    """Next expected offset of unsolicited data: immediate data plus what has arrived since."""
    return task.received


def _extended_cdb(ahs: bytes) -> bytes:
    # AHS type 1 (extended CDB): 2-byte length, type, reserved, then CDB bytes past 16.
    if len(ahs) >= 4 and ahs[2] == 1:
        length = int.from_bytes(ahs[0:2], "big") - 1
        return bytes(ahs[4 : 4 + max(0, length)])
    return b""


Connection._HANDLERS = {
    Opcode.NOP_OUT: Connection._handle_nop_out,
    Opcode.SCSI_CMD: Connection._handle_scsi_cmd,
    Opcode.TMF_REQ: Connection._handle_tmf,
    Opcode.TEXT_REQ: Connection._handle_text,
    Opcode.LOGOUT_REQ: Connection._handle_logout,
}

__all__ = ["Connection", "LoginError", "Timeouts", "decode_lun"]
