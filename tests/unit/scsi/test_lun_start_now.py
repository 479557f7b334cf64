"""``LogicalUnit.start_now``: READ/WRITE (10/16) started on a backend that completes by callback.

The backend here wraps ``MemoryBackend`` without its immediate I/O (no ``read_now`` /
``write_now``) and adds ``start_read`` / ``start_write``, which complete on a later loop
iteration (``call_soon``), or only when the test releases them (``hold``). It can fail the
started requests with a negative errno or refuse to start them (False).

Checked: the data round trip against the full path (``execute``) both ways; every condition
under which ``start_now`` must step aside (False) without touching the backend; rv < 0 gives
``done(None)``; a started WRITE holds the LU write gate shared until its completion, so an
exclusive COMPARE AND WRITE issued meanwhile waits for it; a refused start leaves the gate as
it was; a backend with both immediate and started I/O.
"""

from __future__ import annotations

import asyncio
import errno
import struct
from collections.abc import Callable
from typing import Any

import pytest

from iscsigw._types import Buffer, FileSlice, Payload, Received, contiguous
from iscsigw.backends.base import Extent, immediate_io, started_io
from iscsigw.backends.memory import MemoryBackend
from iscsigw.errors import BackendError
from iscsigw.scsi.alua import AluaState, PortGroup, PortGroups
from iscsigw.scsi.dispatch import DEFAULT_SPECS, CommandTable
from iscsigw.scsi.identity import LuIdentity
from iscsigw.scsi.limits import BlockLimits
from iscsigw.scsi.lun import LogicalUnit
from iscsigw.scsi.sense import BUS_DEVICE_RESET, POWER_ON_RESET, SenseCode
from iscsigw.scsi.task import ITNexus, ScsiCommand, ScsiResult

BLOCK = 512
BLOCKS = 4096  # 2 MiB
SIZE = BLOCK * BLOCKS
UUID = "6b1f1c1e-2d0a-4f55-9d8e-3c9a5e0b7a11"
TARGET = "iqn.2026-11.io.iscsigw:startnow"

READ10, WRITE10, READ16, WRITE16 = 0x28, 0x2A, 0x88, 0x8A
GOOD, CHECK_CONDITION, RESERVATION_CONFLICT = 0x00, 0x02, 0x18
TUR = bytes(6)

MISCOMPARE = (0xE, 0x1D, 0x00)
WRITE_PROTECTED = (0x7, 0x27, 0x00)
SANITIZE_IN_PROGRESS = (0x2, 0x04, 0x1B)

Done = Callable[[int, Buffer], None]


# ------------------------------------------------------------------------------- the backend


class StartedBackend:
    """``MemoryBackend`` storage; no immediate I/O; reads and writes startable by callback.

    ``fail``: the started requests complete with this (negative) return value and do nothing.
    ``refuse``: ``start_read`` / ``start_write`` return False. ``hold``: completions wait for
    ``release()``. ``calls`` lists every start_* call; ``log`` what completed, in order.
    """

    def __init__(self, size: int = SIZE, block_size: int = BLOCK) -> None:
        self.inner = MemoryBackend(size, block_size)
        self.fail: int | None = None
        self.refuse = False
        self.hold = False
        self.held: list[Callable[[], None]] = []
        self.calls: list[tuple[str, int, int]] = []
        self.log: list[str] = []
        self.in_flight = 0

    # BlockBackend
    @property
    def block_size(self) -> int:
        return self.inner.block_size

    @property
    def size(self) -> int:
        return self.inner.size

    @property
    def discard_zeroes(self) -> bool:
        return True

    async def read(self, offset: int, length: int) -> Buffer:
        return await self.inner.read(offset, length)

    async def write(self, offset: int, data: Buffer, *, fua: bool = False) -> None:
        await self.inner.write(offset, data, fua=fua)
        self.log.append(f"write {offset}")

    async def flush(self) -> None:
        return None

    async def discard(self, offset: int, length: int) -> None:
        await self.inner.discard(offset, length)

    async def write_zeroes(self, offset: int, length: int, *, unmap: bool = False) -> None:
        await self.inner.write_zeroes(offset, length, unmap=unmap)

    async def extents(self, offset: int, length: int) -> list[Extent]:
        return await self.inner.extents(offset, length)

    async def close(self) -> None:
        await self.inner.close()

    # SupportsStartedIO
    def start_read(self, offset: int, length: int, done: Done) -> bool:
        self.calls.append(("read", offset, length))
        if self.refuse:
            return False

        def finish() -> None:
            self.in_flight -= 1
            if self.fail is not None:
                self.log.append(f"started read {offset} failed")
                done(self.fail, bytes(length))
            else:
                self.log.append(f"started read {offset}")
                done(length, bytearray(self.inner.read_now(offset, length)))

        self._later(finish)
        return True

    def start_write(self, offset: int, data: Received, done: Done) -> bool:
        payload = bytes(contiguous(data))  # what librbd would be handed now
        self.calls.append(("write", offset, len(payload)))
        if self.refuse:
            return False

        def finish() -> None:
            self.in_flight -= 1
            if self.fail is not None:
                self.log.append(f"started write {offset} failed")
                done(self.fail, b"")
            else:
                self.inner.write_now(offset, payload)
                self.log.append(f"started write {offset}")
                done(len(payload), b"")

        self._later(finish)
        return True

    def _later(self, fn: Callable[[], None]) -> None:
        self.in_flight += 1
        if self.hold:
            self.held.append(fn)
        else:
            asyncio.get_running_loop().call_soon(fn)

    def release(self) -> None:
        held, self.held = self.held, []
        loop = asyncio.get_running_loop()
        for fn in held:
            loop.call_soon(fn)


