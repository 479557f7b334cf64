"""The values that cross between a transport (iSCSI) and the SCSI layer.

Contract with the transport:
  1. ``lu.data_out_length(cdb)`` tells how many bytes the CDB asks the initiator to send
     (0 for commands without Data-Out). It never raises; a bad CDB yields 0 and fails in execute().
  2. The transport gathers Data-Out (immediate data, R2T/Data-Out) and calls
     ``await lu_map.execute(lun, ScsiCommand(...))``. ``data_out`` holds exactly
     min(EDTL, data_out_length) bytes. When data_out_length > EDTL the transport answers
     CHECK CONDITION 5/0E/03 (overflow) itself, without calling execute().
  3. ``ScsiResult.data`` is the Data-In the command produced, already cut to the CDB's
     allocation length; the transport cuts it to EDTL and computes residuals (O/U flags).
  4. A CHECK CONDITION is a result with status 0x02 and ``sense`` set; the SCSI layer never
     lets an exception escape execute() (backend errors are mapped to sense).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._types import Buffer, Payload

GOOD = 0x00
CHECK_CONDITION = 0x02
CONDITION_MET = 0x04
BUSY = 0x08
RESERVATION_CONFLICT = 0x18
TASK_SET_FULL = 0x28
TASK_ABORTED = 0x40


@dataclass(frozen=True, slots=True)
class ITNexus:
    """An I_T nexus: one initiator port talking to one target port (one iSCSI session)."""

    initiator_name: str
    isid: int
    target_name: str
    tpgt: int

    @property
    def initiator_port(self) -> str:
        return f"{self.initiator_name},i,0x{self.isid:012x}"

    @property
    def target_port(self) -> str:
        return f"{self.target_name},t,0x{self.tpgt:04x}"

    @property
    def relative_port_id(self) -> int:
        # One TPG per gateway; its tag is also the RTPI and the ALUA group id (as ceph-iscsi).
        return self.tpgt

    @property
    def key(self) -> str:
        return f"{self.initiator_port};{self.target_port}"


@dataclass(slots=True)
class ScsiCommand:
    cdb: bytes
    nexus: ITNexus
    expected_length: int = 0
    data_out: Buffer = b""
    task_attr: int = 1  # 0 untagged, 1 simple, 2 ordered, 3 head of queue, 4 ACA
    tag: int = 0


@dataclass(slots=True)
class ScsiResult:
    status: int = GOOD
    data: Payload = b""  # a FileSlice for large reads from a file backend (sendfile)
    sense: bytes = b""
    # Bytes of Data-Out the command actually consumed (for write residuals); None = all given.
    data_out_used: int | None = None
    extra: dict[str, object] = field(default_factory=dict)
