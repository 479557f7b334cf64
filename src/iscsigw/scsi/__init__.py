"""Transport-independent SCSI block device (SPC-4/SBC-3). Knows nothing of iSCSI PDUs.

Public API for the transport::

    from iscsigw.scsi import LogicalUnit, LuIdentity, LunMap, PortGroups, encode_lun, decode_lun
    lu = LogicalUnit(backend, LuIdentity.from_stable_id(image_uuid), port_groups=...)
    luns = LunMap({0: lu})
    n = luns[0].data_out_length(cdb)          # bytes of Data-Out to collect (0 = none)
    result = await luns.execute(lun, ScsiCommand(cdb, nexus, expected_length, data_out))
"""

from .alua import AluaState, PortGroup, PortGroups
from .identity import LuIdentity, naa6_designator
from .limits import BlockLimits
from .lun import LogicalUnit
from .pr import MemoryPrStore, PrState, PrStore
from .sense import CheckCondition, SenseCode
from .target import LunMap, decode_lun, encode_lun
from .task import ITNexus, ScsiCommand, ScsiResult
from .xcopy import LuRegistry

__all__ = [
    "AluaState",
    "BlockLimits",
    "CheckCondition",
    "ITNexus",
    "LogicalUnit",
    "LuIdentity",
    "LuRegistry",
    "LunMap",
    "MemoryPrStore",
    "PortGroup",
    "PortGroups",
    "PrState",
    "PrStore",
    "ScsiCommand",
    "ScsiResult",
    "SenseCode",
    "decode_lun",
    "encode_lun",
    "naa6_designator",
]
