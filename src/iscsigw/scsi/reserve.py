"""SCSI-2 RESERVE/RELEASE (6 and 10). The holder is one I_T nexus; state lives on the LU.

Other nexuses get RESERVATION CONFLICT for everything except INQUIRY, REPORT LUNS,
REQUEST SENSE and RELEASE (checked in ``LogicalUnit.execute``). The reservation is dropped by
RELEASE from the holder, LUN reset and loss of the holder's I_T nexus. While persistent
reservation state exists, RESERVE/RELEASE get RESERVATION CONFLICT, except from the persistent
reservation holder, for whom they do nothing (CRH=1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .sense import invalid_field
from .task import RESERVATION_CONFLICT, ScsiCommand, ScsiResult

if TYPE_CHECKING:
    from .lun import LogicalUnit


def _check_cdb(cmd: ScsiCommand) -> None:
    cdb = cmd.cdb
    if len(cdb) < 6:
        raise invalid_field(0)
    if cdb[0] in (0x16, 0x17):
        if cdb[1] & 0x01:
            raise invalid_field(1, 0)  # extent reservations (obsolete)
    elif cdb[1] & 0x12:
        raise invalid_field(1, 4 if cdb[1] & 0x10 else 1)  # 3RDPTY / LONGID


def _pr_blocks(lu: LogicalUnit, cmd: ScsiCommand) -> bool | None:
    """With persistent reservation state (SPC-4 §5.13.3, CRH=1): None when there is none,
    True for a RESERVATION CONFLICT, False for the PR holder (GOOD, nothing done)."""
    pr = lu.pr_store.current
    if not pr.registrations and pr.reservation is None:
        return None
    return not pr.is_holder(cmd.nexus)


async def reserve(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    _check_cdb(cmd)
    blocked = _pr_blocks(lu, cmd)
    if blocked is not None:
        return ScsiResult(status=RESERVATION_CONFLICT) if blocked else ScsiResult()
    key = cmd.nexus.key
    holder = lu.reservation_holder
    if holder is not None and holder != key:
        return ScsiResult(status=RESERVATION_CONFLICT)
    # Held by the LU on every gateway: a compare-and-swap on the shared holder.
    if lu.cluster is not None and not await lu.cluster.reserve(key):
        return ScsiResult(status=RESERVATION_CONFLICT)
    lu.reservation_holder = key
    return ScsiResult()


async def release(lu: LogicalUnit, cmd: ScsiCommand) -> ScsiResult:
    _check_cdb(cmd)
    blocked = _pr_blocks(lu, cmd)
    if blocked is not None:
        return ScsiResult(status=RESERVATION_CONFLICT) if blocked else ScsiResult()
    if lu.reservation_holder == cmd.nexus.key:
        lu.reservation_holder = None
        if lu.cluster is not None:
            await lu.cluster.release(cmd.nexus.key)
    return ScsiResult()
