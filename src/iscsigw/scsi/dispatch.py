"""The opcode table: opcode (and service action) -> handler plus everything the LU needs to know
about a command before running it. REPORT SUPPORTED OPERATION CODES is generated from it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from . import persist, reserve, sanitize, sbc, spc, xcopy
from .pr import PrAccess
from .sense import INVALID_OPCODE, CheckCondition, invalid_field
from .task import ScsiCommand, ScsiResult

if TYPE_CHECKING:
    from .lun import LogicalUnit

Handler = Callable[["LogicalUnit", ScsiCommand], Awaitable[ScsiResult]]
DataOutLength = Callable[[bytes, int], int]  # (cdb, block_size) -> bytes of Data-Out


class AluaAccess(IntEnum):
    """Which ALUA states let a command through (SPC-4 §5.15.2.4; LIO target_core_alua.c).

    STANDBY: INQUIRY, REPORT LUNS, MODE SENSE/SELECT, READ CAPACITY(10/16), REPORT TARGET PORT
    GROUPS, REQUEST SENSE, PERSISTENT RESERVE IN/OUT (LOG SENSE/SELECT, READ/WRITE BUFFER and
    SEND/RECEIVE DIAGNOSTIC are not implemented). ALWAYS (Unavailable, Transitioning, Offline):
    INQUIRY, REPORT LUNS, REPORT TARGET PORT GROUPS, REQUEST SENSE. Everything else, SCSI-2
    RESERVE/RELEASE and REPORT SUPPORTED OPERATION CODES included, is ACTIVE only.
    """

    ACTIVE = 0  # media access: only AO/ANO (and LBA dependent)
    STANDBY = 1  # also allowed in Standby
    ALWAYS = 2  # also allowed in Unavailable/Transitioning/Offline


@dataclass(frozen=True, slots=True)
class CommandSpec:
    opcode: int
    name: str
    handler: Handler
    usage: bytes  # CDB usage data for RSOC one-command; its length is the CDB length
    service_action: int | None = None
    data_out: DataOutLength | None = None
    writes: bool = False  # modifies the medium: write protection and the CAW gate apply
    exclusive: bool = False  # holds the LU write gate exclusively (COMPARE AND WRITE)
    ua_exempt: bool = False  # neither reports nor clears unit attentions
    reservation_exempt: bool = False  # allowed for a non-holder of a SCSI-2 reservation
    alua: AluaAccess = AluaAccess.ACTIVE
    timeout: int = 30  # recommended command timeout (seconds) for the RCTD descriptor
    # Class under a persistent reservation the nexus does not hold; None: WRITE if ``writes``
    # else READ (SPC-4 Table 47, SBC-3 Table 13).
    pr: PrAccess | None = None

    @property
    def pr_access(self) -> PrAccess:
        if self.pr is not None:
            return self.pr
        return PrAccess.WRITE if self.writes else PrAccess.READ

    @property
    def cdb_length(self) -> int:
        return len(self.usage)


class CommandTable:
    """Opcode lookup: a 256-slot list for plain opcodes, a dict per service-action opcode."""

    __slots__ = ("_direct", "_sa", "_specs")

    def __init__(self, specs: Iterable[CommandSpec]) -> None:
        self._direct: list[CommandSpec | None] = [None] * 256
        self._sa: dict[int, dict[int, CommandSpec]] = {}
        self._specs: list[CommandSpec] = []
        for spec in specs:
            if spec.usage[0] != spec.opcode:
                raise ValueError(f"{spec.name}: usage data must start with the opcode")
            if spec.service_action is None:
                if self._direct[spec.opcode] is not None or spec.opcode in self._sa:
                    raise ValueError(f"duplicate opcode {spec.opcode:#x}")
                self._direct[spec.opcode] = spec
            else:
                if self._direct[spec.opcode] is not None:
                    raise ValueError(f"opcode {spec.opcode:#x} mixes service actions")
                table = self._sa.setdefault(spec.opcode, {})
                if spec.service_action in table:
                    raise ValueError(f"duplicate service action {spec.name}")
                table[spec.service_action] = spec
            self._specs.append(spec)
        self._specs.sort(key=lambda s: (s.opcode, s.service_action or 0))

    def find(self, cdb: bytes) -> CommandSpec | None:
        """The spec for ``cdb``, or None if its opcode/service action is not implemented."""
        op = cdb[0]
        spec = self._direct[op]
        if spec is not None:
            return spec
        sa_table = self._sa.get(op)
        if sa_table is None or len(cdb) < 2:
            return None
        return sa_table.get(cdb[1] & 0x1F)

    def unsupported(self, cdb: bytes) -> CheckCondition:
        """The error for a CDB that ``find`` did not know."""
        if not cdb:
            return invalid_field(0)
        if cdb[0] in self._sa:
            # Unknown service action: 24/00 pointing at byte 1 (libiscsi treats it as SKIP).
            return invalid_field(1, 4)
        return CheckCondition.of(INVALID_OPCODE, field=(0, 7, True))

    def lookup(self, opcode: int, service_action: int | None = None) -> CommandSpec | None:
        if service_action is None:
            return self._direct[opcode]
        return self._sa.get(opcode, {}).get(service_action)

    def has_service_actions(self, opcode: int) -> bool:
        return opcode in self._sa

    def __iter__(self) -> Iterator[CommandSpec]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def _u(hexstr: str) -> bytes:
    return bytes.fromhex(hexstr)


_A = AluaAccess
_P = PrAccess

DEFAULT_SPECS: tuple[CommandSpec, ...] = (
    # --- SPC ---------------------------------------------------------------------------
    CommandSpec(
        0x00,
        "TEST UNIT READY",
        spc.test_unit_ready,
        _u("00 00 00 00 00 00"),
        alua=_A.ACTIVE,
        pr=_P.ALLOWED,
    ),
    CommandSpec(
        0x03,
        "REQUEST SENSE",
        spc.request_sense,
        _u("03 01 00 00 ff 00"),
        ua_exempt=True,
        reservation_exempt=True,
        alua=_A.ALWAYS,
        pr=_P.ALLOWED,
    ),
    CommandSpec(
        0x12,
        "INQUIRY",
        spc.inquiry,
        _u("12 03 ff ff ff 00"),
        ua_exempt=True,
        reservation_exempt=True,
        alua=_A.ALWAYS,
        pr=_P.ALLOWED,
    ),
    CommandSpec(
        0x15,
        "MODE SELECT(6)",
        spc.mode_select,
        _u("15 11 00 00 ff 00"),
        data_out=spc.mode_select_data_out,
        alua=_A.STANDBY,
        pr=_P.WRITE,
    ),
    CommandSpec(
        0x16, "RESERVE(6)", reserve.reserve, _u("16 00 00 00 00 00"), alua=_A.ACTIVE, pr=_P.ALLOWED
    ),
    CommandSpec(
        0x17,
        "RELEASE(6)",
        reserve.release,
        _u("17 00 00 00 00 00"),
        reservation_exempt=True,
        alua=_A.ACTIVE,
        pr=_P.ALLOWED,
    ),
    CommandSpec(0x1A, "MODE SENSE(6)", spc.mode_sense, _u("1a 08 ff ff ff 00"), alua=_A.STANDBY),
    CommandSpec(0x1B, "START STOP UNIT", spc.start_stop_unit, _u("1b 01 00 0f f7 00"), pr=_P.WRITE),
    CommandSpec(
        0x1E,
        "PREVENT ALLOW MEDIUM REMOVAL",
        spc.prevent_allow,
        _u("1e 00 00 00 03 00"),
        pr=_P.WRITE,
    ),
    CommandSpec(
        0x55,
        "MODE SELECT(10)",
        spc.mode_select,
        _u("55 11 00 00 00 00 00 ff ff 00"),
        data_out=spc.mode_select_data_out,
        alua=_A.STANDBY,
        pr=_P.WRITE,
    ),
    CommandSpec(
        0x56,
        "RESERVE(10)",
        reserve.reserve,
        _u("56 00 00 00 00 00 00 00 00 00"),
        alua=_A.ACTIVE,
        pr=_P.ALLOWED,
    ),
    CommandSpec(
        0x57,
        "RELEASE(10)",
        reserve.release,
        _u("57 00 00 00 00 00 00 00 00 00"),
        reservation_exempt=True,
        alua=_A.ACTIVE,
        pr=_P.ALLOWED,
    ),
    CommandSpec(
        0x5A, "MODE SENSE(10)", spc.mode_sense, _u("5a 18 ff ff 00 00 00 ff ff 00"), alua=_A.STANDBY
    ),
    CommandSpec(
        0xA0,
        "REPORT LUNS",
        spc.report_luns,
        _u("a0 00 ff 00 00 00 ff ff ff ff 00 00"),
        ua_exempt=True,
        reservation_exempt=True,
        alua=_A.ALWAYS,
        pr=_P.ALLOWED,
    ),
    CommandSpec(
        0xA3,
        "REPORT TARGET PORT GROUPS",
        spc.report_target_port_groups,
        _u("a3 ea 00 00 00 00 ff ff ff ff 00 00"),
        service_action=0x0A,
        alua=_A.ALWAYS,
        pr=_P.ALLOWED,
    ),
    CommandSpec(
        0xA3,
        "REPORT SUPPORTED OPERATION CODES",
        spc.report_supported_opcodes,
        _u("a3 0c 87 ff ff ff ff ff ff ff 00 00"),
        service_action=0x0C,
        alua=_A.ACTIVE,
    ),
    CommandSpec(
        0x5E,
        "PERSISTENT RESERVE IN (READ KEYS)",
        persist.persistent_reserve_in,
        _u("5e 1f 00 00 00 00 00 ff ff 00"),
        service_action=0x00,
        reservation_exempt=True,
        alua=_A.STANDBY,
        pr=_P.ALLOWED,
    ),
    *(
        CommandSpec(
            0x5E,
            f"PERSISTENT RESERVE IN ({name})",
            persist.persistent_reserve_in,
            _u("5e 1f 00 00 00 00 00 ff ff 00"),
            service_action=sa,
            reservation_exempt=True,
            alua=_A.STANDBY,
            pr=_P.ALLOWED,
        )
        for sa, name in (
            (1, "READ RESERVATION"),
            (2, "REPORT CAPABILITIES"),
            (3, "READ FULL STATUS"),
        )
    ),
    *(
        CommandSpec(
            0x5F,
            f"PERSISTENT RESERVE OUT ({name})",
            persist.persistent_reserve_out,
            _u("5f 1f ff 00 00 ff ff ff ff 00"),
            service_action=sa,
            data_out=persist.persistent_reserve_out_data_out,
            alua=_A.STANDBY,
            pr=_P.ALLOWED,
        )
        for sa, name in (
            (0, "REGISTER"),
            (1, "RESERVE"),
            (2, "RELEASE"),
            (3, "CLEAR"),
            (4, "PREEMPT"),
            (5, "PREEMPT AND ABORT"),
            (6, "REGISTER AND IGNORE EXISTING KEY"),
            (7, "REGISTER AND MOVE"),
        )
    ),
    *(
        CommandSpec(
            0x48,
            f"SANITIZE ({name})",
            sanitize.sanitize,
            _u("48 9f 00 00 00 00 00 ff ff 00"),
            service_action=sa,
            data_out=sanitize.sanitize_data_out,
            writes=True,
            timeout=3600,
        )
        for sa, name in (
            (0x01, "OVERWRITE"),
            (0x02, "BLOCK ERASE"),
            (0x03, "CRYPTO ERASE"),
            (0x1F, "EXIT FAILURE MODE"),
        )
    ),
    CommandSpec(
        0x83,
        "EXTENDED COPY(LID1)",
        xcopy.extended_copy,
        _u("83 1f 00 00 00 00 00 00 00 00 ff ff ff ff 00 00"),
        service_action=0x00,
        data_out=xcopy.extended_copy_data_out,
        writes=True,
        timeout=300,
    ),
    *(
        CommandSpec(
            0x84,
            f"RECEIVE COPY RESULTS ({name})",
            xcopy.receive_copy_results,
            _u("84 1f ff 00 00 00 00 00 00 00 ff ff ff ff 00 00"),
            service_action=sa,
        )
        for sa, name in ((0x00, "COPY STATUS"), (0x03, "OPERATING PARAMETERS"))
    ),
    # --- SBC ---------------------------------------------------------------------------
    CommandSpec(0x08, "READ(6)", sbc.read, _u("08 1f ff ff ff 00")),
    CommandSpec(
        0x0A,
        "WRITE(6)",
        sbc.write,
        _u("0a 1f ff ff ff 00"),
        data_out=sbc.write_data_out,
        writes=True,
    ),
    CommandSpec(
        0x25,
        "READ CAPACITY(10)",
        sbc.read_capacity10,
        _u("25 00 00 00 00 00 00 00 00 00"),
        alua=_A.STANDBY,
    ),
    CommandSpec(0x28, "READ(10)", sbc.read, _u("28 f8 ff ff ff ff 00 ff ff 00")),
    CommandSpec(
        0x2A,
        "WRITE(10)",
        sbc.write,
        _u("2a f8 ff ff ff ff 00 ff ff 00"),
        data_out=sbc.write_data_out,
        writes=True,
    ),
    CommandSpec(
        0x2E,
        "WRITE AND VERIFY(10)",
        sbc.write_and_verify,
        _u("2e f2 ff ff ff ff 00 ff ff 00"),
        data_out=sbc.write_data_out,
        writes=True,
    ),
    CommandSpec(
        0x2F,
        "VERIFY(10)",
        sbc.verify,
        _u("2f f6 ff ff ff ff 00 ff ff 00"),
        data_out=sbc.verify_data_out,
    ),
    CommandSpec(
        0x35,
        "SYNCHRONIZE CACHE(10)",
        sbc.synchronize_cache,
        _u("35 02 ff ff ff ff 00 ff ff 00"),
        pr=_P.WRITE,
    ),
    CommandSpec(
        0x41,
        "WRITE SAME(10)",
        sbc.write_same,
        _u("41 fe ff ff ff ff 00 ff ff 00"),
        data_out=sbc.write_same_data_out,
        writes=True,
        timeout=120,
    ),
    CommandSpec(
        0x42,
        "UNMAP",
        sbc.unmap,
        _u("42 01 00 00 00 00 00 ff ff 00"),
        data_out=sbc.unmap_data_out,
        writes=True,
        timeout=120,
    ),
    CommandSpec(0x88, "READ(16)", sbc.read, _u("88 f8 ff ff ff ff ff ff ff ff ff ff ff ff 00 00")),
    CommandSpec(
        0x89,
        "COMPARE AND WRITE",
        sbc.compare_and_write,
        _u("89 f8 ff ff ff ff ff ff ff ff 00 00 00 ff 00 00"),
        data_out=sbc.compare_and_write_data_out,
        writes=True,
        exclusive=True,
    ),
    CommandSpec(
        0x8A,
        "WRITE(16)",
        sbc.write,
        _u("8a f8 ff ff ff ff ff ff ff ff ff ff ff ff 00 00"),
        data_out=sbc.write_data_out,
        writes=True,
    ),
    CommandSpec(
        0x8E,
        "WRITE AND VERIFY(16)",
        sbc.write_and_verify,
        _u("8e f2 ff ff ff ff ff ff ff ff ff ff ff ff 00 00"),
        data_out=sbc.write_data_out,
        writes=True,
    ),
    CommandSpec(
        0x8F,
        "VERIFY(16)",
        sbc.verify,
        _u("8f f6 ff ff ff ff ff ff ff ff ff ff ff ff 00 00"),
        data_out=sbc.verify_data_out,
    ),
    CommandSpec(
        0x91,
        "SYNCHRONIZE CACHE(16)",
        sbc.synchronize_cache,
        _u("91 02 ff ff ff ff ff ff ff ff ff ff ff ff 00 00"),
        pr=_P.WRITE,
    ),
    CommandSpec(
        0x93,
        "WRITE SAME(16)",
        sbc.write_same,
        _u("93 ff ff ff ff ff ff ff ff ff ff ff ff ff 00 00"),
        data_out=sbc.write_same_data_out,
        writes=True,
        timeout=120,
    ),
    CommandSpec(
        0x9E,
        "READ CAPACITY(16)",
        sbc.read_capacity16,
        _u("9e 10 00 00 00 00 00 00 00 00 ff ff ff ff 00 00"),
        service_action=0x10,
        alua=_A.STANDBY,
    ),
    CommandSpec(
        0x9E,
        "GET LBA STATUS",
        sbc.get_lba_status,
        _u("9e 12 ff ff ff ff ff ff ff ff ff ff ff ff 00 00"),
        service_action=0x12,
    ),
    CommandSpec(0x34, "PRE-FETCH(10)", sbc.pre_fetch, _u("34 02 ff ff ff ff 00 ff ff 00")),
    CommandSpec(
        0x37, "READ DEFECT DATA(10)", sbc.read_defect_data, _u("37 00 1f 00 00 00 00 ff ff 00")
    ),
    CommandSpec(
        0x8B,
        "ORWRITE(16)",
        sbc.orwrite,
        _u("8b fa ff ff ff ff ff ff ff ff ff ff ff ff 00 00"),
        data_out=sbc.orwrite_data_out,
        writes=True,
        exclusive=True,
    ),
    CommandSpec(
        0x90, "PRE-FETCH(16)", sbc.pre_fetch, _u("90 02 ff ff ff ff ff ff ff ff ff ff ff ff 00 00")
    ),
    CommandSpec(
        0x9C,
        "WRITE ATOMIC(16)",
        sbc.write_atomic16,
        _u("9c f8 ff ff ff ff ff ff ff ff 00 00 ff ff 00 00"),
        data_out=sbc.write_atomic_data_out,
        writes=True,
        exclusive=True,
    ),
    CommandSpec(
        0xB7,
        "READ DEFECT DATA(12)",
        sbc.read_defect_data,
        _u("b7 1f 00 00 00 00 ff ff ff ff 00 00"),
    ),
    CommandSpec(0xA8, "READ(12)", sbc.read, _u("a8 f8 ff ff ff ff ff ff ff ff 00 00")),
    CommandSpec(
        0xAA,
        "WRITE(12)",
        sbc.write,
        _u("aa f8 ff ff ff ff ff ff ff ff 00 00"),
        data_out=sbc.write_data_out,
        writes=True,
    ),
    CommandSpec(
        0xAE,
        "WRITE AND VERIFY(12)",
        sbc.write_and_verify,
        _u("ae f2 ff ff ff ff ff ff ff ff 00 00"),
        data_out=sbc.write_data_out,
        writes=True,
    ),
    CommandSpec(
        0xAF,
        "VERIFY(12)",
        sbc.verify,
        _u("af f6 ff ff ff ff ff ff ff ff 00 00"),
        data_out=sbc.verify_data_out,
    ),
)

DEFAULT_TABLE = CommandTable(DEFAULT_SPECS)
