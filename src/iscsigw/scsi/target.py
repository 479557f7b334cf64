"""The LUN map of one session (its ACL view): LUN number -> LogicalUnit.

REPORT LUNS is answered here for any LUN. A LUN with nothing mapped answers INQUIRY with
peripheral qualifier 011b (0x7F), REQUEST SENSE with LOGICAL UNIT NOT SUPPORTED sense data and
everything else with CHECK CONDITION 5/25/00.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

from .cdb import truncate, u16
from .lun import LogicalUnit
from .sense import LUN_NOT_SUPPORTED, REPORTED_LUNS_CHANGED, CheckCondition, encode
from .spc import decode_lun, encode_lun, no_lu_inquiry, report_luns_data
from .task import CHECK_CONDITION, ScsiCommand, ScsiResult

__all__ = ["LunMap", "decode_lun", "encode_lun"]

log = logging.getLogger(__name__)

REPORT_LUNS = 0xA0
INQUIRY = 0x12
REQUEST_SENSE = 0x03


class LunMap:
    """LUN -> LogicalUnit for one session. Mutations queue 3F/0E on the mapped LUs."""

    def __init__(self, luns: Mapping[int, LogicalUnit] | None = None) -> None:
        self._luns: dict[int, LogicalUnit] = {}
        for lun, lu in (luns or {}).items():
            self._check_lun(lun)
            self._luns[lun] = lu

    @staticmethod
    def _check_lun(lun: int) -> None:
        encode_lun(lun)  # raises ValueError for LUNs we cannot address

    def get(self, lun: int) -> LogicalUnit | None:
        return self._luns.get(lun)

    def __getitem__(self, lun: int) -> LogicalUnit:
        return self._luns[lun]

    def __contains__(self, lun: object) -> bool:
        return lun in self._luns

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._luns))

    def __len__(self) -> int:
        return len(self._luns)

    def items(self) -> list[tuple[int, LogicalUnit]]:
        return sorted(self._luns.items())

    def add(self, lun: int, lu: LogicalUnit) -> None:
        self._check_lun(lun)
        self._luns[lun] = lu
        self._luns_changed()

    def remove(self, lun: int) -> LogicalUnit | None:
        lu = self._luns.pop(lun, None)
        if lu is not None:
            self._luns_changed()
        return lu

    def _luns_changed(self) -> None:
        for lu in set(self._luns.values()):
            lu.queue_unit_attention(REPORTED_LUNS_CHANGED)

    def report_luns(self, cdb: bytes) -> bytes:
        # LUN 0 is always listed: with nothing mapped, report LUN 0 (as LIO does).
        return report_luns_data(self._luns.keys() or [0], cdb)

    async def execute(self, lun: int, cmd: ScsiCommand) -> ScsiResult:
        """Run ``cmd`` on ``lun``. Never raises (apart from cancellation)."""
        cdb = cmd.cdb
        lu = self._luns.get(lun)
        if cdb and cdb[0] == REPORT_LUNS:
            try:
                return ScsiResult(data=self.report_luns(cdb))
            except CheckCondition as exc:
                d_sense = lu.d_sense if lu is not None else False
                return ScsiResult(status=CHECK_CONDITION, sense=exc.encode(d_sense))
        if lu is not None:
            return await lu.execute(cmd)
        return self._no_lu(cmd)

    @staticmethod
    def _no_lu(cmd: ScsiCommand) -> ScsiResult:
        cdb = cmd.cdb
        op = cdb[0] if cdb else -1
        if op == INQUIRY and len(cdb) >= 6 and not cdb[1] & 0x03 and cdb[2] == 0:
            return ScsiResult(data=truncate(no_lu_inquiry(), u16(cdb, 3)))
        if op == REQUEST_SENSE and len(cdb) >= 6:
            return ScsiResult(data=truncate(encode(LUN_NOT_SUPPORTED, bool(cdb[1] & 1)), cdb[4]))
        return ScsiResult(
            status=CHECK_CONDITION, sense=CheckCondition.of(LUN_NOT_SUPPORTED).encode()
        )
