"""Pumps one TCP connection through a sans-IO ``iscsi.Connection``.

Callbacks from ``rawsock.RawTransport``, not streams: bytes arrive in ``data_received`` with
no task hop, and the replies of every command that finished in one loop iteration leave in one
``writev`` (``sockwriter``), large reads by sendfile. A command runs eagerly: one that completes
without waiting (a page-cache hit) never becomes a task; one that waits continues as a task, so
a slow backend never stalls the reader (NOP pings keep flowing).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import types
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

from .._types import Buffer, FileSlice, contiguous
from ..iostats import io_counters
from ..iscsi.connection import SENSE_INTERNAL_FAILURE, SENSE_OVERFLOW, Connection
from ..iscsi.constants import TmfFunction, TmfResponse
from ..iscsi.events import (
    CommandReady,
    ConnectionFailed,
    Event,
    LoginCompleted,
    LogoutRequested,
    TaskManagementRequested,
)
from ..scsi.task import CHECK_CONDITION, ITNexus, ScsiCommand, ScsiResult
from .rawsock import RawTransport
from .sockwriter import SocketWriter

if TYPE_CHECKING:
    from ..scsi.lun import LogicalUnit
    from .runtime import GatewayRuntime, SessionView

log = logging.getLogger("iscsigw.conn")


class IscsiProtocol:
    def __init__(self, runtime: GatewayRuntime, portal: str) -> None:
        self.runtime = runtime
        self.portal = portal
        self.loop = asyncio.get_running_loop()
        self.conn: Connection | None = None
        self.transport: RawTransport | None = None
        self.session: SessionView | None = None
        self.nexus: ITNexus | None = None
        self.peer = "?"
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._running: dict[int, asyncio.Task[None]] = {}
        # Commands started on a backend that completes them by callback (start_now).
        self._started: dict[int, CommandReady] = {}
        self._started_idle: asyncio.Future[None] | None = None
        self._closed = False
        self._flush_pending = False
        self._pumping = False
        self._writer: SocketWriter = None  # type: ignore[assignment]  # set in connection_made

    # -- transport callbacks ---------------------------------------------------------------------
    def connection_made(self, transport: RawTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.conn = Connection(
            self.runtime.login_policy_for(self),
            self.runtime.send_targets_policy,
            now=self.loop.time(),
            timeouts=self.runtime.timeouts,
        )
        self.runtime.connections.add(self)
        sock = transport.get_extra_info("socket")
        self._writer = SocketWriter(
            self.loop,
            sock.fileno(),
            on_error=self._write_failed,
            on_pause=transport.pause_reading,
            on_resume=transport.resume_reading,
        )
        self._arm_timer()

    def data_received(self, data: Buffer) -> None:
        conn = self.conn
        if conn is None or self._closed:
            return
        conn.receive_data(data, self.loop.time())
        self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for task in self._running.values():
            task.cancel()
        self._running.clear()
        if self.conn is not None:
            self.conn.close()
        if self._writer is not None:
            self._writer.close()
        self.runtime.connection_gone(self)

    def _write_failed(self, exc: OSError) -> None:
        log.info("connection from %s failed while sending: %s", self.peer, exc.strerror)
        self.abort()

    # -- event pump ---------------------------------------------------------------------------
    def _pump(self) -> None:
        conn = self.conn
        assert conn is not None
        self._pumping = True
        try:
            while True:
                ev = conn.next_event()
                if ev is None:
                    break
                self._handle(ev)
        finally:
            self._pumping = False
        self._flush()

    def _schedule_flush(self) -> None:
        # Replies of commands finishing in the same loop iteration share one send.
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        conn = self.conn
        transport = self.transport
        if conn is None or transport is None or self._closed:
            return
        out = conn.data_to_send()
        if out:
            self._writer.write(out)
        if conn.wants_close:
            self.close()
            return
        self._arm_timer()

    def close(self) -> None:
        # Graceful: everything queued (e.g. a Logout Response) leaves before the FIN.
        if not self._closed and self.transport is not None:
            self._closed = True
            transport = self.transport
            self._writer.when_drained(transport.close)

    def abort(self) -> None:
        """Drop the connection at once (session reinstatement, shutdown)."""
        if self.transport is not None:
            self._closed = True
            self._writer.close()
            self.transport.abort()

    def _arm_timer(self) -> None:
        conn = self.conn
        if conn is None:
            return
        at = conn.get_timer()
        if at is not None and self._timer_at is not None and self._timer_at <= at:
            # The idle deadline moves with every PDU received; re-arming each time costs a
            # timer-heap push per I/O. Let the earlier timer fire: handle_timer() sees it is not
            # due yet and this re-arms once for the new deadline.
            return
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self.loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.conn is None or self._closed:
            return
        self.conn.handle_timer(self.loop.time())
        self._pump()

    def _handle(self, ev: Event) -> None:
        if isinstance(ev, CommandReady):
            self._start_command(ev)
        elif isinstance(ev, LoginCompleted):
            self.session, self.nexus = self.runtime.session_started(self, ev.outcome)
            log.info(
                "%s logged in from %s: %s session%s",
                ev.outcome.initiator_name,
                self.peer,
                ev.outcome.session_type,
                f" to {ev.outcome.target.name}" if ev.outcome.target else "",
            )
        elif isinstance(ev, TaskManagementRequested):
            self.loop.create_task(self._tmf(ev))
        elif isinstance(ev, LogoutRequested):
            self.loop.create_task(self._logout(ev))
        elif isinstance(ev, ConnectionFailed):
            log.info("closing connection from %s: %s", self.peer, ev.reason)

    # -- SCSI commands ------------------------------------------------------------------------
    def _start_command(self, ev: CommandReady) -> None:
        # The common READ/WRITE on a healthy LU completes here, synchronously.
        session = self.session
        if session is not None:
            lu = session.lun_map.get(ev.lun)
            if lu is not None:
                data = lu.execute_now(self.nexus, ev.cdb, ev.data, ev.expected_length)  # type: ignore[arg-type]
                if data is not None:
                    conn = self.conn
                    assert conn is not None
                    if ev.write:
                        io_counters(lu).count(ev.cdb[0], 0, ev.expected_length)
                    else:
                        io_counters(lu).count(ev.cdb[0], ev.expected_length, 0)
                        if isinstance(data, FileSlice) and conn.data_digest:
                            data = data.materialize()  # the digest needs the bytes
                    conn.complete_good(ev.itt, data)
                    return
                # ... or is started, and completed by the backend's callback (librbd).
                if lu.start_now(
                    self.nexus,  # type: ignore[arg-type]
                    ev.cdb,
                    ev.data,
                    ev.expected_length,
                    functools.partial(self._started_done, ev, lu),
                ):
                    self._started[ev.itt] = ev
                    return
        self._run_eagerly(ev)

    def _started_done(self, ev: CommandReady, lu: LogicalUnit, data: Buffer | None) -> None:
        self._started.pop(ev.itt, None)
        if not self._closed:
            if data is None:
                self._run_eagerly(ev)  # the backend failed: the full path reports it
            else:
                conn = self.conn
                assert conn is not None
                n = ev.expected_length
                io_counters(lu).count(ev.cdb[0], 0 if ev.write else n, n if ev.write else 0)
                conn.complete_good(ev.itt, data)
            if not self._pumping:
                self._schedule_flush()
        idle = self._started_idle
        if not self._started and idle is not None and not idle.done():
            idle.set_result(None)

    async def _wait_started(self) -> None:
        """Until every command started on a backend (start_now) has completed."""
        while self._started:
            if self._started_idle is None or self._started_idle.done():
                self._started_idle = self.loop.create_future()
            await asyncio.shield(self._started_idle)

    def _run_eagerly(self, ev: CommandReady) -> None:
        # A command that completes without waiting never becomes a task, and its reply leaves
        # with the rest of this batch in one send (see _pump).
        coro = self._run_command(ev)
        try:
            yielded = coro.send(None)
        except StopIteration:
            return
        self._running[ev.itt] = self.loop.create_task(_resume(coro, yielded))

    async def _run_command(self, ev: CommandReady) -> None:
        session = self.session
        conn = self.conn
        assert session is not None and conn is not None and self.nexus is not None
        needed: int | None = None
        try:
            lunmap = session.lun_map
            data = contiguous(ev.data)  # the SCSI layer takes one buffer
            lu = lunmap.get(ev.lun)
            if ev.write:
                needed = lu.data_out_length(ev.cdb) if lu is not None else 0
                if needed > ev.expected_length:
                    # The CDB asks for more than the initiator will send: write only the
                    # whole blocks that fit in EDTL (RFC 7143 §11.4.5.2), or refuse.
                    cdb = (
                        _truncated_write(ev.cdb, ev.expected_length // lu.block_size)
                        if lu
                        else None
                    )
                    if cdb is None:
                        result = ScsiResult(CHECK_CONDITION, sense=SENSE_OVERFLOW)
                        conn.complete_command(ev.itt, result, needed)
                        return
                    if ev.expected_length < lu.block_size:  # type: ignore[union-attr]
                        conn.complete_command(ev.itt, ScsiResult(), needed)
                        return
                    ev.cdb = cdb
                    data = memoryview(data)[: len(data) - len(data) % lu.block_size]  # type: ignore[union-attr]
                if needed < len(data):
                    data = memoryview(data)[:needed]
            result = await lunmap.execute(
                ev.lun,
                ScsiCommand(
                    cdb=ev.cdb,
                    nexus=self.nexus,
                    expected_length=ev.expected_length,
                    data_out=data,
                    task_attr=ev.task_attr,
                    tag=ev.itt,
                ),
            )
            if lu is not None:
                io_counters(lu).count(ev.cdb[0], len(result.data), len(data), result.status)
            if isinstance(result.data, FileSlice) and conn.data_digest:
                result.data = result.data.materialize()  # the digest needs the bytes
            conn.complete_command(ev.itt, result, needed)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("command 0x%02x failed unexpectedly", ev.cdb[0] if ev.cdb else -1)
            # The SCSI layer must not raise; if it does, fail the command, not the gateway.
            failure = ScsiResult(CHECK_CONDITION, sense=SENSE_INTERNAL_FAILURE)
            conn.complete_command(ev.itt, failure, needed)
        finally:
            self._running.pop(ev.itt, None)
            if not self._pumping:  # finished inside _pump (eagerly): the pump's flush sends it
                self._schedule_flush()

    async def cancel_commands(self, itts: list[int]) -> None:
        tasks = [t for itt in itts if (t := self._running.pop(itt, None)) is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if any(itt in self._started for itt in itts):
            await self._wait_started()  # a started backend request cannot be recalled

    async def drain_commands(self) -> None:
        tasks = list(self._running.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._wait_started()

    # -- TMF / logout -------------------------------------------------------------------------
    async def _tmf(self, ev: TaskManagementRequested) -> None:
        conn = self.conn
        session = self.session
        assert conn is not None
        fn = ev.function
        response: int = TmfResponse.FUNCTION_COMPLETE
        if session is None or self.nexus is None or session.lun_map is None:
            response = TmfResponse.REJECTED
        elif fn == TmfFunction.ABORT_TASK:
            had = ev.ref_itt in self._running
            response = conn.abort_task(ev.ref_itt, ev.ref_cmdsn, ev.cmdsn)
            if had:
                await self.cancel_commands([ev.ref_itt])
        elif fn in (TmfFunction.ABORT_TASK_SET, TmfFunction.CLEAR_TASK_SET):
            if ev.lun not in session.lun_map:
                response = TmfResponse.LUN_DOES_NOT_EXIST
            else:
                await self.cancel_commands(conn.abort_tasks(ev.lun))
        elif fn == TmfFunction.LOGICAL_UNIT_RESET:
            if ev.lun not in session.lun_map:
                response = TmfResponse.LUN_DOES_NOT_EXIST
            else:
                await self.runtime.lun_reset(session.lun_map[ev.lun], self)
        elif fn in (TmfFunction.TARGET_WARM_RESET, TmfFunction.TARGET_COLD_RESET):
            await self.runtime.target_reset(session.target_name, self)
        elif fn == TmfFunction.TASK_REASSIGN:
            response = TmfResponse.REASSIGNMENT_NOT_SUPPORTED
        else:
            response = TmfResponse.NOT_SUPPORTED
        conn.complete_tmf(ev.itt, response)
        self._flush()

    async def _logout(self, ev: LogoutRequested) -> None:
        # Let commands already running finish so their writes are acknowledged or not at all.
        await self.drain_commands()
        await self.runtime.logging_out(self)
        if self.conn is not None:
            self.conn.complete_logout(ev.itt)
        self._flush()


# Transfer-length field (offset, size) of the writes whose length can be cut to fit EDTL.
# WRITE(6) is absent: its length 0 means 256 blocks, so it cannot express "nothing".
_WRITE_LENGTH_FIELD = {
    0x2A: (7, 2),
    0x2E: (7, 2),  # WRITE(10), WRITE AND VERIFY(10)
    0xAA: (6, 4),
    0xAE: (6, 4),  # (12)
    0x8A: (10, 4),
    0x8E: (10, 4),  # (16)
}


def _truncated_write(cdb: bytes, blocks: int) -> bytes | None:
    field = _WRITE_LENGTH_FIELD.get(cdb[0]) if cdb else None
    if field is None:
        return None
    offset, size = field
    out = bytearray(cdb)
    out[offset : offset + size] = blocks.to_bytes(size, "big")
    return bytes(out)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], yielded: Any) -> Generator[Any, Any, None]:
    """Continue, inside a Task, a coroutine that was started eagerly and then blocked."""
    while True:
        try:
            value = yield yielded
        except BaseException as exc:  # delivered into the coroutine, e.g. CancelledError
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(value)
            except StopIteration:
                return
