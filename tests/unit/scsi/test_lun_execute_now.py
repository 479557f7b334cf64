"""``LogicalUnit.execute_now``: the synchronous READ/WRITE (10/16) fast path.

Every condition under which the fast path must step aside (return None) is checked together
with what the full ``execute`` then answers for the same command, and the happy path is
checked both ways round (written by one path, read back by the other) on the memory and the
file backends.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from iscsigw._types import Buffer, FileSlice, Payload
from iscsigw.backends.base import immediate_io
from iscsigw.backends.file import FileBackend, open_file
from iscsigw.backends.memory import MemoryBackend
from iscsigw.errors import BackendError, BackendNoSpace
from iscsigw.scsi.alua import AluaState, PortGroup, PortGroups
from iscsigw.scsi.dispatch import DEFAULT_SPECS, CommandTable
from iscsigw.scsi.identity import LuIdentity
from iscsigw.scsi.limits import BlockLimits
from iscsigw.scsi.lun import LogicalUnit
from iscsigw.scsi.sense import (
    ASYMMETRIC_ACCESS_STATE_CHANGED,
    BUS_DEVICE_RESET,
    I_T_NEXUS_LOSS,
    MODE_PARAMS_CHANGED,
    POWER_ON_RESET,
    SenseCode,
)
from iscsigw.scsi.task import ITNexus, ScsiCommand, ScsiResult

BLOCK = 512
BLOCKS = 4096  # 2 MiB
SIZE = BLOCK * BLOCKS
UUID = "0d5c8f5e-4c55-4bb4-a8a1-6f0f3b1e7c21"
TARGET = "iqn.2026-11.io.iscsigw:fastpath"

READ10, WRITE10, READ16, WRITE16 = 0x28, 0x2A, 0x88, 0x8A
GOOD, CHECK_CONDITION, RESERVATION_CONFLICT = 0x00, 0x02, 0x18
TUR = bytes(6)

# Sense codes as (key, asc, ascq), spelled out independently of the implementation.
LBA_OUT_OF_RANGE = (0x5, 0x21, 0x00)
INVALID_FIELD_IN_CDB = (0x5, 0x24, 0x00)
INVALID_FIELD_IN_CMD_IU = (0x5, 0x0E, 0x03)
WRITE_PROTECTED = (0x7, 0x27, 0x00)
SPACE_ALLOCATION_FAILED = (0x7, 0x27, 0x07)
INTERNAL_TARGET_FAILURE = (0x4, 0x44, 0x00)
SANITIZE_IN_PROGRESS = (0x2, 0x04, 0x1B)
SANITIZE_FAILED = (0x3, 0x31, 0x03)


# ------------------------------------------------------------------------------------ helpers


def nexus(initiator: str = "iqn.1994-05.com.example:a", isid: int = 0x1, tpgt: int = 1) -> ITNexus:
    return ITNexus(initiator, isid, TARGET, tpgt)


A = nexus("iqn.1994-05.com.example:a", 0x1)
B = nexus("iqn.1994-05.com.example:b", 0x2)


def cdb10(op: int, lba: int, n: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIBHB", op, flags, lba, 0, n, 0)


def cdb16(op: int, lba: int, n: int, flags: int = 0) -> bytes:
    return struct.pack(">BBQIBB", op, flags, lba, n, 0, 0)


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
    """(key, asc, ascq) of a CHECK CONDITION with fixed-format sense."""
    assert res.status == CHECK_CONDITION, f"status {res.status:#x}, expected CHECK CONDITION"
    s = res.sense
    assert s[0] & 0x7F == 0x70, s.hex()
    return s[2] & 0x0F, s[12], s[13]


def code(c: SenseCode) -> tuple[int, int, int]:
    return c.key, c.asc, c.ascq


def make_lu(backend: object | None = None, **kw: object) -> LogicalUnit:
    be = backend if backend is not None else MemoryBackend(SIZE, BLOCK)
    kw.setdefault("port_groups", PortGroups.implicit([1, 2], owner=1))
    return LogicalUnit(be, LuIdentity.from_stable_id(UUID), **kw)  # type: ignore[arg-type]


async def run(
    lu: LogicalUnit,
    cdb: bytes,
    data: Buffer = b"",
    *,
    nx: ITNexus = A,
    edtl: int | None = None,
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


def now(
    lu: LogicalUnit, cdb: bytes, data: Buffer = b"", *, nx: ITNexus = A, edtl: int | None = None
) -> Payload | None:
    """The fast path with EDTL = what the CDB transfers (unless given)."""
    if edtl is None:
        n = (
            struct.unpack_from(">H", cdb, 7)[0]
            if len(cdb) == 10
            else struct.unpack_from(">I", cdb, 10)[0]
        )
        edtl = n * lu.block_size
    return lu.execute_now(nx, cdb, data, edtl)


def fast_read(lu: LogicalUnit, lba: int, n: int, *, nx: ITNexus = A) -> bytes:
    got = now(lu, cdb10(READ10, lba, n), nx=nx)
    assert got is not None, "the fast path refused a plain READ(10)"
    assert len(got) == n * BLOCK
    return payload_bytes(got)


async def slow_read(lu: LogicalUnit, lba: int, n: int, *, nx: ITNexus = A) -> bytes:
    res = await run(lu, cdb10(READ10, lba, n), nx=nx, edtl=n * BLOCK)
    assert res.status == GOOD, res
    return payload_bytes(res.data)


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(params=["memory", "file"])
async def any_lu(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LogicalUnit]:
    """A LU over each backend with immediate I/O; nexus A has had its POWER ON UA."""
    if request.param == "memory":
        backend: MemoryBackend | FileBackend = MemoryBackend(SIZE, BLOCK)
    else:
        backend = await open_file(
            path=str(tmp_path / "disk.img"), size=SIZE, block_size=BLOCK, create=True
        )
    lu = make_lu(backend)
    await ready(lu)
    try:
        yield lu
    finally:
        await backend.close()


@pytest.fixture
async def lu() -> LogicalUnit:
    """A memory LU on which nexus A has had its POWER ON UA."""
    unit = make_lu()
    await ready(unit)
    return unit


@pytest.fixture
async def file_lu(tmp_path: Path) -> AsyncIterator[LogicalUnit]:
    backend = await open_file(
        path=str(tmp_path / "disk.img"), size=SIZE, block_size=BLOCK, create=True
    )
    unit = make_lu(backend)
    await ready(unit)
    try:
        yield unit
    finally:
        await backend.close()


# ---------------------------------------------------------------------------------- happy path


async def test_backends_have_immediate_io(any_lu: LogicalUnit) -> None:
    backend: object = any_lu.backend
    assert immediate_io(backend) is backend


@pytest.mark.parametrize(
    ("rd", "wr", "build"),
    [(READ10, WRITE10, cdb10), (READ16, WRITE16, cdb16)],
    ids=["10", "16"],
)
async def test_write_now_read_back_both_ways(
    any_lu: LogicalUnit, rd: int, wr: int, build: Callable[[int, int, int], bytes]
) -> None:
    mk = build
    lu = any_lu
    data = pattern(8 * BLOCK, seed=7)
    # Written by the fast path ...
    assert lu.execute_now(A, mk(wr, 100, 8), data, len(data)) == b""
    # ... read back by the full path and by the fast path.
    res = await run(lu, mk(rd, 100, 8), edtl=len(data))
    assert res.status == GOOD and payload_bytes(res.data) == data
    got = lu.execute_now(A, mk(rd, 100, 8), b"", len(data))
    assert got is not None and payload_bytes(got) == data
    # A partial overlap reads the right blocks.
    got = lu.execute_now(A, mk(rd, 104, 2), b"", 2 * BLOCK)
    assert got is not None and payload_bytes(got) == data[4 * BLOCK : 6 * BLOCK]
    # Written by the full path, read by the fast path.
    data2 = pattern(4 * BLOCK, seed=9)
    res = await run(lu, mk(wr, 2000, 4), data2)
    assert res.status == GOOD
    got = lu.execute_now(A, mk(rd, 2000, 4), b"", len(data2))
    assert got is not None and payload_bytes(got) == data2
    # Untouched blocks still read as zeros.
    got = lu.execute_now(A, mk(rd, 0, 1), b"", BLOCK)
    assert got is not None and payload_bytes(got) == bytes(BLOCK)


async def test_write_accepts_bytearray_and_memoryview(any_lu: LogicalUnit) -> None:
    lu = any_lu
    data = pattern(2 * BLOCK, seed=3)
    assert lu.execute_now(A, cdb10(WRITE10, 10, 2), bytearray(data), len(data)) == b""
    assert fast_read(lu, 10, 2) == data
    data2 = pattern(2 * BLOCK, seed=4)
    assert lu.execute_now(A, cdb10(WRITE10, 12, 2), memoryview(data2), len(data2)) == b""
    assert await slow_read(lu, 10, 4) == data + data2


async def test_last_block_of_the_device(any_lu: LogicalUnit) -> None:
    lu = any_lu
    data = pattern(BLOCK, seed=5)
    assert now(lu, cdb16(WRITE16, BLOCKS - 1, 1), data) == b""
    assert fast_read(lu, BLOCKS - 1, 1) == data


async def test_large_reads_from_a_file_are_file_slices(file_lu: LogicalUnit) -> None:
    lu = file_lu
    big = 64 * 1024
    data = pattern(big, seed=11)
    assert now(lu, cdb10(WRITE10, 256, big // BLOCK), data) == b""
    got = now(lu, cdb10(READ10, 256, big // BLOCK))
    assert isinstance(got, FileSlice)
    assert (got.offset, got.length) == (256 * BLOCK, big)
    assert got.materialize() == data
    # The full path gives the same (also as a slice).
    res = await run(lu, cdb10(READ10, 256, big // BLOCK), edtl=big)
    assert isinstance(res.data, FileSlice) and res.data.materialize() == data
    # Just below the threshold: bytes.
    got = now(lu, cdb16(READ16, 256, big // BLOCK - 1))
    assert got is not None and not isinstance(got, FileSlice)
    assert bytes(got) == data[: big - BLOCK]


async def test_large_reads_from_memory_are_bytes(lu: LogicalUnit) -> None:
    big = 128 * 1024
    data = pattern(big, seed=12)
    assert now(lu, cdb10(WRITE10, 0, big // BLOCK), data) == b""
    got = now(lu, cdb10(READ10, 0, big // BLOCK))
    assert got is not None and not isinstance(got, FileSlice) and bytes(got) == data


async def test_fast_writes_reach_the_file(file_lu: LogicalUnit, tmp_path: Path) -> None:
    data = pattern(4 * BLOCK, seed=13)
    assert now(file_lu, cdb10(WRITE10, 8, 4), data) == b""
    with open(tmp_path / "disk.img", "rb") as f:
        f.seek(8 * BLOCK)
        assert f.read(len(data)) == data


async def test_fast_path_leaves_unit_attentions_alone(lu: LogicalUnit) -> None:
    assert now(lu, cdb10(WRITE10, 0, 1), bytes(BLOCK)) == b""
    assert lu.pending_unit_attentions(A) == []
    assert lu.pending_unit_attentions(B) == [POWER_ON_RESET]
    # An equal but distinct nexus object is the same I_T nexus.
    twin = ITNexus(A.initiator_name, A.isid, A.target_name, A.tpgt)
    assert twin is not A
    assert fast_read(lu, 0, 1, nx=twin) == bytes(BLOCK)


# ---------------------------------------------------------------- unit attentions and nexuses


async def test_first_command_of_a_nexus_takes_the_full_path() -> None:
    lu = make_lu()
    # No queue exists for the nexus yet: POWER ON/RESET is still to be reported.
    assert now(lu, cdb10(READ10, 0, 1)) is None
    assert now(lu, cdb10(WRITE10, 0, 1), bytes(BLOCK)) is None
    # The fast path did not create the queue nor consume the UA ...
    assert lu.pending_unit_attentions(A) == [POWER_ON_RESET]
    # ... which the full path reports on the READ itself.
    res = await run(lu, cdb10(READ10, 0, 1))
    assert sense_of(res) == code(POWER_ON_RESET)
    assert fast_read(lu, 0, 1) == bytes(BLOCK)
    # Another nexus still has its own POWER ON pending.
    assert now(lu, cdb10(READ10, 0, 1), nx=B) is None
    assert sense_of(await run(lu, cdb10(READ10, 0, 1), nx=B)) == code(POWER_ON_RESET)
    assert fast_read(lu, 0, 1, nx=B) == bytes(BLOCK)


async def test_pending_unit_attention_takes_the_full_path(lu: LogicalUnit) -> None:
    await ready(lu, B)
    lu.reset()  # LOGICAL UNIT RESET elsewhere: 29/03 on every nexus
    data = pattern(BLOCK, seed=21)
    assert now(lu, cdb10(WRITE10, 5, 1), data) is None
    assert now(lu, cdb16(READ16, 5, 1)) is None
    res = await run(lu, cdb10(WRITE10, 5, 1), data)
    assert sense_of(res) == code(BUS_DEVICE_RESET)
    # The write was not done (the UA replaced it); now the fast path is back.
    assert fast_read(lu, 5, 1) == bytes(BLOCK)
    assert now(lu, cdb10(WRITE10, 5, 1), data) == b""
    assert fast_read(lu, 5, 1) == data
    # B still has its UA.
    assert now(lu, cdb10(READ10, 5, 1), nx=B) is None
    assert sense_of(await run(lu, cdb10(READ10, 5, 1), nx=B)) == code(BUS_DEVICE_RESET)


async def test_unit_attention_for_another_nexus_only(lu: LogicalUnit) -> None:
    await ready(lu, B)
    lu.mode_parameters_changed(by=A)  # 2A/01 to everyone but A
    assert fast_read(lu, 0, 1) == bytes(BLOCK)
    assert now(lu, cdb10(READ10, 0, 1), nx=B) is None
    assert sense_of(await run(lu, cdb10(READ10, 0, 1), nx=B)) == code(MODE_PARAMS_CHANGED)
    assert fast_read(lu, 0, 1, nx=B) == bytes(BLOCK)


async def test_alua_change_unit_attention(lu: LogicalUnit) -> None:
    lu.set_port_groups(PortGroups.implicit([1, 2], owner=2))  # AO moves: 2A/06 queued
    assert now(lu, cdb10(READ10, 0, 1)) is None
    res = await run(lu, cdb10(READ10, 0, 1))
    assert sense_of(res) == code(ASYMMETRIC_ACCESS_STATE_CHANGED)
    # Port 1 is Active/Non-optimized now: media access still allowed, fast.
    assert fast_read(lu, 0, 1) == bytes(BLOCK)


async def test_nexus_loss_and_forgotten_nexus(lu: LogicalUnit) -> None:
    lu.nexus_lost(A)
    assert now(lu, cdb10(READ10, 0, 1)) is None
    assert sense_of(await run(lu, cdb10(READ10, 0, 1))) == code(I_T_NEXUS_LOSS)
    assert fast_read(lu, 0, 1) == bytes(BLOCK)
    lu.forget_nexus(A)
    assert now(lu, cdb10(READ10, 0, 1)) is None
    assert sense_of(await run(lu, cdb10(READ10, 0, 1))) == code(POWER_ON_RESET)
    assert fast_read(lu, 0, 1) == bytes(BLOCK)


# ------------------------------------------------------------------------------- reservations

RESERVE6 = bytes.fromhex("160000000000")
RELEASE6 = bytes.fromhex("170000000000")


async def test_scsi2_reservation_takes_the_full_path(lu: LogicalUnit) -> None:
    await ready(lu, B)
    assert (await run(lu, RESERVE6)).status == GOOD
    data = pattern(BLOCK, seed=31)
    # Even the holder goes through the full path, which lets it in.
    assert now(lu, cdb10(WRITE10, 1, 1), data) is None
    assert now(lu, cdb10(READ10, 1, 1)) is None
    assert (await run(lu, cdb10(WRITE10, 1, 1), data)).status == GOOD
    assert await slow_read(lu, 1, 1) == data
    # Anyone else gets RESERVATION CONFLICT.
    assert now(lu, cdb10(READ10, 1, 1), nx=B) is None
    assert now(lu, cdb10(WRITE10, 1, 1), bytes(BLOCK), nx=B) is None
    assert (await run(lu, cdb10(READ10, 1, 1), nx=B)).status == RESERVATION_CONFLICT
    res = await run(lu, cdb10(WRITE10, 1, 1), bytes(BLOCK), nx=B)
    assert res.status == RESERVATION_CONFLICT
    assert (await run(lu, RELEASE6)).status == GOOD
    assert fast_read(lu, 1, 1, nx=B) == data


def prout(sa: int, type_: int = 0, plen: int = 24) -> bytes:
    return struct.pack(">BBBxxIB", 0x5F, sa, type_, plen, 0)


def prout_params(key: int = 0, sark: int = 0) -> bytes:
    return struct.pack(">QQxxxxBxxx", key, sark, 0)


async def test_persistent_reservation_takes_the_full_path(lu: LogicalUnit) -> None:
    await ready(lu, B)
    # REGISTER AND IGNORE EXISTING KEY: a registration alone changes nothing.
    assert (await run(lu, prout(6), prout_params(sark=0xA))).status == GOOD
    assert lu.pr_store.current.reservation is None
    assert fast_read(lu, 0, 1) == bytes(BLOCK)
    assert fast_read(lu, 0, 1, nx=B) == bytes(BLOCK)
    # RESERVE, Write Exclusive (type 1), by A.
    assert (await run(lu, prout(1, 1), prout_params(key=0xA))).status == GOOD
    assert lu.pr_store.current.reservation is not None
    data = pattern(BLOCK, seed=41)
    for nx in (A, B):
        assert now(lu, cdb10(READ10, 0, 1), nx=nx) is None
        assert now(lu, cdb10(WRITE10, 0, 1), data, nx=nx) is None
    assert (await run(lu, cdb10(WRITE10, 0, 1), data)).status == GOOD  # the holder
    assert await slow_read(lu, 0, 1, nx=B) == data  # reads are allowed under WE
    res = await run(lu, cdb10(WRITE10, 0, 1), bytes(BLOCK), nx=B)
    assert res.status == RESERVATION_CONFLICT
    # RELEASE: the fast path is back.
    assert (await run(lu, prout(2, 1), prout_params(key=0xA))).status == GOOD
    assert lu.pr_store.current.reservation is None
    assert fast_read(lu, 0, 1, nx=B) == data


# -------------------------------------------------------------------------------------- ALUA


@pytest.mark.parametrize(
    ("state", "asc_q"),
    [
        (AluaState.STANDBY, (0x2, 0x04, 0x0B)),
        (AluaState.UNAVAILABLE, (0x2, 0x04, 0x0C)),
        (AluaState.TRANSITIONING, (0x2, 0x04, 0x0A)),
        (AluaState.OFFLINE, (0x2, 0x04, 0x12)),
    ],
)
async def test_restricted_alua_state_takes_the_full_path(
    state: AluaState, asc_q: tuple[int, int, int]
) -> None:
    lu = make_lu(port_groups=PortGroups((PortGroup(1, state), PortGroup(2))))
    local = nexus("iqn.x:a", 1, tpgt=1)
    remote = nexus("iqn.x:a", 1, tpgt=2)
    await ready(lu, local)
    await ready(lu, remote)
    data = pattern(BLOCK, seed=51)
    assert now(lu, cdb10(READ10, 0, 1), nx=local) is None
    assert now(lu, cdb10(WRITE10, 0, 1), data, nx=local) is None
    assert sense_of(await run(lu, cdb10(READ10, 0, 1), nx=local)) == asc_q
    assert sense_of(await run(lu, cdb10(WRITE10, 0, 1), data, nx=local)) == asc_q
    # Through the other (active) port: fast.
    assert now(lu, cdb10(WRITE10, 0, 1), data, nx=remote) == b""
    assert fast_read(lu, 0, 1, nx=remote) == data


# ---------------------------------------------------------------------------------- sanitize


async def test_local_sanitize_running_takes_the_full_path(lu: LogicalUnit) -> None:
    release = asyncio.Event()

    async def job() -> None:
        await release.wait()

    task = lu.start_sanitize(job())
    data = pattern(BLOCK, seed=61)
    assert now(lu, cdb10(READ10, 0, 1)) is None
    assert now(lu, cdb10(WRITE10, 0, 1), data) is None
    assert sense_of(await run(lu, cdb10(READ10, 0, 1))) == SANITIZE_IN_PROGRESS
    assert sense_of(await run(lu, cdb10(WRITE10, 0, 1), data)) == SANITIZE_IN_PROGRESS
    release.set()
    await asyncio.wait_for(task, 5)
    assert lu.sanitizing is None and not lu.sanitize_failed
    assert now(lu, cdb10(WRITE10, 0, 1), data) == b""
    assert fast_read(lu, 0, 1) == data


async def test_local_sanitize_failed_takes_the_full_path(lu: LogicalUnit) -> None:
    async def job() -> None:
        raise BackendError("overwrite failed")

    await asyncio.wait_for(lu.start_sanitize(job()), 5)
    assert lu.sanitize_failed
    data = pattern(BLOCK, seed=62)
    assert now(lu, cdb10(READ10, 0, 1)) is None
    assert now(lu, cdb10(WRITE10, 0, 1), data) is None
    # Reads are allowed in the failure mode, writes are not.
    assert await slow_read(lu, 0, 1) == bytes(BLOCK)
    assert sense_of(await run(lu, cdb10(WRITE10, 0, 1), data)) == SANITIZE_FAILED
    lu.sanitize_failed = False
    assert now(lu, cdb10(WRITE10, 0, 1), data) == b""


@pytest.mark.parametrize("state", ["running", "failed"])
async def test_remote_sanitize_takes_the_full_path(lu: LogicalUnit, state: str) -> None:
    lu.cluster_sanitize(state)
    data = pattern(BLOCK, seed=63)
    assert now(lu, cdb10(READ10, 0, 1)) is None
    assert now(lu, cdb10(WRITE10, 0, 1), data) is None
    if state == "running":
        assert sense_of(await run(lu, cdb10(READ10, 0, 1))) == SANITIZE_IN_PROGRESS
        assert sense_of(await run(lu, cdb10(WRITE10, 0, 1), data)) == SANITIZE_IN_PROGRESS
    else:
        assert await slow_read(lu, 0, 1) == bytes(BLOCK)
        assert sense_of(await run(lu, cdb10(WRITE10, 0, 1), data)) == SANITIZE_FAILED
    lu.cluster_sanitize(None)
    assert now(lu, cdb10(WRITE10, 0, 1), data) == b""
    assert fast_read(lu, 0, 1) == data


class _FakeCluster:
    """Stands for another gateway: what it committed shows up at ``refresh``."""

    def __init__(self) -> None:
        self.lu: LogicalUnit | None = None
        self.refreshes = 0
        self.pending: list[tuple[str, str | None]] = []

    def attach(self, lu: LogicalUnit) -> None:
        self.lu = lu

    def refresh(self) -> None:
        self.refreshes += 1
        assert self.lu is not None
        for what, value in self.pending:
            if what == "sanitize":
                self.lu.cluster_sanitize(value)
            else:
                self.lu.cluster_reservation(value)
        self.pending.clear()

    def close(self) -> None:
        pass


async def test_cluster_state_is_refreshed_before_deciding() -> None:
    cluster = _FakeCluster()
    lu = make_lu(cluster=cluster)
    await ready(lu)
    assert fast_read(lu, 0, 1) == bytes(BLOCK)
    before = cluster.refreshes
    # Another gateway started a sanitize: the next command sees it.
    cluster.pending.append(("sanitize", "running"))
    assert now(lu, cdb10(READ10, 0, 1)) is None
    assert cluster.refreshes == before + 1
    assert sense_of(await run(lu, cdb10(READ10, 0, 1))) == SANITIZE_IN_PROGRESS
    cluster.pending.append(("sanitize", None))
    assert fast_read(lu, 0, 1) == bytes(BLOCK)
    # Another gateway's initiator reserved the LU (SCSI-2).
    cluster.pending.append(("reservation", "someone-else"))
    assert now(lu, cdb10(WRITE10, 0, 1), bytes(BLOCK)) is None
    assert (await run(lu, cdb10(READ10, 0, 1))).status == RESERVATION_CONFLICT


# ----------------------------------------------------------------------------- CDB contents


@pytest.mark.parametrize("protect", [0x20, 0x40, 0x80, 0xE0])
@pytest.mark.parametrize("op", [READ10, WRITE10, READ16, WRITE16])
async def test_protection_bits_take_the_full_path(lu: LogicalUnit, op: int, protect: int) -> None:
    build = cdb10 if op in (READ10, WRITE10) else cdb16
    cdb = build(op, 0, 1, flags=protect)
    data = pattern(BLOCK) if op in (WRITE10, WRITE16) else b""
    assert lu.execute_now(A, cdb, data, BLOCK) is None
    res = await run(lu, cdb, data, edtl=BLOCK)
    assert sense_of(res) == INVALID_FIELD_IN_CDB
    assert res.sense[15:18] == bytes([0xC0 | 0x08 | 7, 0, 1])  # SKSV, C/D, BPV, bit 7 of byte 1
    assert fast_read(lu, 0, 1) == bytes(BLOCK)  # nothing was written


@pytest.mark.parametrize("op", [READ10, WRITE10, READ16, WRITE16])
async def test_zero_length_takes_the_full_path(lu: LogicalUnit, op: int) -> None:
    build = cdb10 if op in (READ10, WRITE10) else cdb16
    cdb = build(op, 7, 0)
    assert lu.execute_now(A, cdb, b"", 0) is None
    res = await run(lu, cdb, edtl=0)
    assert res.status == GOOD and len(res.data) == 0


async def test_read_length_not_edtl_takes_the_full_path(lu: LogicalUnit) -> None:
    data = pattern(4 * BLOCK, seed=71)
    assert now(lu, cdb10(WRITE10, 20, 4), data) == b""
    for edtl in (0, BLOCK, 4 * BLOCK - 1, 4 * BLOCK + 1, 8 * BLOCK):
        assert lu.execute_now(A, cdb10(READ10, 20, 4), b"", edtl) is None
        assert lu.execute_now(A, cdb16(READ16, 20, 4), b"", edtl) is None
        # The full path returns what the CDB asked for; the transport cuts it to EDTL.
        res = await run(lu, cdb10(READ10, 20, 4), edtl=edtl)
        assert res.status == GOOD and payload_bytes(res.data) == data


async def test_write_length_not_edtl_takes_the_full_path(lu: LogicalUnit) -> None:
    data = pattern(4 * BLOCK, seed=72)
    # The CDB asks for 4 blocks, EDTL says 2 (the transport truncates such commands).
    assert lu.execute_now(A, cdb10(WRITE10, 30, 4), data, 2 * BLOCK) is None
    assert lu.execute_now(A, cdb16(WRITE16, 30, 4), data[: 2 * BLOCK], 2 * BLOCK) is None
    assert lu.execute_now(A, cdb10(WRITE10, 30, 4), data, 8 * BLOCK) is None
    assert fast_read(lu, 30, 4) == bytes(4 * BLOCK)  # nothing was written


async def test_data_out_length_mismatch_takes_the_full_path(lu: LogicalUnit) -> None:
    data = pattern(4 * BLOCK, seed=73)
    # Too little Data-Out for the CDB.
    assert lu.execute_now(A, cdb10(WRITE10, 40, 4), data[: 3 * BLOCK], 4 * BLOCK) is None
    assert lu.execute_now(A, cdb10(WRITE10, 40, 4), b"", 4 * BLOCK) is None
    res = await run(lu, cdb10(WRITE10, 40, 4), data[: 3 * BLOCK], edtl=4 * BLOCK)
    assert sense_of(res) == INVALID_FIELD_IN_CMD_IU
    assert fast_read(lu, 40, 4) == bytes(4 * BLOCK)
    # More Data-Out than the CDB asks for: the full path writes what the CDB says.
    longer = data + pattern(BLOCK, seed=74)
    assert lu.execute_now(A, cdb10(WRITE10, 40, 4), longer, 4 * BLOCK) is None
    res = await run(lu, cdb10(WRITE10, 40, 4), longer, edtl=4 * BLOCK)
    assert res.status == GOOD
    assert fast_read(lu, 40, 5) == data + bytes(BLOCK)


@pytest.mark.parametrize(
    ("lba", "n"),
    [(BLOCKS - 1, 2), (BLOCKS, 1), (BLOCKS + 100, 8), (2**32 - 1, 1)],
)
@pytest.mark.parametrize("op", [READ10, WRITE10])
async def test_lba_out_of_range_takes_the_full_path_10(
    lu: LogicalUnit, op: int, lba: int, n: int
) -> None:
    data = pattern(n * BLOCK) if op == WRITE10 else b""
    cdb = cdb10(op, lba, n)
    assert lu.execute_now(A, cdb, data, n * BLOCK) is None
    assert sense_of(await run(lu, cdb, data, edtl=n * BLOCK)) == LBA_OUT_OF_RANGE


@pytest.mark.parametrize(("lba", "n"), [(BLOCKS - 3, 4), (2**63, 1), (2**64 - 1, 1)])
@pytest.mark.parametrize("op", [READ16, WRITE16])
async def test_lba_out_of_range_takes_the_full_path_16(
    lu: LogicalUnit, op: int, lba: int, n: int
) -> None:
    data = pattern(n * BLOCK) if op == WRITE16 else b""
    cdb = cdb16(op, lba, n)
    assert lu.execute_now(A, cdb, data, n * BLOCK) is None
    assert sense_of(await run(lu, cdb, data, edtl=n * BLOCK)) == LBA_OUT_OF_RANGE
    assert fast_read(lu, BLOCKS - 3, 3) == bytes(3 * BLOCK)


async def test_transfer_over_max_takes_the_full_path() -> None:
    lu = make_lu(limits=BlockLimits(max_transfer_bytes=8 * BLOCK))
    await ready(lu)
    assert lu.counts.max_transfer == 8
    data = pattern(9 * BLOCK, seed=81)
    for cdb, tl_byte in (
        (cdb10(WRITE10, 0, 9), 7),
        (cdb16(WRITE16, 0, 9), 10),
        (cdb10(READ10, 0, 9), 7),
        (cdb16(READ16, 0, 9), 10),
    ):
        payload = data if cdb[0] in (WRITE10, WRITE16) else b""
        assert lu.execute_now(A, cdb, payload, 9 * BLOCK) is None
        res = await run(lu, cdb, payload, edtl=9 * BLOCK)
        assert sense_of(res) == INVALID_FIELD_IN_CDB
        assert res.sense[15] & 0xC0 == 0xC0 and res.sense[16:18] == bytes([0, tl_byte])
    # The maximum itself is fine.
    assert lu.execute_now(A, cdb10(WRITE10, 0, 8), data[: 8 * BLOCK], 8 * BLOCK) == b""
    assert fast_read(lu, 0, 8) == data[: 8 * BLOCK]
    assert fast_read(lu, 8, 1) == bytes(BLOCK)


@pytest.mark.parametrize(
    "cdb",
    [
        bytes.fromhex("08 00 00 00 01 00"),  # READ(6)
        bytes.fromhex("0a 00 00 00 01 00"),  # WRITE(6)
        bytes.fromhex("a8 00 00 00 00 00 00 00 00 01 00 00"),  # READ(12)
        bytes.fromhex("aa 00 00 00 00 00 00 00 00 01 00 00"),  # WRITE(12)
        cdb10(0x2F, 0, 1),  # VERIFY(10)
        cdb10(0x2E, 0, 1),  # WRITE AND VERIFY(10)
        cdb16(0x8F, 0, 1),  # VERIFY(16)
        cdb16(0x93, 0, 1),  # WRITE SAME(16)
        cdb10(0x35, 0, 0),  # SYNCHRONIZE CACHE(10)
        bytes.fromhex("89 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00"),  # COMPARE AND WRITE
        bytes(6),  # TEST UNIT READY
        bytes(16),  # TEST UNIT READY, padded as iSCSI delivers it
    ],
)
async def test_other_opcodes_take_the_full_path(lu: LogicalUnit, cdb: bytes) -> None:
    for data, edtl in (
        (b"", 0),
        (b"", BLOCK),
        (bytes(BLOCK), BLOCK),
        (bytes(2 * BLOCK), 2 * BLOCK),
    ):
        assert lu.execute_now(A, cdb, data, edtl) is None


async def test_read12_and_write12_work_through_the_full_path(lu: LogicalUnit) -> None:
    data = pattern(2 * BLOCK, seed=91)
    w12 = struct.pack(">BBIIBB", 0xAA, 0, 50, 2, 0, 0)
    r12 = struct.pack(">BBIIBB", 0xA8, 0, 50, 2, 0, 0)
    assert lu.execute_now(A, w12, data, len(data)) is None
    assert (await run(lu, w12, data)).status == GOOD
    assert lu.execute_now(A, r12, b"", len(data)) is None
    assert fast_read(lu, 50, 2) == data


async def test_cdbs_as_delivered_by_iscsi_are_16_bytes(lu: LogicalUnit) -> None:
    # The transport hands over the 16-byte CDB field, zero padded: READ(10) still works.
    data = pattern(BLOCK, seed=92)
    assert lu.execute_now(A, cdb10(WRITE10, 3, 1) + bytes(6), data, BLOCK) == b""
    got = lu.execute_now(A, cdb10(READ10, 3, 1) + bytes(6), b"", BLOCK)
    assert got is not None and payload_bytes(got) == data


async def test_truncated_cdb_takes_the_full_path(lu: LogicalUnit) -> None:
    short = bytes([READ10, 0, 0, 0, 0, 0])  # a READ(10) opcode in 6 bytes
    res = await run(lu, short, edtl=BLOCK)
    assert sense_of(res) == INVALID_FIELD_IN_CDB
    assert lu.execute_now(A, short, b"", BLOCK) is None
    assert lu.execute_now(A, cdb10(READ16, 0, 1), b"", BLOCK) is None  # READ(16) in 10 bytes


# ------------------------------------------------------------------------- write conditions


@pytest.mark.parametrize("op", [WRITE10, WRITE16])
async def test_fua_write_takes_the_full_path(any_lu: LogicalUnit, op: int) -> None:
    lu = any_lu
    build = cdb10 if op == WRITE10 else cdb16
    data = pattern(2 * BLOCK, seed=101)
    cdb = build(op, 60, 2, flags=0x08)
    assert lu.execute_now(A, cdb, data, len(data)) is None
    assert fast_read(lu, 60, 2) == bytes(2 * BLOCK)
    assert (await run(lu, cdb, data)).status == GOOD
    assert fast_read(lu, 60, 2) == data
    # DPO (0x10) alone does not matter.
    data2 = pattern(2 * BLOCK, seed=102)
    assert lu.execute_now(A, build(op, 60, 2, flags=0x10), data2, len(data2)) == b""
    assert await slow_read(lu, 60, 2) == data2


async def test_fua_read_is_answered_like_the_full_path(any_lu: LogicalUnit) -> None:
    # FUA on a READ asks for the medium, not a cache; page cache and RAM are the medium here,
    # and the full path reads the same way: the fast path may answer it.
    lu = any_lu
    data = pattern(BLOCK, seed=103)
    assert now(lu, cdb10(WRITE10, 61, 1), data) == b""
    got = now(lu, cdb10(READ10, 61, 1, flags=0x08))
    res = await run(lu, cdb10(READ10, 61, 1, flags=0x08), edtl=BLOCK)
    assert res.status == GOOD and payload_bytes(res.data) == data
    assert got is None or payload_bytes(got) == data


async def test_write_cache_off_takes_the_full_path(any_lu: LogicalUnit) -> None:
    lu = any_lu
    assert lu.set_mode(wce=False)
    data = pattern(BLOCK, seed=111)
    assert now(lu, cdb10(WRITE10, 70, 1), data) is None
    assert now(lu, cdb16(WRITE16, 70, 1), data) is None
    assert (await run(lu, cdb10(WRITE10, 70, 1), data)).status == GOOD
    # Reads do not depend on the write cache.
    assert fast_read(lu, 70, 1) == data
    lu.set_mode(wce=True)
    assert now(lu, cdb10(WRITE10, 71, 1), data) == b""


async def test_read_only_lu_takes_the_full_path() -> None:
    backend = MemoryBackend(SIZE, BLOCK)
    await backend.write(0, b"\x5a" * BLOCK)
    lu = make_lu(backend, read_only=True)
    await ready(lu)
    data = pattern(BLOCK, seed=121)
    assert now(lu, cdb10(WRITE10, 0, 1), data) is None
    assert now(lu, cdb16(WRITE16, 0, 1), data) is None
    assert sense_of(await run(lu, cdb10(WRITE10, 0, 1), data)) == WRITE_PROTECTED
    assert fast_read(lu, 0, 1) == b"\x5a" * BLOCK


async def test_software_write_protect_takes_the_full_path(lu: LogicalUnit) -> None:
    assert lu.set_mode(swp=True)
    data = pattern(BLOCK, seed=122)
    assert now(lu, cdb10(WRITE10, 0, 1), data) is None
    assert sense_of(await run(lu, cdb16(WRITE16, 0, 1), data)) == WRITE_PROTECTED
    assert fast_read(lu, 0, 1) == bytes(BLOCK)
    lu.set_mode(swp=False)
    assert now(lu, cdb10(WRITE10, 0, 1), data) == b""
    assert fast_read(lu, 0, 1) == data


async def test_write_gate_held_exclusively_takes_the_full_path(lu: LogicalUnit) -> None:
    gate = lu._gate
    data = pattern(BLOCK, seed=131)
    entered = asyncio.Event()
    leave = asyncio.Event()

    async def hold() -> None:  # what COMPARE AND WRITE does
        async with gate.exclusively():
            entered.set()
            await leave.wait()

    holder = asyncio.create_task(hold())
    await asyncio.wait_for(entered.wait(), 5)
    assert gate.exclusive
    assert now(lu, cdb10(WRITE10, 80, 1), data) is None
    assert fast_read(lu, 80, 1) == bytes(BLOCK)  # reads do not take the gate
    # The full path waits for the gate.
    writer = asyncio.create_task(run(lu, cdb10(WRITE10, 80, 1), data))
    await asyncio.sleep(0.01)
    assert not writer.done()
    assert fast_read(lu, 80, 1) == bytes(BLOCK)
    leave.set()
    await asyncio.wait_for(holder, 5)
    res = await asyncio.wait_for(writer, 5)
    assert res.status == GOOD
    assert fast_read(lu, 80, 1) == data
    assert gate.shared == 0 and not gate.exclusive
    assert now(lu, cdb10(WRITE10, 81, 1), data) == b""


async def test_fast_write_does_not_touch_the_shared_count(lu: LogicalUnit) -> None:
    assert now(lu, cdb10(WRITE10, 0, 1), bytes(BLOCK)) == b""
    assert lu._gate.shared == 0


# --------------------------------------------------------------------------- backend errors


class _FailingMemory(MemoryBackend):
    """A memory backend whose immediate I/O (and hence its async I/O) fails on demand."""

    def __init__(self) -> None:
        super().__init__(SIZE, BLOCK)
        self.read_error: BackendError | None = None
        self.write_error: BackendError | None = None

    def read_now(self, offset: int, length: int) -> Buffer:
        if self.read_error is not None:
            raise self.read_error
        return super().read_now(offset, length)

    def write_now(self, offset: int, data: Any) -> None:
        if self.write_error is not None:
            raise self.write_error
        super().write_now(offset, data)


async def test_backend_errors_take_the_full_path() -> None:
    backend = _FailingMemory()
    lu = make_lu(backend)
    await ready(lu)
    data = pattern(BLOCK, seed=141)
    backend.write_error = BackendNoSpace("pool full")
    assert now(lu, cdb10(WRITE10, 0, 1), data) is None
    assert sense_of(await run(lu, cdb10(WRITE10, 0, 1), data)) == SPACE_ALLOCATION_FAILED
    backend.write_error = BackendError("I/O error")
    assert now(lu, cdb16(WRITE16, 0, 1), data) is None
    assert sense_of(await run(lu, cdb16(WRITE16, 0, 1), data)) == INTERNAL_TARGET_FAILURE
    backend.read_error = BackendError("I/O error")
    assert now(lu, cdb10(READ10, 0, 1)) is None
    assert sense_of(await run(lu, cdb10(READ10, 0, 1))) == INTERNAL_TARGET_FAILURE
    backend.read_error = backend.write_error = None
    assert now(lu, cdb10(WRITE10, 0, 1), data) == b""
    assert fast_read(lu, 0, 1) == data


async def test_closed_file_backend_takes_the_full_path(file_lu: LogicalUnit) -> None:
    lu = file_lu
    await lu.backend.close()
    data = pattern(BLOCK, seed=142)
    big = 128 * BLOCK  # 64 KiB: the read_slice branch
    assert now(lu, cdb10(READ10, 0, 1)) is None
    assert now(lu, cdb10(READ10, 0, 128)) is None
    assert now(lu, cdb10(WRITE10, 0, 1), data) is None
    assert sense_of(await run(lu, cdb10(READ10, 0, 1))) == INTERNAL_TARGET_FAILURE
    assert sense_of(await run(lu, cdb10(READ10, 0, 128), edtl=big)) == INTERNAL_TARGET_FAILURE
    assert sense_of(await run(lu, cdb10(WRITE10, 0, 1), data)) == INTERNAL_TARGET_FAILURE


class _AsyncOnlyBackend:
    """A custom backend without read_now/write_now (only the BlockBackend coroutines)."""

    def __init__(self, size: int = SIZE, block_size: int = BLOCK) -> None:
        self._buf = bytearray(size)
        self.block_size = block_size
        self.reads = 0
        self.writes = 0

    @property
    def size(self) -> int:
        return len(self._buf)

    @property
    def discard_zeroes(self) -> bool:
        return True

    async def read(self, offset: int, length: int) -> Buffer:
        self.reads += 1
        return bytes(self._buf[offset : offset + length])

    async def write(self, offset: int, data: Buffer, *, fua: bool = False) -> None:
        self.writes += 1
        view = memoryview(data).cast("B")
        self._buf[offset : offset + view.nbytes] = view

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_backend_without_immediate_io_takes_the_full_path() -> None:
    backend = _AsyncOnlyBackend()
    assert immediate_io(backend) is None
    lu = make_lu(backend)
    await ready(lu)
    data = pattern(2 * BLOCK, seed=151)
    assert now(lu, cdb10(WRITE10, 0, 2), data) is None
    assert now(lu, cdb10(READ10, 0, 2)) is None
    assert backend.reads == backend.writes == 0
    assert (await run(lu, cdb10(WRITE10, 0, 2), data)).status == GOOD
    assert await slow_read(lu, 0, 2) == data
    assert backend.reads == backend.writes == 1


async def test_immediate_io_needs_both_methods_callable() -> None:
    class ReadOnlyNow(_AsyncOnlyBackend):
        def read_now(self, offset: int, length: int) -> Buffer:
            return bytes(length)

    class NotCallable(_AsyncOnlyBackend):
        read_now = None
        write_now = None

    for be in (ReadOnlyNow(), NotCallable()):
        assert immediate_io(be) is None
        lu = make_lu(be)
        await ready(lu)
        assert now(lu, cdb10(READ10, 0, 1)) is None


async def test_non_default_command_table_takes_the_full_path() -> None:
    lu = make_lu(table=CommandTable(DEFAULT_SPECS))
    await ready(lu)
    data = pattern(BLOCK, seed=161)
    assert now(lu, cdb10(WRITE10, 0, 1), data) is None
    assert now(lu, cdb10(READ10, 0, 1)) is None
    assert (await run(lu, cdb10(WRITE10, 0, 1), data)).status == GOOD
    assert await slow_read(lu, 0, 1) == data
    assert now(lu, cdb10(READ10, 0, 1)) is None


async def test_file_short_of_device_reads_zeros_in_both_paths(
    file_lu: LogicalUnit, tmp_path: Path
) -> None:
    # The file was truncated behind the gateway's back: past EOF reads as zeros either way.
    data = pattern(2 * BLOCK, seed=171)
    assert now(file_lu, cdb10(WRITE10, 0, 2), data) == b""
    os.truncate(tmp_path / "disk.img", BLOCK)
    assert fast_read(file_lu, 0, 2) == data[:BLOCK] + bytes(BLOCK)
    assert await slow_read(file_lu, 0, 2) == data[:BLOCK] + bytes(BLOCK)
