"""Helpers for the SCSI layer tests: a LogicalUnit over a MemoryBackend, a tiny driver, a
sense parser and CDB builders."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from iscsigw.backends.memory import MemoryBackend
from iscsigw.scsi.alua import PortGroups
from iscsigw.scsi.identity import LuIdentity
from iscsigw.scsi.lun import LogicalUnit
from iscsigw.scsi.task import ITNexus, ScsiCommand, ScsiResult

BLOCK = 512
BLOCKS = 4096  # 2 MiB
UUID = "6f1b6c7e-0c1d-4a39-9b1e-2f6d1f7b9a10"
TARGET = "iqn.2024-01.org.example:gw"


def nexus(
    initiator: str = "iqn.1994-05.com.redhat:a", isid: int = 0x23D000000001, tpgt: int = 1
) -> ITNexus:
    return ITNexus(initiator, isid, TARGET, tpgt)


@dataclass
class Sense:
    key: int
    asc: int
    ascq: int
    info: int | None
    sksv: bool
    cd: bool
    bpv: bool
    bit: int
    field: int


def parse_sense(sense: bytes) -> Sense:
    """Decode fixed or descriptor sense independently of the implementation under test."""
    code = sense[0] & 0x7F
    if code == 0x70:
        info = struct.unpack(">I", sense[3:7])[0] if sense[0] & 0x80 else None
        sks = sense[15:18]
        return Sense(
            sense[2] & 0x0F,
            sense[12],
            sense[13],
            info,
            bool(sks[0] & 0x80),
            bool(sks[0] & 0x40),
            bool(sks[0] & 0x08),
            sks[0] & 0x07,
            struct.unpack(">H", sks[1:3])[0],
        )
    assert code == 0x72, f"unknown sense format {sense[0]:#x}"
    info = None
    sks = bytes(3)
    pos = 8
    assert sense[7] == len(sense) - 8
    while pos < len(sense):
        dtype, dlen = sense[pos], sense[pos + 1]
        if dtype == 0x00:
            assert dlen == 0x0A and sense[pos + 2] & 0x80
            info = struct.unpack(">Q", sense[pos + 4 : pos + 12])[0]
        elif dtype == 0x02:
            assert dlen == 0x06
            sks = sense[pos + 4 : pos + 7]
        pos += 2 + dlen
    return Sense(
        sense[1] & 0x0F,
        sense[2],
        sense[3],
        info,
        bool(sks[0] & 0x80),
        bool(sks[0] & 0x40),
        bool(sks[0] & 0x08),
        sks[0] & 0x07,
        struct.unpack(">H", sks[1:3])[0],
    )


class Driver:
    """Sends CDBs to a LU the way the transport would."""

    def __init__(self, lu: LogicalUnit, default: ITNexus) -> None:
        self.lu = lu
        self.nexus = default

    async def __call__(
        self,
        cdb: bytes,
        data: bytes | bytearray | memoryview = b"",
        *,
        nexus: ITNexus | None = None,
        edtl: int | None = None,
    ) -> ScsiResult:
        want = self.lu.data_out_length(cdb)
        if edtl is None:
            edtl = max(want, len(data))
        cmd = ScsiCommand(cdb=cdb, nexus=nexus or self.nexus, expected_length=edtl, data_out=data)
        return await self.lu.execute(cmd)

    async def ok(
        self, cdb: bytes, data: bytes | bytearray | memoryview = b"", **kw: object
    ) -> bytes:
        res = await self(cdb, data, **kw)  # type: ignore[arg-type]
        assert res.status == 0, parse_sense(res.sense) if res.sense else res.status
        return bytes(res.data)

    async def fail(
        self, cdb: bytes, data: bytes | bytearray | memoryview = b"", **kw: object
    ) -> Sense:
        res = await self(cdb, data, **kw)  # type: ignore[arg-type]
        assert res.status == 0x02, f"expected CHECK CONDITION, got {res.status:#x}"
        assert res.data in (b"", bytearray()) or len(res.data) == 0
        return parse_sense(res.sense)


def make_lu(blocks: int = BLOCKS, block_size: int = BLOCK, **kw: object) -> LogicalUnit:
    backend = MemoryBackend(blocks * block_size, block_size)
    kw.setdefault("port_groups", PortGroups.implicit([1, 2], owner=1))
    return LogicalUnit(backend, LuIdentity.from_stable_id(UUID), **kw)  # type: ignore[arg-type]


def cdb10(op: int, lba: int, n: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIBHB", op, flags, lba, 0, n, 0)


def cdb12(op: int, lba: int, n: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIIBB", op, flags, lba, n, 0, 0)


def cdb16(op: int, lba: int, n: int, flags: int = 0) -> bytes:
    return struct.pack(">BBQIBB", op, flags, lba, n, 0, 0)


def cdb6(op: int, lba: int, n: int) -> bytes:
    return struct.pack(">BBHBB", op, (lba >> 16) & 0x1F, lba & 0xFFFF, n & 0xFF, 0)
