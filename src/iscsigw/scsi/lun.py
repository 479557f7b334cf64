"""A SCSI logical unit (SBC direct-access block device) over a ``BlockBackend``.

``LogicalUnit.execute`` is the single entry point: it looks the CDB up in the command table,
reports pending unit attentions, enforces SCSI-2 reservations, ALUA access states and write
protection, runs the handler and turns every failure into status + sense. It never raises
(except ``asyncio.CancelledError``, which is how a task gets aborted).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import Any

from .._types import Buffer, Payload, Received
from ..backends.base import BlockBackend, SupportsImmediateIO, immediate_io, started_io
from ..errors import BackendError, BackendFenced, BackendNoSpace, BackendNotFound
from .alua import AluaState, PortGroups
from .cluster import LuCluster
from .dispatch import DEFAULT_TABLE, AluaAccess, CommandTable
from .gate import WriteGate
from .identity import LuIdentity
from .limits import BlockLimits
from .pr import MemoryPrStore, PrAccess, PrState, PrStore
from .sbc import (
    PROVISIONING_MAPPED,
    ZERO_COPY_MIN,
    lba_status_data,
    lba_status_descriptors,
    lba_status_scan_blocks,
)
from .sense import (
    ASYMMETRIC_ACCESS_STATE_CHANGED,
    BUS_DEVICE_RESET,
    CAPACITY_DATA_CHANGED,
    I_T_NEXUS_LOSS,
    INQUIRY_DATA_CHANGED,
    INTERNAL_TARGET_FAILURE,
    MODE_PARAMS_CHANGED,
    NOT_READY_ALUA_OFFLINE,
    NOT_READY_ALUA_STANDBY,
    NOT_READY_ALUA_TRANSITION,
    NOT_READY_ALUA_UNAVAILABLE,
    NOT_READY_MANUAL_INTERVENTION,
    POWER_ON_RESET,
    SPACE_ALLOCATION_FAILED,
    WRITE_PROTECTED,
    CheckCondition,
    SenseCode,
)
from .task import CHECK_CONDITION, RESERVATION_CONFLICT, ITNexus, ScsiCommand, ScsiResult
from .xcopy import HELD_RESULTS, CopyResult, LuRegistry

log = logging.getLogger(__name__)

MAX_PENDING_UAS = 16

# Non-active ALUA states: the least permissive AluaAccess class allowed through, and the sense.
_ALUA_BLOCK: dict[AluaState, tuple[AluaAccess, SenseCode]] = {
    AluaState.STANDBY: (AluaAccess.STANDBY, NOT_READY_ALUA_STANDBY),
    AluaState.UNAVAILABLE: (AluaAccess.ALWAYS, NOT_READY_ALUA_UNAVAILABLE),
    AluaState.TRANSITIONING: (AluaAccess.ALWAYS, NOT_READY_ALUA_TRANSITION),
    AluaState.OFFLINE: (AluaAccess.ALWAYS, NOT_READY_ALUA_OFFLINE),
}


SANITIZE_IN_PROGRESS = SenseCode(0x2, 0x04, 0x1B)

_RW10 = struct.Struct(">xBIxH").unpack_from  # flags, lba, length
_RW16 = struct.Struct(">xBQI").unpack_from
_GLS = struct.Struct(">2xQI").unpack_from  # GET LBA STATUS: starting LBA, allocation length
# Opcodes ``execute_now`` handles: READ/WRITE (10) and (16) -> (CDB decoder, writes?)
_FAST_RW: dict[int, tuple[Callable[[bytes], tuple[int, int, int]], bool]] = {
    0x28: (_RW10, False),
    0x88: (_RW16, False),
    0x2A: (_RW10, True),
    0x8A: (_RW16, True),
}

# Locks [offset, offset+length) of the backing store against COMPARE AND WRITEs of other
# processes (gateways) for the duration of one COMPARE AND WRITE.
CawLock = Callable[[int, int], AbstractAsyncContextManager[None]]


class LogicalUnit:
    """One exported block device. Shared by every session (I_T nexus) that maps it."""

    SANITIZE_FAILED = SenseCode(0x3, 0x31, 0x03)

    def __init__(
        self,
        backend: BlockBackend,
        identity: LuIdentity,
        *,
        read_only: bool = False,
        write_cache: bool = True,
        port_groups: PortGroups | None = None,
        limits: BlockLimits | None = None,
        table: CommandTable | None = None,
        pr_store: PrStore | None = None,
        cluster: LuCluster | None = None,
        caw_lock: CawLock | None = None,
    ) -> None:
        self.backend = backend
        self.identity = identity
        self.block_size = backend.block_size
        self.read_only = read_only
        self.table = table if table is not None else DEFAULT_TABLE
        self.limits = limits if limits is not None else BlockLimits()
        self.counts = self.limits.for_block_size(self.block_size)
        # The fast path (execute_now) stands for the default table's READ/WRITE handlers only.
        self._immediate = immediate_io(backend) if self.table is DEFAULT_TABLE else None
        self._started = started_io(backend) if self.table is DEFAULT_TABLE else None
        self.zero_block = bytes(self.block_size)
        # Mode page state (shared by all I_T nexuses)
        self.default_wce = write_cache
        self.wce = write_cache
        self.d_sense = False
        self.swp = False
        # SCSI-2 reservation holder (ITNexus.key) or None
        self.reservation_holder: str | None = None
        self._ua: dict[str, deque[SenseCode]] = {}
        # Every I_T nexus seen on this LU (for PR notices addressed by port names).
        self._nexuses: dict[str, ITNexus] = {}
        # Persistent reservations: state shared by every gateway exporting the LU.
        self.pr_store: PrStore = pr_store if pr_store is not None else MemoryPrStore()
        self._pr_unsubscribe = self.pr_store.subscribe(self._pr_state_committed)
        # EXTENDED COPY: other LUs reachable by NAA, and COPY STATUS results per (nexus, list id)
        self.copy_registry: LuRegistry | None = None
        self._copy_results: OrderedDict[tuple[str, int], CopyResult] = OrderedDict()
        # SANITIZE: the running job (commands get 2/04/1B meanwhile) and the failure mode.
        self.sanitizing: asyncio.Task[None] | None = None
        self.sanitize_failed = False
        # Set by the runtime: abort every task of ``nexus`` on this LU (PREEMPT AND ABORT).
        self.abort_nexus_tasks: Callable[[ITNexus], None] | None = None
        # id(nexus) -> (nexus, nexus.key): ITNexus.key formats a string on every call.
        self._keys: dict[int, tuple[ITNexus, str]] = {}
        self._gate = WriteGate()
        self._port_groups = port_groups if port_groups is not None else PortGroups()
        self._restricted: dict[int, AluaState] = {}
        self._compute_restricted()
        # SANITIZE running/failed on another gateway ("running", "failed" or None).
        self.remote_sanitize: str | None = None
        self.caw_lock = caw_lock
        self._background: set[asyncio.Task[None]] = set()
        # State shared with the other gateways exporting this LU (None: this process only).
        self.cluster = cluster
        if cluster is not None:
            cluster.attach(self)

    # ----------------------------------------------------------------------------- properties

    @property
    def capacity(self) -> int:
        """Number of logical blocks."""
        return self.backend.size // self.block_size

    @property
    def thin(self) -> bool:
        """Logical block provisioning (LBPME/LBPRZ, UNMAP, VPD B2) is advertised."""
        return self.backend.discard_zeroes

    @property
    def write_protected(self) -> bool:
        return self.read_only or self.swp

    @property
    def sanitize_in_progress(self) -> bool:
        return self.sanitizing is not None or self.remote_sanitize == "running"

    @property
    def port_groups(self) -> PortGroups:
        return self._port_groups

    def set_port_groups(self, port_groups: PortGroups) -> None:
        """Replace the ALUA view; queues 2A/06 on every nexus when anything changed."""
        if port_groups == self._port_groups:
            return
        self._port_groups = port_groups
        self._compute_restricted()
        self.queue_unit_attention(ASYMMETRIC_ACCESS_STATE_CHANGED)

    async def transition(
        self,
        final: PortGroups,
        work: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """An implicit ALUA transition to ``final``.

        Every group whose state changes is reported Transitioning (RTPG state Fh, media
        commands through its ports get 2/04/0A) while ``work`` runs (e.g. flushing the
        backend, or acquiring the image's exclusive lock), then takes its final state with
        status code 2 (altered by an implicit transition). 2A/06 is queued on every nexus of
        the LU at each step. Should ``work`` fail, the groups stay Transitioning for the
        caller to retry or give up (6/2A/07 is then the caller's to report).
        """

        def shape(pg: PortGroups) -> list[tuple[int, AluaState, bool, tuple[int, ...]]]:
            return [(g.tpg_id, g.state, g.pref, g.port_ids) for g in pg.groups]

        if shape(final) == shape(self._port_groups):
            return  # only status codes differ: nothing to report
        current = {g.tpg_id: g for g in self._port_groups.groups}
        changing = {
            g.tpg_id
            for g in final.groups
            if g.tpg_id in current and current[g.tpg_id].state != g.state
        }
        if not changing:
            self.set_port_groups(final)  # groups added or removed: 2A/06 once
            return
        trans = PortGroups(
            tuple(
                replace(g, state=AluaState.TRANSITIONING, status_code=2)
                if g.tpg_id in changing
                else g
                for g in final.groups
            ),
            final.implicit_transition_time,
        )
        self.set_port_groups(trans)
        if work is not None:
            await work()
        self.set_port_groups(
            PortGroups(
                tuple(
                    replace(g, status_code=2) if g.tpg_id in changing else g for g in final.groups
                ),
                final.implicit_transition_time,
            )
        )

    def _compute_restricted(self) -> None:
        self._restricted = {
            rtpi: g.state
            for g in self._port_groups.groups
            if g.state in _ALUA_BLOCK
            for rtpi in g.port_ids
        }

    # ------------------------------------------------------------------------------ mode pages

    def set_mode(
        self, *, wce: bool | None = None, d_sense: bool | None = None, swp: bool | None = None
    ) -> bool:
        """Change mode page values; returns True if anything changed."""
        changed = False
        if wce is not None and wce != self.wce:
            self.wce = wce
            changed = True
        if d_sense is not None and d_sense != self.d_sense:
            self.d_sense = d_sense
            changed = True
        if swp is not None and swp != self.swp:
            self.swp = swp
            changed = True
        return changed

    def mode_parameters_changed(self, by: ITNexus) -> None:
        """2A/01 to every nexus except the one that changed them (SPC-4 §7.5.1)."""
        self.queue_unit_attention(MODE_PARAMS_CHANGED, exclude=by.key)

    async def publish_mode(self) -> None:
        """Make the current mode page values those of every gateway (2A/01 there)."""
        if self.cluster is not None:
            await self.cluster.set_mode(self.wce, self.d_sense, self.swp)

    # ------------------------------------------------------------------ cluster (other gateways)

    def cluster_reservation(self, holder: str | None) -> None:
        self.reservation_holder = holder

    def cluster_reset(self) -> None:
        """A LU reset on another gateway: 29/03 on every nexus here (the SCSI-2 reservation
        comes with ``cluster_reservation``). Tasks running here are not aborted."""
        self.reservation_holder = None
        self.queue_unit_attention(BUS_DEVICE_RESET)

    def cluster_mode(self, wce: bool, d_sense: bool, swp: bool, *, changed: bool) -> None:
        self.wce, self.d_sense, self.swp = wce, d_sense, swp
        if changed:
            self.queue_unit_attention(MODE_PARAMS_CHANGED)

    def cluster_sanitize(self, state: str | None) -> None:
        self.remote_sanitize = state
        if state is None:
            self.sanitize_failed = False  # EXIT FAILURE MODE through another gateway

    async def publish_reset(self) -> None:
        """After ``reset``: the same reset on every other gateway exporting the LU."""
        if self.cluster is not None:
            await self.cluster.reset()

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            return
        task = loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def release_reservation_of(self, nexus: ITNexus) -> None:
        """Release the SCSI-2 reservation ``nexus`` holds, on every gateway, and return once
        that is visible everywhere (a logout: before the Logout Response goes out)."""
        key = nexus.key
        if self.reservation_holder == key:
            self.reservation_holder = None
            if self.cluster is not None:
                await self.cluster.release(key)

    def _drop_reservation_of(self, key: str) -> None:
        if self.reservation_holder == key:
            self.reservation_holder = None
            if self.cluster is not None:
                self._in_background(self._release_shared(key))

    async def _release_shared(self, key: str) -> None:
        assert self.cluster is not None
        try:
            await self.cluster.release(key)
        except Exception:
            log.exception("releasing the shared SCSI-2 reservation failed")

    # ------------------------------------------------------------------------ unit attentions

    def _queue_for(self, key: str) -> deque[SenseCode]:
        q = self._ua.get(key)
        if q is None:
            q = self._ua[key] = deque((POWER_ON_RESET,))
        return q

    def pop_unit_attention(self, nexus: ITNexus) -> SenseCode | None:
        q = self._queue_for(nexus.key)
        return q.popleft() if q else None

    def pending_unit_attentions(self, nexus: ITNexus) -> list[SenseCode]:
        return list(self._ua.get(nexus.key, (POWER_ON_RESET,)))

    def queue_unit_attention(
        self, code: SenseCode, *, nexus: ITNexus | None = None, exclude: str | None = None
    ) -> None:
        """Queue ``code`` for ``nexus``, or for every known nexus except ``exclude``.

        A nexus not seen yet needs nothing: its first command reports POWER ON/RESET anyway.
        """
        keys = [nexus.key] if nexus is not None else [k for k in self._ua if k != exclude]
        for key in keys:
            self._queue_code(key, code)

    def _queue_code(self, key: str, code: SenseCode) -> None:
        q = self._queue_for(key)
        if code in q:
            return
        # Power on / reset / nexus loss (29h) codes are one condition: a pending one already
        # tells the initiator that everything it knew was reset (SAM-5 §5.14).
        if code.asc == 0x29 and any(c.asc == 0x29 for c in q):
            return
        if len(q) >= MAX_PENDING_UAS:
            q.pop()
        q.append(code)

    # -------------------------------------------------------------------- persistent reservations

    def _pr_state_committed(self, state: PrState) -> None:
        """A PR state was committed (here or on another gateway): deliver its notices to the
        I_T nexuses of this LU they are addressed to."""
        if not state.notices:
            return
        aborts: list[ITNexus] = []
        for notice in state.notices:
            for key, nx in list(self._nexuses.items()):
                if not notice.matches(nx):
                    continue
                if notice.code is not None and key in self._ua:
                    self._queue_code(key, notice.code)
                if notice.abort:
                    aborts.append(nx)
        hook = self.abort_nexus_tasks
        if hook is not None:
            for nx in aborts:
                hook(nx)

    # --------------------------------------------------------------------------- extended copy

    def remember_copy(self, key: tuple[str, int], result: CopyResult) -> None:
        self._copy_results[key] = result
        self._copy_results.move_to_end(key)
        while len(self._copy_results) > HELD_RESULTS:
            self._copy_results.popitem(last=False)

    def copy_result(self, key: tuple[str, int]) -> CopyResult | None:
        return self._copy_results.get(key)

    @asynccontextmanager
    async def shared_writes(self, *, skip: bool = False) -> AsyncIterator[None]:
        """Hold the write gate shared (as a WRITE does) around writes issued from outside
        ``execute`` (EXTENDED COPY into another LU)."""
        if skip:
            yield
            return
        gate = self._gate
        await gate.enter_shared()
        try:
            yield
        finally:
            gate.leave_shared()

    # ------------------------------------------------------------------------------- sanitize

    def start_sanitize(self, job: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a sanitize operation in the background, owned by the LU (call
        ``publish_sanitize("running")`` first so that other gateways refuse commands too)."""

        async def run() -> None:
            try:
                await job
                self.sanitize_failed = False
            except Exception:
                log.exception("SANITIZE failed")
                self.sanitize_failed = True
            finally:
                self.sanitizing = None
                try:
                    await self.publish_sanitize("failed" if self.sanitize_failed else None)
                except Exception:
                    log.exception("publishing the SANITIZE outcome failed")

        task = asyncio.get_running_loop().create_task(run())
        self.sanitizing = task
        return task

    async def publish_sanitize(self, state: str | None) -> None:
        if self.cluster is not None:
            await self.cluster.set_sanitize(state)

    def close_pr(self) -> None:
        """Stop listening to the PR store and the cluster (the LU is being closed)."""
        self._pr_unsubscribe()
        if self.cluster is not None:
            self.cluster.close()

    def notify_capacity_changed(self) -> None:
        self.queue_unit_attention(CAPACITY_DATA_CHANGED)

    def notify_inquiry_data_changed(self) -> None:
        self.queue_unit_attention(INQUIRY_DATA_CHANGED)

    def reset(self, nexus: ITNexus | None = None) -> None:
        """LOGICAL UNIT RESET: release the SCSI-2 reservation, queue 29/03 on every nexus.

        ``nexus`` (the issuer) gets the UA too, as libiscsi MultipathIO.Reset expects. Aborting
        the tasks is the transport's job. Mode pages keep their values (nothing is saved, but a
        reset does not power-cycle the LU).
        """
        self.reservation_holder = None
        if nexus is not None:
            self._queue_for(nexus.key)
            self._nexuses.setdefault(nexus.key, nexus)
        self.queue_unit_attention(BUS_DEVICE_RESET)

    def nexus_lost(self, nexus: ITNexus) -> None:
        """The I_T nexus went away (logout, connection drop, session reinstatement)."""
        key = nexus.key
        self._drop_reservation_of(key)
        if key in self._ua:
            self._ua[key] = deque((I_T_NEXUS_LOSS,))

    def forget_nexus(self, nexus: ITNexus) -> None:
        """Drop all per-nexus state (e.g. when the ACL that allowed it is deleted)."""
        self._ua.pop(nexus.key, None)
        self._nexuses.pop(nexus.key, None)
        self._drop_reservation_of(nexus.key)

    # ------------------------------------------------------------------------------ execution

    def data_out_length(self, cdb: bytes) -> int:
        """Bytes of Data-Out the CDB asks for (0 if none or the CDB is bad). Never raises."""
        try:
            spec = self.table.find(cdb)
            if spec is None or spec.data_out is None:
                return 0
            return max(0, spec.data_out(cdb, self.block_size))
        except Exception:
            return 0

    def sense_bytes(self, exc: CheckCondition) -> bytes:
        return exc.encode(self.d_sense)

    def _key(self, nexus: ITNexus) -> str:
        entry = self._keys.get(id(nexus))
        if entry is not None and entry[0] is nexus:
            return entry[1]
        if len(self._keys) >= 4096:
            self._keys.clear()
        key = nexus.key
        self._keys[id(nexus)] = (nexus, key)
        return key

    def _healthy(self, nexus: ITNexus) -> bool:
        """Nothing stands between ``nexus`` and the medium: no unit attention for it, no
        reservation, no ALUA restriction of its port, no sanitize."""
        cluster = self.cluster
        if cluster is not None:
            cluster.refresh()  # what other gateways committed before this command
        restricted = self._restricted
        if (
            (restricted and nexus.relative_port_id in restricted)
            or self.sanitizing is not None
            or self.remote_sanitize is not None
            or self.sanitize_failed
            or self.reservation_holder is not None
            or self.pr_store.current.reservation is not None
        ):
            return False
        q = self._ua.get(self._key(nexus))
        return q is not None and not q

    def _lba_status_now(self, nexus: ITNexus, cdb: bytes, io: SupportsImmediateIO) -> bytes | None:
        """GET LBA STATUS answered from what the backend knows without I/O (a file's cached
        data run), when the whole range the command looks at is mapped; else None."""
        mapped_now = getattr(io, "mapped_now", None)
        if mapped_now is None or len(cdb) < 16 or not self._healthy(nexus):
            return None
        lba, alloc = _GLS(cdb)
        bs = self.block_size
        cap = self.backend.size // bs
        if lba >= cap:
            return None
        max_desc = lba_status_descriptors(alloc)
        span = min(cap - lba, lba_status_scan_blocks(max_desc, bs))
        if span > 0xFFFFFFFF or not mapped_now(lba * bs, span * bs):
            return None
        return lba_status_data([[lba, span, PROVISIONING_MAPPED]], max_desc, alloc)

    def _plain_rw(
        self, nexus: ITNexus, cdb: bytes, data_out: Received, expected_length: int
    ) -> tuple[bool, int, int] | None:
        """(writes, byte offset, byte length) of a READ/WRITE (10/16) the fast paths may run,
        or None. The checks ``execute`` makes for such a command on a healthy LU: no unit
        attention for this nexus, no reservation, no ALUA restriction, no sanitize, no write
        protection, write-back cache and no FUA, the transfer length equal to EDTL."""
        rw = _FAST_RW.get(cdb[0])
        if rw is None or not self._healthy(nexus):
            return None
        unpack, writes = rw
        try:
            flags, lba, n = unpack(cdb)
        except struct.error:
            return None  # a short CDB: execute() reports it
        bs = self.block_size
        length = n * bs
        if (
            flags & 0xE0  # RD/WRPROTECT: no protection information here
            or not n
            or length != expected_length
            or lba + n > self.backend.size // bs
            or n > self.counts.max_transfer
        ):
            return None
        if writes and (
            flags & 0x08  # FUA
            or not self.wce
            or self.read_only
            or self.swp
            or self._gate.exclusive
            or len(data_out) != length
        ):
            return None
        return writes, lba * bs, length

    def execute_now(
        self, nexus: ITNexus, cdb: bytes, data_out: Received, expected_length: int
    ) -> Payload | None:
        """Run a plain READ or WRITE (10/16) at once, or return None for ``execute``.

        For a backend that completes immediately (page cache, memory), a command that passes
        ``_plain_rw`` runs here without the command table and the coroutine chain. Returns
        the Data-In (empty for a write). Any doubt, including a backend error, returns None:
        the command then takes the full path, which reports it with the right sense data.
        """
        io = self._immediate
        if io is None:
            return None
        plain = self._plain_rw(nexus, cdb, data_out, expected_length)
        if plain is None:
            if cdb[0] == 0x9E and cdb[1] & 0x1F == 0x12:  # GET LBA STATUS: QEMU asks per read
                return self._lba_status_now(nexus, cdb, io)
            return None
        writes, offset, length = plain
        try:
            if writes:
                io.write_now(offset, data_out)
                return b""
            if length >= ZERO_COPY_MIN:
                read_slice = getattr(io, "read_slice", None)
                if read_slice is not None:
                    return read_slice(offset, length)  # type: ignore[no-any-return]
            return io.read_now(offset, length)
        except BackendError:
            return None

    def start_now(
        self,
        nexus: ITNexus,
        cdb: bytes,
        data_out: Received,
        expected_length: int,
        done: Callable[[Buffer | None], None],
    ) -> bool:
        """Start a plain READ or WRITE (10/16) on a backend that completes by callback.

        True: ``done(data)`` follows on the event loop with the Data-In (empty for a write),
        or with None when the backend failed (the caller then runs the command through
        ``execute``, which reports the error with the right sense data; READ and WRITE are
        idempotent). False: nothing was started; use ``execute``.
        """
        io = self._started
        if io is None:
            return False
        plain = self._plain_rw(nexus, cdb, data_out, expected_length)
        if plain is None:
            return False
        writes, offset, length = plain
        if not writes:
            return io.start_read(offset, length, lambda rv, data: done(data if rv >= 0 else None))
        gate = self._gate
        gate.shared += 1  # an exclusive COMPARE AND WRITE waits for this write

        def written(rv: int, _: Buffer) -> None:
            gate.leave_shared()
            done(b"" if rv >= 0 else None)

        if io.start_write(offset, data_out, written):
            return True
        gate.leave_shared()
        return False

    async def execute(self, cmd: ScsiCommand) -> ScsiResult:
        cdb = cmd.cdb
        try:
            cluster = self.cluster
            if cluster is not None:
                cluster.refresh()  # what other gateways committed before this command
            spec = self.table.find(cdb) if cdb else None
            key = self._key(cmd.nexus)
            q = self._ua.get(key)
            if q is None:
                q = self._queue_for(key)
                self._nexuses[key] = cmd.nexus
            if q and (spec is None or not spec.ua_exempt):
                raise CheckCondition.of(q.popleft())
            if spec is None:
                raise self.table.unsupported(cdb)
            # ALUA access state of the target port (SPC-4 §5.15.2.4)
            if self._restricted:
                state = self._restricted.get(cmd.nexus.relative_port_id)
                if state is not None:
                    allowed, code = _ALUA_BLOCK[state]
                    if spec.alua < allowed:
                        raise CheckCondition.of(code)
            if (
                self.sanitizing is not None or self.remote_sanitize == "running"
            ) and not spec.ua_exempt:
                raise CheckCondition.of(SANITIZE_IN_PROGRESS)
            if (
                (self.sanitize_failed or self.remote_sanitize == "failed")
                and spec.writes
                and cdb[0] != 0x48
            ):
                raise CheckCondition.of(self.SANITIZE_FAILED)
            holder = self.reservation_holder
            if holder is not None and holder != key and not spec.reservation_exempt:
                return ScsiResult(status=RESERVATION_CONFLICT)
            pr = self.pr_store.current
            if (
                pr.reservation is not None
                and spec.pr_access != PrAccess.ALLOWED
                and pr.conflicts(cmd.nexus, spec.pr_access)
            ):
                return ScsiResult(status=RESERVATION_CONFLICT)
            if not spec.writes:
                return await spec.handler(self, cmd)
            if self.read_only or self.swp:
                raise CheckCondition.of(WRITE_PROTECTED)
            gate = self._gate
            if spec.exclusive:
                async with gate.exclusively():
                    return await spec.handler(self, cmd)
            if gate.exclusive:
                await gate.enter_shared()
            else:
                gate.shared += 1
            try:
                return await spec.handler(self, cmd)
            finally:
                gate.leave_shared()
        except CheckCondition as exc:
            if exc.status != CHECK_CONDITION:
                return ScsiResult(status=exc.status)
            return ScsiResult(status=CHECK_CONDITION, sense=exc.encode(self.d_sense))
        except BackendNoSpace:
            return self._fail(SPACE_ALLOCATION_FAILED)
        except BackendFenced:
            # Lost the exclusive lock: "ALUA transition in progress" makes Linux and ESXi retry
            # (Linux for the implicit transition time) instead of failing the I/O, while the
            # lock is re-acquired here or multipath moves to another gateway.
            return self._fail(NOT_READY_ALUA_TRANSITION)
        except BackendNotFound:
            # Not 5/25/00: ESXi would treat that as permanent device loss.
            return self._fail(NOT_READY_MANUAL_INTERVENTION)
        except BackendError as exc:
            log.warning("backend error on opcode %#04x: %s", cdb[0] if cdb else -1, exc)
            return self._fail(INTERNAL_TARGET_FAILURE)
        except Exception:
            log.exception("SCSI command %s failed", cdb[:16].hex())
            return self._fail(INTERNAL_TARGET_FAILURE)

    def _fail(self, code: SenseCode) -> ScsiResult:
        return ScsiResult(
            status=CHECK_CONDITION, sense=CheckCondition.of(code).encode(self.d_sense)
        )
