"""GET LBA STATUS on the fast path: answered from the file backend's cached data run.

The fast answer must be byte-for-byte what the full ``execute`` gives, and the fast path must
step aside whenever the cache does not cover the range the command looks at.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from iscsigw.backends.file import FileBackend, open_file
from iscsigw.scsi.identity import LuIdentity
from iscsigw.scsi.lun import LogicalUnit
from iscsigw.scsi.task import ITNexus, ScsiCommand

BLOCK = 512
SIZE = 300 << 20  # larger than one GET LBA STATUS scan (128 MiB per descriptor)
NEXUS = ITNexus("iqn.2026-11.io.test:init", 1, "iqn.2026-11.io.iscsigw:gls", 1)


def gls(lba: int, alloc: int) -> bytes:
    return bytes([0x9E, 0x12]) + struct.pack(">QI", lba, alloc) + bytes(2)


@pytest.fixture
async def lu(tmp_path: Path) -> AsyncIterator[LogicalUnit]:
    path = tmp_path / "disk"
    with open(path, "wb") as f:  # fully written: one data run
        chunk = os.urandom(1 << 20)
        for _ in range(SIZE >> 20):
            f.write(chunk)
    backend = await open_file(path=str(path), size=SIZE)
    unit = LogicalUnit(backend, LuIdentity.from_stable_id("gls"))
    await unit.execute(ScsiCommand(bytes(6), NEXUS))  # consume the power-on UA
    yield unit
    await backend.close()


async def full(lu: LogicalUnit, cdb: bytes, alloc: int) -> bytes:
    res = await lu.execute(ScsiCommand(cdb, NEXUS, expected_length=alloc))
    assert res.status == 0
    return bytes(res.data)


async def test_fast_answer_equals_full_path(lu: LogicalUnit) -> None:
    cap = SIZE // BLOCK
    first = gls(0, 24)
    assert lu.execute_now(NEXUS, first, b"", 24) is None  # nothing cached yet: full path
    await full(lu, first, 24)  # the full path caches the data run
    rnd = random.Random(7)
    cases = [(0, 24), (cap - 1, 24), (cap - 300, 4096), (1000, 8), (1000, 7), (1000, 0)]
    cases += [(rnd.randrange(cap), rnd.choice([24, 40, 100, 4096])) for _ in range(50)]
    for lba, alloc in cases:
        cdb = gls(lba, alloc)
        fast = lu.execute_now(NEXUS, cdb, b"", alloc)
        assert fast is not None, (lba, alloc)
        assert bytes(fast) == await full(lu, cdb, alloc), (lba, alloc)


async def test_steps_aside_when_not_known(lu: LogicalUnit) -> None:
    cap = SIZE // BLOCK
    await full(lu, gls(0, 24), 24)
    assert lu.execute_now(NEXUS, gls(cap, 24), b"", 24) is None  # out of range: sense data
    assert lu.execute_now(NEXUS, gls(0, 24)[:10], b"", 24) is None  # short CDB
    backend = lu.backend
    assert isinstance(backend, FileBackend)
    await backend.discard(4096 * BLOCK, 8 * BLOCK)  # a hole: the cached run is gone
    assert lu.execute_now(NEXUS, gls(0, 24), b"", 24) is None
    data = await full(lu, gls(4096, 24), 24)
    assert data[8 + 12] == 1  # deallocated


async def test_unit_attention_goes_first(lu: LogicalUnit) -> None:
    await full(lu, gls(0, 24), 24)
    other = ITNexus("iqn.2026-11.io.test:other", 2, NEXUS.target_name, 1)
    assert lu.execute_now(other, gls(0, 24), b"", 24) is None  # its power-on UA is pending
