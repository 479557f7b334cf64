"""PERSISTENT RESERVE IN/OUT command handlers: CDB checks around the pure ``pr`` state machine
and the compare-and-swap loop against the LU's ``PrStore``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cdb import truncate, u16, u32
from .pr import PrIn, apply_in, apply_out, parse_out
from .sense import INTERNAL_TARGET_FAILURE, CheckCondition, invalid_field
from .task import ScsiCommand, ScsiResult

if TYPE_CHECKING:
    from .lun import LogicalUnit

# How often a PERSISTENT RESERVE OUT recomputes after losing a commit race to another gateway.
MAX_COMMIT_ATTEMPTS = 16


async def persistent_reserve_in(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    if len(cdb) < 10:
        raise invalid_field(0)
    sa = cdb[1] & 0x1F
    if sa > PrIn.READ_FULL_STATUS:
        raise invalid_field(1, 4)
    state = await lu.pr_store.load()
    return ScsiResult(data=truncate(apply_in(state, sa), u16(cdb, 7)))


def persistent_reserve_out_data_out(cdb: bytes, block_size: int) -> int:
    return u32(cdb, 5)


async def persistent_reserve_out(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    if len(cdb) < 10:
        raise invalid_field(0)
    plen = u32(cdb, 5)
    data = memoryview(cmd.data_out).cast("B")[:plen].tobytes()
    req = parse_out(cdb, data)
    store = lu.pr_store
    for _ in range(MAX_COMMIT_ATTEMPTS):
        state = await store.load()
        new = apply_out(state, cmd.nexus, req)
        if new is state or await store.commit(state.version, new):
            return ScsiResult()
    raise CheckCondition.of(INTERNAL_TARGET_FAILURE)