class BothBackend(MemoryBackend):
    """Immediate and started I/O (a backend could offer both)."""

    def __init__(self) -> None:
        super().__init__(SIZE, BLOCK)
        self.started: list[str] = []

    def start_read(self, offset: int, length: int, done: Done) -> bool:
        self.started.append("read")
        data = self.read_now(offset, length)
        asyncio.get_running_loop().call_soon(done, length, data)
        return True

    def start_write(self, offset: int, data: Received, done: Done) -> bool:
        self.started.append("write")
        self.write_now(offset, data)
        asyncio.get_running_loop().call_soon(done, len(data), b"")
        return True


# ------------------------------------------------------------------------------------ helpers


def nexus(initiator: str = "iqn.1994-05.com.example:a", isid: int = 0x1, tpgt: int = 1) -> ITNexus:
    return ITNexus(initiator, isid, TARGET, tpgt)


A = nexus("iqn.1994-05.com.example:a", 0x1)
B = nexus("iqn.1994-05.com.example:b", 0x2)


def cdb10(op: int, lba: int, n: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIBHB", op, flags, lba, 0, n, 0)


def cdb16(op: int, lba: int, n: int, flags: int = 0) -> bytes:
    return struct.pack(">BBQIBB", op, flags, lba, n, 0, 0)


def caw16(lba: int, n: int = 1) -> bytes:
    return struct.pack(">BBQ3xBBB", 0x89, 0, lba, n, 0, 0)


def pattern(nbytes: int, seed: int = 1) -> bytes:
    """Non-repeating, non-zero data (so a misplaced block is noticed)."""
    out = bytearray()
    i = 0
    while len(out) < nbytes:
        out += struct.pack(">IIII", seed, i, seed ^ 0xA5A5A5A5, ~i & 0xFFFFFFFF)
        i += 1
    return bytes(out[:nbytes])


def payload_bytes(data: Payload) -> bytes:
    return data.materialize() if isinstance(data, FileSlice) else bytes(data)


def sense_of(res: ScsiResult) -> tuple[int, int, int]:
    assert res.status == CHECK_CONDITION, f"status {res.status:#x}, expected CHECK CONDITION"
    s = res.sense
    assert s[0] & 0x7F == 0x70, s.hex()
    return s[2] & 0x0F, s[12], s[13]


def code(c: SenseCode) -> tuple[int, int, int]:
    return c.key, c.asc, c.ascq


def make_lu(backend: object | None = None, **kw: object) -> LogicalUnit:
    be = backend if backend is not None else StartedBackend()
    kw.setdefault("port_groups", PortGroups.implicit([1, 2], owner=1))
    return LogicalUnit(be, LuIdentity.from_stable_id(UUID), **kw)  # type: ignore[arg-type]


def backend_of(lu: LogicalUnit) -> StartedBackend:
    be: Any = lu.backend
    assert isinstance(be, StartedBackend)
    return be


async def run(
    lu: LogicalUnit, cdb: bytes, data: Buffer = b"", *, nx: ITNexus = A, edtl: int | None = None
) -> ScsiResult:
    """The full path, as the transport calls it."""
    if edtl is None:
        edtl = max(lu.data_out_length(cdb), len(data))
    return await lu.execute(ScsiCommand(cdb=cdb, nexus=nx, expected_length=edtl, data_out=data))


async def ready(lu: LogicalUnit, nx: ITNexus = A) -> None:
    """The first command of a nexus reports POWER ON/RESET; consume it."""
    res = await run(lu, TUR, nx=nx)
    assert sense_of(res) == code(POWER_ON_RESET)
    assert lu.pending_unit_attentions(nx) == []


def transfer_of(cdb: bytes) -> int:
    n = (
        struct.unpack_from(">H", cdb, 7)[0]
        if len(cdb) == 10
        else struct.unpack_from(">I", cdb, 10)[0]
    )
    return int(n) * BLOCK


class Started:
    """One start_now call: whether it started, and what ``done`` got (once)."""

    def __init__(self) -> None:
        self.ok = False
        self.results: list[Buffer | None] = []
        self.fut: asyncio.Future[Buffer | None] = asyncio.get_running_loop().create_future()
        self.order: list[str] | None = None

    def done(self, data: Buffer | None) -> None:
        self.results.append(data)
        if self.order is not None:
            self.order.append("write done")
        if not self.fut.done():
            self.fut.set_result(data)

    async def result(self) -> Buffer | None:
        return await asyncio.wait_for(asyncio.shield(self.fut), 5)


def start(
    lu: LogicalUnit, cdb: bytes, data: Received = b"", *, nx: ITNexus = A, edtl: int | None = None
) -> Started:
    s = Started()
    s.ok = lu.start_now(nx, cdb, data, transfer_of(cdb) if edtl is None else edtl, s.done)
    return s


def refused(
    lu: LogicalUnit, cdb: bytes, data: Received = b"", *, nx: ITNexus = A, edtl: int | None = None
) -> bool:
    """start_now declined without calling the backend or ``done``, and without leaving the
    write gate held."""
    be = backend_of(lu)
    calls, shared = len(be.calls), lu._gate.shared
    s = start(lu, cdb, data, nx=nx, edtl=edtl)
    return not s.ok and len(be.calls) == calls and not s.results and lu._gate.shared == shared


async def started_read(lu: LogicalUnit, lba: int, n: int, *, nx: ITNexus = A) -> bytes:
    s = start(lu, cdb10(READ10, lba, n), nx=nx)
    assert s.ok, "start_now refused a plain READ(10)"
    got = await s.result()
    assert got is not None and len(got) == n * BLOCK
    return bytes(got)


async def started_write(lu: LogicalUnit, lba: int, data: bytes, *, nx: ITNexus = A) -> None:
    s = start(lu, cdb10(WRITE10, lba, len(data) // BLOCK), data, nx=nx)
    assert s.ok, "start_now refused a plain WRITE(10)"
    assert await s.result() == b""
    await asyncio.sleep(0)
    assert s.results == [b""]


async def slow_read(lu: LogicalUnit, lba: int, n: int, *, nx: ITNexus = A) -> bytes:
    res = await run(lu, cdb10(READ10, lba, n), nx=nx, edtl=n * BLOCK)
    assert res.status == GOOD, res
    return payload_bytes(res.data)


@pytest.fixture
async def lu() -> LogicalUnit:
    """A LU over a StartedBackend; nexus A has had its POWER ON UA."""
    unit = make_lu()
    await ready(unit)
    return unit


# ---------------------------------------------------------------------------------- happy path


async def test_backend_has_started_but_no_immediate_io(lu: LogicalUnit) -> None:
    be = backend_of(lu)
    assert immediate_io(be) is None
    assert started_io(be) is be
    # execute_now does not apply: the driver goes on to start_now.
    assert lu.execute_now(A, cdb10(READ10, 0, 1), b"", BLOCK) is None
    assert be.calls == []


@pytest.mark.parametrize(
    ("rd", "wr", "build"),
    [(READ10, WRITE10, cdb10), (READ16, WRITE16, cdb16)],
    ids=["10", "16"],
)
async def test_started_write_and_read_round_trip(
    lu: LogicalUnit, rd: int, wr: int, build: Callable[[int, int, int], bytes]
) -> None:
    be = backend_of(lu)
    data = pattern(8 * BLOCK, seed=7)
    # Written by start_now: done comes later, on the loop, with b"".
    s = start(lu, build(wr, 100, 8), data)
    assert s.ok and s.results == []
    assert be.calls == [("write", 100 * BLOCK, 8 * BLOCK)]
    assert await s.result() == b""
    # ... read back by the full path and by start_now.
    assert await slow_read(lu, 100, 8) == data
    s = start(lu, build(rd, 100, 8))
    assert s.ok and s.results == []
    got = await s.result()
    assert got is not None and bytes(got) == data
    # A partial overlap reads the right blocks.
    s = start(lu, build(rd, 104, 2))
    got = await s.result()
    assert got is not None and bytes(got) == data[4 * BLOCK : 6 * BLOCK]
    # Written by the full path, read by start_now.
    data2 = pattern(4 * BLOCK, seed=9)
    assert (await run(lu, build(wr, 2000, 4), data2)).status == GOOD
    s = start(lu, build(rd, 2000, 4))
    got = await s.result()
    assert got is not None and bytes(got) == data2
    # Untouched blocks read as zeros; done was called exactly once per command.
    assert await started_read(lu, 0, 1) == bytes(BLOCK)
    await asyncio.sleep(0)
    assert s.results == [data2]
    assert lu._gate.shared == 0
    assert be.in_flight == 0


async def test_write_accepts_bytearray_and_memoryview(lu: LogicalUnit) -> None:
    data = pattern(2 * BLOCK, seed=3)
    s = start(lu, cdb10(WRITE10, 10, 2), bytearray(data))
    assert s.ok and await s.result() == b""
    data2 = pattern(2 * BLOCK, seed=4)
    s = start(lu, cdb10(WRITE10, 12, 2), memoryview(data2))
    assert s.ok and await s.result() == b""
    assert await slow_read(lu, 10, 4) == data + data2


async def test_last_block_and_many_at_once(lu: LogicalUnit) -> None:
    data = pattern(BLOCK, seed=5)
    await started_write(lu, BLOCKS - 1, data)
    assert await started_read(lu, BLOCKS - 1, 1) == data
    # Many commands in flight together, each completed with its own data.
    blocks = [pattern(BLOCK, seed=100 + i) for i in range(64)]
    writes = [start(lu, cdb16(WRITE16, 500 + i, 1), b) for i, b in enumerate(blocks)]
    assert all(w.ok for w in writes)
    assert lu._gate.shared == 64
    assert [await w.result() for w in writes] == [b""] * 64
    assert lu._gate.shared == 0
    reads = [start(lu, cdb16(READ16, 500 + i, 1)) for i in range(64)]
    assert [bytes(await r.result() or b"?") for r in reads] == blocks


async def test_start_now_leaves_unit_attentions_alone(lu: LogicalUnit) -> None:
    await started_write(lu, 0, bytes(BLOCK))
    assert lu.pending_unit_attentions(A) == []
    assert lu.pending_unit_attentions(B) == [POWER_ON_RESET]
    twin = ITNexus(A.initiator_name, A.isid, A.target_name, A.tpgt)
    assert await started_read(lu, 0, 1, nx=twin) == bytes(BLOCK)


# --------------------------------------------------------------------------- backend failure


async def test_failed_read_gives_done_none(lu: LogicalUnit) -> None:
    be = backend_of(lu)
    data = pattern(BLOCK, seed=21)
    await started_write(lu, 3, data)
    be.fail = -errno.EIO
    s = start(lu, cdb10(READ10, 3, 1))
    assert s.ok  # it was started: the failure comes with the completion
    assert await s.result() is None
    await asyncio.sleep(0)
    assert s.results == [None]
    assert be.log[-1] == "started read 1536 failed"
    # The full path (what the driver reruns) still reads it.
    be.fail = None
    assert await slow_read(lu, 3, 1) == data


async def test_failed_write_gives_done_none_and_releases_the_gate(lu: LogicalUnit) -> None:
    be = backend_of(lu)
    be.fail = -errno.ENOSPC
    data = pattern(2 * BLOCK, seed=22)
    s = start(lu, cdb16(WRITE16, 40, 2), data)
    assert s.ok
    assert lu._gate.shared == 1
    assert await s.result() is None
    assert lu._gate.shared == 0
    assert not lu._gate.exclusive
    await asyncio.sleep(0)
    assert s.results == [None]
    # Nothing written; the rerun through execute() writes it.
    be.fail = None
    assert await slow_read(lu, 40, 2) == bytes(2 * BLOCK)
    assert (await run(lu, cdb16(WRITE16, 40, 2), data)).status == GOOD
    assert await started_read(lu, 40, 2) == data


async def test_rv_zero_is_success(lu: LogicalUnit) -> None:
    # librbd reports 0 for a write; only rv < 0 is a failure.
    be = backend_of(lu)
    be.fail = 0
    s = start(lu, cdb10(WRITE10, 1, 1), pattern(BLOCK))
    assert s.ok and await s.result() == b""
    s = start(lu, cdb10(READ10, 1, 1))
    assert s.ok and await s.result() == bytes(BLOCK)


# ------------------------------------------------------------------ the write gate and C&W


async def test_started_write_holds_the_gate_shared_until_done(lu: LogicalUnit) -> None:
    be = backend_of(lu)
    be.hold = True
    gate = lu._gate
    s = start(lu, cdb10(WRITE10, 7, 1), pattern(BLOCK, seed=31))
    assert s.ok and gate.shared == 1
    s2 = start(lu, cdb10(WRITE10, 8, 1), pattern(BLOCK, seed=32))
    assert s2.ok and gate.shared == 2
    # Reads do not take the gate.
    r = start(lu, cdb10(READ10, 7, 1))
    assert r.ok and gate.shared == 2
    for _ in range(5):
        await asyncio.sleep(0)
    assert s.results == s2.results == r.results == [] and gate.shared == 2
    be.release()
    assert await s.result() == b"" and await s2.result() == b""
    got = await r.result()
    assert got is not None and len(got) == BLOCK
    assert gate.shared == 0 and not gate.exclusive


async def test_compare_and_write_waits_for_a_started_write(lu: LogicalUnit) -> None:
    be = backend_of(lu)
    gate = lu._gate
    old, new, caw_data = pattern(BLOCK, 41), pattern(BLOCK, 42), pattern(BLOCK, 43)
    await started_write(lu, 9, old)
    be.hold = True
    order: list[str] = []
    s = start(lu, cdb10(WRITE10, 9, 1), new)
    assert s.ok and gate.shared == 1
    s.order = order  # done() notes "write done" when it is called

    async def caw() -> ScsiResult:
        # Compares with what the started write puts there: succeeds only if it waited.
        res = await run(lu, caw16(9), new + caw_data, nx=B)
        order.append("caw done")
        return res

    await ready(lu, B)
    task = asyncio.create_task(caw())
    for _ in range(10):
        await asyncio.sleep(0)
    assert not task.done()
    assert gate.exclusive  # the C&W holds the gate and waits for the shared holder
    assert gate.shared == 1
    # Meanwhile a new WRITE does not start (the gate is exclusive); a READ does.
    assert refused(lu, cdb10(WRITE10, 10, 1), pattern(BLOCK, 44))
    r = start(lu, cdb10(READ10, 9, 1))
    assert r.ok
    assert be.calls[-1] == ("read", 9 * BLOCK, BLOCK)
    be.hold = False
    be.release()
    res = await asyncio.wait_for(task, 5)
    assert res.status == GOOD, res
    assert order == ["write done", "caw done"]
    assert be.log.index("started write 4608") < be.log.index("write 4608")
    assert gate.shared == 0 and not gate.exclusive
    assert await started_read(lu, 9, 1) == caw_data
    # The write gate is free again for started writes.
    await started_write(lu, 10, pattern(BLOCK, 45))


async def test_compare_and_write_sees_old_data_without_a_started_write(lu: LogicalUnit) -> None:
    # The converse of the test above: with nothing in flight, the same C&W miscompares.
    old, new = pattern(BLOCK, 41), pattern(BLOCK, 42)
    await started_write(lu, 9, old)
    res = await run(lu, caw16(9), new + pattern(BLOCK, 43))
    assert sense_of(res) == MISCOMPARE
    assert await started_read(lu, 9, 1) == old


async def test_failed_started_write_lets_a_waiting_compare_and_write_go(lu: LogicalUnit) -> None:
    be = backend_of(lu)
    old = pattern(BLOCK, 51)
    await started_write(lu, 11, old)
    be.hold = True
    be.fail = -errno.EIO
    s = start(lu, cdb10(WRITE10, 11, 1), pattern(BLOCK, 52))
    assert s.ok
    task = asyncio.create_task(run(lu, caw16(11), old + pattern(BLOCK, 53)))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not task.done() and lu._gate.exclusive
    be.hold = False
    be.release()
    assert await s.result() is None
    be.fail = None
    res = await asyncio.wait_for(task, 5)
    assert res.status == GOOD, res
    assert lu._gate.shared == 0 and not lu._gate.exclusive
    assert await started_read(lu, 11, 1) == pattern(BLOCK, 53)


# ------------------------------------------------------------------------------- refusal


async def test_refused_write_leaves_the_gate_as_it_was(lu: LogicalUnit) -> None:
    be = backend_of(lu)
    be.refuse = True
    data = pattern(BLOCK, seed=61)
    s = start(lu, cdb10(WRITE10, 12, 1), data)
    assert not s.ok
    assert be.calls == [("write", 12 * BLOCK, BLOCK)]  # asked, and it said no
    assert lu._gate.shared == 0 and not lu._gate.exclusive
    s = start(lu, cdb10(READ10, 12, 1))
    assert not s.ok
    await asyncio.sleep(0)
    assert s.results == []
    # With another started write in flight, a refusal does not touch its hold either.
    be.refuse = False
    be.hold = True
    held = start(lu, cdb10(WRITE10, 13, 1), data)
    assert held.ok and lu._gate.shared == 1
    be.refuse = True
    assert not start(lu, cdb10(WRITE10, 14, 1), data).ok
    assert lu._gate.shared == 1
    be.release()
    assert await held.result() == b""
    assert lu._gate.shared == 0
    # The full path still works (execute uses the coroutines).
    assert (await run(lu, cdb10(WRITE10, 12, 1), data)).status == GOOD
    assert await slow_read(lu, 12, 1) == data


async def test_refused_write_does_not_block_a_compare_and_write(lu: LogicalUnit) -> None:
    be = backend_of(lu)
    be.refuse = True
    assert not start(lu, cdb10(WRITE10, 15, 1), pattern(BLOCK)).ok
    res = await asyncio.wait_for(run(lu, caw16(15), bytes(BLOCK) + pattern(BLOCK, 62)), 5)
    assert res.status == GOOD


# ----------------------------------------------------------------------- fall-back conditions


async def test_first_command_of_a_nexus_is_not_started() -> None:
    lu = make_lu()
    assert refused(lu, cdb10(READ10, 0, 1))
    assert refused(lu, cdb10(WRITE10, 0, 1), bytes(BLOCK))
    assert lu.pending_unit_attentions(A) == [POWER_ON_RESET]
    assert sense_of(await run(lu, cdb10(READ10, 0, 1))) == code(POWER_ON_RESET)
    assert await started_read(lu, 0, 1) == bytes(BLOCK)


async def test_pending_unit_attention_is_not_started(lu: LogicalUnit) -> None:
    await ready(lu, B)
    lu.reset()
    data = pattern(BLOCK, seed=71)
    assert refused(lu, cdb10(WRITE10, 5, 1), data)
    assert refused(lu, cdb16(READ16, 5, 1))
    assert sense_of(await run(lu, cdb10(WRITE10, 5, 1), data)) == code(BUS_DEVICE_RESET)
    await started_write(lu, 5, data)
    assert refused(lu, cdb10(READ10, 5, 1), nx=B)
    assert backend_of(lu).calls == [("write", 5 * BLOCK, BLOCK)]


RESERVE6 = bytes.fromhex("160000000000")
RELEASE6 = bytes.fromhex("170000000000")


def prout(sa: int, type_: int = 0, plen: int = 24) -> bytes:
    return struct.pack(">BBBxxIB", 0x5F, sa, type_, plen, 0)


def prout_params(key: int = 0, sark: int = 0) -> bytes:
    return struct.pack(">QQxxxxBxxx", key, sark, 0)


async def test_scsi2_reservation_is_not_started(lu: LogicalUnit) -> None:
    await ready(lu, B)
    assert (await run(lu, RESERVE6)).status == GOOD
    for nx in (A, B):
        assert refused(lu, cdb10(READ10, 1, 1), nx=nx)
        assert refused(lu, cdb10(WRITE10, 1, 1), bytes(BLOCK), nx=nx)
    assert (await run(lu, cdb10(READ10, 1, 1), nx=B)).status == RESERVATION_CONFLICT
    assert (await run(lu, RELEASE6)).status == GOOD
    assert await started_read(lu, 1, 1, nx=B) == bytes(BLOCK)


async def test_persistent_reservation_is_not_started(lu: LogicalUnit) -> None:
    await ready(lu, B)
    assert (await run(lu, prout(6), prout_params(sark=0xA))).status == GOOD
    assert await started_read(lu, 0, 1) == bytes(BLOCK)  # a registration alone: still fast
    assert (await run(lu, prout(1, 1), prout_params(key=0xA))).status == GOOD
    for nx in (A, B):
        assert refused(lu, cdb10(READ10, 0, 1), nx=nx)
        assert refused(lu, cdb10(WRITE10, 0, 1), bytes(BLOCK), nx=nx)
    assert (await run(lu, cdb10(WRITE10, 0, 1), bytes(BLOCK), nx=B)).status == (
        RESERVATION_CONFLICT
    )
    assert (await run(lu, prout(2, 1), prout_params(key=0xA))).status == GOOD
    assert await started_read(lu, 0, 1, nx=B) == bytes(BLOCK)


@pytest.mark.parametrize(
    "state",
    [AluaState.STANDBY, AluaState.UNAVAILABLE, AluaState.TRANSITIONING, AluaState.OFFLINE],
)
async def test_restricted_alua_port_is_not_started(state: AluaState) -> None:
    lu = make_lu(port_groups=PortGroups((PortGroup(1, state), PortGroup(2))))
    local = nexus("iqn.x:a", 1, tpgt=1)
    remote = nexus("iqn.x:a", 1, tpgt=2)
    await ready(lu, local)
    await ready(lu, remote)
    data = pattern(BLOCK, seed=81)
    assert refused(lu, cdb10(READ10, 0, 1), nx=local)
    assert refused(lu, cdb10(WRITE10, 0, 1), data, nx=local)
    assert (await run(lu, cdb10(READ10, 0, 1), nx=local)).status == CHECK_CONDITION
    await started_write(lu, 0, data, nx=remote)
    assert await started_read(lu, 0, 1, nx=remote) == data


async def test_sanitize_is_not_started(lu: LogicalUnit) -> None:
    release = asyncio.Event()

    async def job() -> None:
        await release.wait()

    task = lu.start_sanitize(job())
    assert refused(lu, cdb10(READ10, 0, 1))
    assert refused(lu, cdb10(WRITE10, 0, 1), bytes(BLOCK))
    assert sense_of(await run(lu, cdb10(READ10, 0, 1))) == SANITIZE_IN_PROGRESS
    release.set()
    await asyncio.wait_for(task, 5)
    assert await started_read(lu, 0, 1) == bytes(BLOCK)

    async def failing() -> None:
        raise BackendError("overwrite failed")

    await asyncio.wait_for(lu.start_sanitize(failing()), 5)
    assert lu.sanitize_failed
    assert refused(lu, cdb10(READ10, 0, 1))
    assert refused(lu, cdb10(WRITE10, 0, 1), bytes(BLOCK))
    lu.sanitize_failed = False
    for state in ("running", "failed"):
        lu.cluster_sanitize(state)
        assert refused(lu, cdb10(READ10, 0, 1))
        assert refused(lu, cdb10(WRITE10, 0, 1), bytes(BLOCK))
        lu.cluster_sanitize(None)
    await started_write(lu, 0, pattern(BLOCK, 82))


@pytest.mark.parametrize("protect", [0x20, 0x40, 0x80, 0xE0])
@pytest.mark.parametrize("op", [READ10, WRITE10, READ16, WRITE16])
async def test_protection_bits_are_not_started(lu: LogicalUnit, op: int, protect: int) -> None:
    build = cdb10 if op in (READ10, WRITE10) else cdb16
    data = pattern(BLOCK) if op in (WRITE10, WRITE16) else b""
    assert refused(lu, build(op, 0, 1, flags=protect), data, edtl=BLOCK)


@pytest.mark.parametrize("op", [READ10, WRITE10, READ16, WRITE16])
async def test_zero_length_is_not_started(lu: LogicalUnit, op: int) -> None:
    build = cdb10 if op in (READ10, WRITE10) else cdb16
    assert refused(lu, build(op, 7, 0), b"", edtl=0)


async def test_length_not_edtl_is_not_started(lu: LogicalUnit) -> None:
    data = pattern(4 * BLOCK, seed=91)
    for edtl in (0, BLOCK, 4 * BLOCK - 1, 4 * BLOCK + 1, 8 * BLOCK):
        assert refused(lu, cdb10(READ10, 20, 4), edtl=edtl)
        assert refused(lu, cdb16(READ16, 20, 4), edtl=edtl)
        assert refused(lu, cdb10(WRITE10, 20, 4), data, edtl=edtl)
        assert refused(lu, cdb16(WRITE16, 20, 4), data, edtl=edtl)


async def test_data_out_length_mismatch_is_not_started(lu: LogicalUnit) -> None:
    data = pattern(4 * BLOCK, seed=92)
    assert refused(lu, cdb10(WRITE10, 40, 4), data[: 3 * BLOCK])
    assert refused(lu, cdb10(WRITE10, 40, 4), b"")
    assert refused(lu, cdb16(WRITE16, 40, 4), data + pattern(BLOCK, 93))


@pytest.mark.parametrize(
    ("lba", "n"), [(BLOCKS - 1, 2), (BLOCKS, 1), (BLOCKS + 100, 8), (2**32 - 1, 1)]
)
@pytest.mark.parametrize("op", [READ10, WRITE10, READ16, WRITE16])
async def test_lba_out_of_range_is_not_started(lu: LogicalUnit, op: int, lba: int, n: int) -> None:
    build = cdb10 if op in (READ10, WRITE10) else cdb16
    data = pattern(n * BLOCK) if op in (WRITE10, WRITE16) else b""
    assert refused(lu, build(op, lba, n), data)


@pytest.mark.parametrize("lba", [2**63, 2**64 - 1])
async def test_huge_lba_16_is_not_started(lu: LogicalUnit, lba: int) -> None:
    assert refused(lu, cdb16(READ16, lba, 1))
    assert refused(lu, cdb16(WRITE16, lba, 1), pattern(BLOCK))


async def test_transfer_over_max_is_not_started() -> None:
    lu = make_lu(limits=BlockLimits(max_transfer_bytes=8 * BLOCK))
    await ready(lu)
    data = pattern(9 * BLOCK, seed=94)
    assert refused(lu, cdb10(WRITE10, 0, 9), data)
    assert refused(lu, cdb16(WRITE16, 0, 9), data)
    assert refused(lu, cdb10(READ10, 0, 9))
    assert refused(lu, cdb16(READ16, 0, 9))
    await started_write(lu, 0, data[: 8 * BLOCK])
    assert await started_read(lu, 0, 8) == data[: 8 * BLOCK]


@pytest.mark.parametrize("op", [WRITE10, WRITE16])
async def test_fua_write_is_not_started(lu: LogicalUnit, op: int) -> None:
    build = cdb10 if op == WRITE10 else cdb16
    data = pattern(2 * BLOCK, seed=95)
    assert refused(lu, build(op, 60, 2, flags=0x08), data)
    assert (await run(lu, build(op, 60, 2, flags=0x08), data)).status == GOOD
    # DPO alone does not matter.
    s = start(lu, build(op, 62, 2, flags=0x10), data)
    assert s.ok and await s.result() == b""


async def test_write_cache_off_is_not_started(lu: LogicalUnit) -> None:
    assert lu.set_mode(wce=False)
    data = pattern(BLOCK, seed=96)
    assert refused(lu, cdb10(WRITE10, 70, 1), data)
    assert refused(lu, cdb16(WRITE16, 70, 1), data)
    assert (await run(lu, cdb10(WRITE10, 70, 1), data)).status == GOOD
    assert await started_read(lu, 70, 1) == data  # reads do not depend on WCE
    lu.set_mode(wce=True)
    await started_write(lu, 71, data)


async def test_read_only_lu_is_not_started() -> None:
    lu = make_lu(read_only=True)
    await ready(lu)
    data = pattern(BLOCK, seed=97)
    assert refused(lu, cdb10(WRITE10, 0, 1), data)
    assert refused(lu, cdb16(WRITE16, 0, 1), data)
    assert sense_of(await run(lu, cdb10(WRITE10, 0, 1), data)) == WRITE_PROTECTED
    assert await started_read(lu, 0, 1) == bytes(BLOCK)


async def test_software_write_protect_is_not_started(lu: LogicalUnit) -> None:
    assert lu.set_mode(swp=True)
    data = pattern(BLOCK, seed=98)
    assert refused(lu, cdb10(WRITE10, 0, 1), data)
    assert sense_of(await run(lu, cdb16(WRITE16, 0, 1), data)) == WRITE_PROTECTED
    lu.set_mode(swp=False)
    await started_write(lu, 0, data)


async def test_exclusive_gate_is_not_started_for_writes(lu: LogicalUnit) -> None:
    gate = lu._gate
    entered, leave = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with gate.exclusively():
            entered.set()
            await leave.wait()

    holder = asyncio.create_task(hold())
    await asyncio.wait_for(entered.wait(), 5)
    assert refused(lu, cdb10(WRITE10, 80, 1), pattern(BLOCK))
    assert refused(lu, cdb16(WRITE16, 80, 1), pattern(BLOCK))
    assert await started_read(lu, 80, 1) == bytes(BLOCK)
    leave.set()
    await asyncio.wait_for(holder, 5)
    await started_write(lu, 80, pattern(BLOCK, 99))


@pytest.mark.parametrize(
    "cdb",
    [
        bytes.fromhex("08 00 00 00 01 00"),  # READ(6)
        bytes.fromhex("0a 00 00 00 01 00"),  # WRITE(6)
        bytes.fromhex("a8 00 00 00 00 00 00 00 00 01 00 00"),  # READ(12)
        bytes.fromhex("aa 00 00 00 00 00 00 00 00 01 00 00"),  # WRITE(12)
        cdb10(0x2F, 0, 1),  # VERIFY(10)
        cdb10(0x2E, 0, 1),  # WRITE AND VERIFY(10)
        cdb16(0x93, 0, 1),  # WRITE SAME(16)
        cdb10(0x35, 0, 0),  # SYNCHRONIZE CACHE(10)
        caw16(0),  # COMPARE AND WRITE
        bytes(6),  # TEST UNIT READY
        bytes(16),
        bytes([READ10, 0, 0, 0, 0, 0]),  # a READ(10) opcode in 6 bytes
        cdb10(READ16, 0, 1),  # READ(16) in 10 bytes
    ],
)
async def test_other_opcodes_are_not_started(lu: LogicalUnit, cdb: bytes) -> None:
    for data, edtl in (
        (b"", 0),
        (b"", BLOCK),
        (bytes(BLOCK), BLOCK),
        (bytes(2 * BLOCK), 2 * BLOCK),
    ):
        assert refused(lu, cdb, data, edtl=edtl)


async def test_non_default_command_table_is_not_started() -> None:
    lu = make_lu(table=CommandTable(DEFAULT_SPECS))
    await ready(lu)
    data = pattern(BLOCK, seed=101)
    assert refused(lu, cdb10(WRITE10, 0, 1), data)
    assert refused(lu, cdb10(READ10, 0, 1))
    assert (await run(lu, cdb10(WRITE10, 0, 1), data)).status == GOOD
    assert await slow_read(lu, 0, 1) == data


async def test_started_io_needs_both_methods_callable() -> None:
    class OnlyRead(StartedBackend):
        start_write = None  # type: ignore[assignment]

    class OnlyWrite(StartedBackend):
        start_read = None  # type: ignore[assignment]

    for be in (OnlyRead(), OnlyWrite()):
        assert started_io(be) is None
        lu = make_lu(be)
        await ready(lu)
        s = Started()
        assert not lu.start_now(A, cdb10(READ10, 0, 1), b"", BLOCK, s.done)
        assert not lu.start_now(A, cdb10(WRITE10, 0, 1), bytes(BLOCK), BLOCK, s.done)
        assert be.calls == [] and lu._gate.shared == 0


async def test_memory_backend_has_no_started_io() -> None:
    lu = make_lu(MemoryBackend(SIZE, BLOCK))
    await ready(lu)
    s = Started()
    assert started_io(lu.backend) is None
    assert not lu.start_now(A, cdb10(READ10, 0, 1), b"", BLOCK, s.done)
    assert not lu.start_now(A, cdb10(WRITE10, 0, 1), bytes(BLOCK), BLOCK, s.done)
    assert lu._gate.shared == 0


# ------------------------------------------------------------------- both kinds of fast I/O


async def test_backend_with_immediate_and_started_io() -> None:
    be = BothBackend()
    assert immediate_io(be) is be and started_io(be) is be
    lu = make_lu(be)
    await ready(lu)
    data = pattern(2 * BLOCK, seed=111)
    # execute_now (what the driver tries first) completes at once, without start_*.
    assert lu.execute_now(A, cdb10(WRITE10, 30, 2), data, len(data)) == b""
    got = lu.execute_now(A, cdb10(READ10, 30, 2), b"", len(data))
    assert got is not None and payload_bytes(got) == data
    assert be.started == []
    assert lu._gate.shared == 0
    # start_now works as well, with the same checks.
    data2 = pattern(2 * BLOCK, seed=112)
    s = Started()
    assert lu.start_now(A, cdb16(WRITE16, 32, 2), data2, len(data2), s.done)
    assert lu._gate.shared == 1
    assert await s.result() == b""
    assert lu._gate.shared == 0
    s = Started()
    assert lu.start_now(A, cdb16(READ16, 30, 4), b"", 4 * BLOCK, s.done)
    got = await s.result()
    assert got is not None and bytes(got) == data + data2
    assert be.started == ["write", "read"]
    # The same command refused by one fast path is refused by the other.
    assert lu.set_mode(wce=False)
    assert lu.execute_now(A, cdb10(WRITE10, 30, 2), data, len(data)) is None
    assert not lu.start_now(A, cdb10(WRITE10, 30, 2), data, len(data), Started().done)
    assert be.started == ["write", "read"]
