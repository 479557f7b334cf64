"""Implicit ALUA description of a LU: its target port groups and their access states.

One TPG per gateway; its tag is also the relative target port id and the ALUA group id
(as ceph-iscsi does), so a gateway's local group is ``ITNexus.tpgt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class AluaState(IntEnum):
    ACTIVE_OPTIMIZED = 0x0
    ACTIVE_NON_OPTIMIZED = 0x1
    STANDBY = 0x2
    UNAVAILABLE = 0x3
    LBA_DEPENDENT = 0x4
    OFFLINE = 0xE
    TRANSITIONING = 0xF


@dataclass(frozen=True, slots=True)
class PortGroup:
    tpg_id: int
    state: AluaState = AluaState.ACTIVE_OPTIMIZED
    pref: bool = False
    # Relative target port ids in the group; empty means just (tpg_id,).
    ports: tuple[int, ...] = ()
    status_code: int = 0  # 0 none, 1 altered by STPG, 2 altered implicitly

    @property
    def port_ids(self) -> tuple[int, ...]:
        return self.ports or (self.tpg_id,)


@dataclass(frozen=True, slots=True)
class PortGroups:
    groups: tuple[PortGroup, ...] = field(default_factory=lambda: (PortGroup(1),))
    implicit_transition_time: int = 45  # seconds (backend lock timeout + 15, as ceph)

    @classmethod
    def implicit(cls, tpg_ids: list[int] | tuple[int, ...], owner: int) -> PortGroups:
        """Owner group AO, every other group ANO."""
        return cls(
            tuple(
                PortGroup(
                    t,
                    AluaState.ACTIVE_OPTIMIZED if t == owner else AluaState.ACTIVE_NON_OPTIMIZED,
                )
                for t in tpg_ids
            )
        )

    def group_of_port(self, rtpi: int) -> PortGroup | None:
        for g in self.groups:
            if rtpi in g.port_ids:
                return g
        return None

    @property
    def port_count(self) -> int:
        return sum(len(g.port_ids) for g in self.groups)
