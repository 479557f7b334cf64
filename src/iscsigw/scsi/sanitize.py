"""SANITIZE (SBC-4 §5.30): OVERWRITE, BLOCK ERASE, CRYPTO ERASE and EXIT FAILURE MODE.

The operation runs as a background job owned by the LU, not by the command: an aborted
SANITIZE command, a LUN reset or a lost connection do not stop it (SBC-4 §4.11.2). While it
runs every command except INQUIRY, REPORT LUNS and REQUEST SENSE gets NOT READY, SANITIZE IN
PROGRESS (checked in ``LogicalUnit.execute``). OVERWRITE writes every block and is paced
(``OVERWRITE_BYTES_PER_SECOND``) so one initiator cannot saturate the storage cluster; the two
erases deallocate the whole LU (reads return zeros afterwards: WABEREQ/WACEREQ = 01b).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .cdb import u16
from .sense import PARAM_LIST_LENGTH_ERROR, CheckCondition, invalid_field, invalid_param
from .task import ScsiCommand, ScsiResult

if TYPE_CHECKING:
    from .lun import LogicalUnit

OVERWRITE = 0x01
BLOCK_ERASE = 0x02
CRYPTO_ERASE = 0x03
EXIT_FAILURE_MODE = 0x1F

OVERWRITE_BYTES_PER_SECOND = 160 << 20
CHUNK_BYTES = 1 << 20


def sanitize_data_out(cdb: bytes, block_size: int) -> int:
    return u16(cdb, 7)


def _block_pattern(pattern: bytes, block_size: int) -> bytes:
    reps = -(-block_size // len(pattern))
    return (pattern * reps)[:block_size]


async def _overwrite(lu: LogicalUnit, pattern: bytes, passes: int, invert: bool) -> None:
    backend = lu.backend
    bs = lu.block_size
    size = lu.capacity * bs
    block = _block_pattern(pattern, bs)
    loop = asyncio.get_running_loop()
    for n in range(passes):
        # With INVERT the pattern is inverted between consecutive passes.
        current = bytes(b ^ 0xFF for b in block) if invert and n % 2 else block
        zero = not any(current)
        chunk = current * max(1, CHUNK_BYTES // bs)
        started = loop.time()
        done = 0
        pos = 0
        while pos < size:
            length = min(len(chunk), size - pos)
            if zero:
                await backend.write_zeroes(pos, length, unmap=False)
            else:
                await backend.write(pos, chunk[:length])
            pos += length
            done += length
            ahead = done / OVERWRITE_BYTES_PER_SECOND - (loop.time() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    await backend.flush()


async def _erase(lu: LogicalUnit) -> None:
    size = lu.capacity * lu.block_size
    if size:
        await lu.backend.write_zeroes(0, size, unmap=True)
    await lu.backend.flush()


async def sanitize(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    if len(cdb) < 10:
        raise invalid_field(0)
    sa = cdb[1] & 0x1F
    immed = bool(cdb[1] & 0x80)
    if cdb[1] & 0x40:
        raise invalid_field(1, 6)
    if cdb[1] & 0x20:
        raise invalid_field(1, 5)  # AUSE: no failure mode is entered on failure anyway
    for i in range(2, 7):
        if cdb[i]:
            raise invalid_field(i)
    plen = u16(cdb, 7)
    bs = lu.block_size
    if sa == OVERWRITE:
        if plen <= 4 or plen > bs + 4:
            raise invalid_field(7)
        data = bytes(memoryview(cmd.data_out).cast("B")[:plen])
        if len(data) < plen:
            raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
        if data[0] & 0x60:
            raise invalid_param(0, 6)  # TEST
        passes = data[0] & 0x1F
        if passes == 0:
            raise invalid_param(0, 4)
        pattern_len = u16(data, 2)
        if pattern_len == 0 or pattern_len != plen - 4:
            raise invalid_param(2)
        job = _overwrite(lu, data[4:plen], passes, bool(data[0] & 0x80))
    elif sa in (BLOCK_ERASE, CRYPTO_ERASE):
        if plen:
            raise invalid_field(7)
        job = _erase(lu)
    elif sa == EXIT_FAILURE_MODE:
        if plen:
            raise invalid_field(7)
        lu.sanitize_failed = False
        if lu.remote_sanitize == "failed":
            await lu.publish_sanitize(None)
        return ScsiResult()
    else:
        raise invalid_field(1, 4)
    await lu.publish_sanitize("running")
    task = lu.start_sanitize(job)
    if not immed:
        # Shielded: aborting this command does not stop the sanitize operation.
        await asyncio.shield(task)
        if lu.sanitize_failed:
            raise CheckCondition.of(lu.SANITIZE_FAILED)
    return ScsiResult()
