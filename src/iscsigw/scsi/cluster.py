"""LU state that every gateway exporting a LU must agree on, beyond persistent reservations.

A ``LogicalUnit`` runs in one gateway process; several gateways export the same LU through
their own target ports. SPC-4 state that belongs to the LU rather than to one target port has
to be shared between them, or an initiator with paths through two gateways sees two different
devices. :class:`LuCluster` is that sharing, in the shape the SCSI layer needs:

* the SCSI-2 reservation holder (RESERVE/RELEASE are compare-and-swap operations),
* LOGICAL UNIT RESET / target reset (29/03 on every I_T nexus of the LU, and the release of
  the SCSI-2 reservation, on every gateway),
* the Control and Caching mode page values (D_SENSE, SWP, WCE; 2A/01 elsewhere when changed),
* a SANITIZE in progress or failed (2/04/1B and 3/31/03 on every path).

Persistent reservations travel through the LU's :class:`~iscsigw.scsi.pr.PrStore`; a cluster
implementation usually provides both (``iscsigw.gateway.prstore``).

``refresh()`` is called at the start of every command: it must be cheap (a shared-memory
sequence number compare) and pick up every change another gateway finished committing before
the command arrived, calling back into the LU (:class:`ClusterMember`) on the event loop.
The other operations commit and return once the change is visible to every gateway.
"""

from __future__ import annotations

from typing import Protocol


class ClusterMember(Protocol):
    """What a :class:`LuCluster` calls on the LU when it learns of a change."""

    def cluster_reservation(self, holder: str | None) -> None:
        """The SCSI-2 reservation holder (an ``ITNexus.key``) is now ``holder``."""
        ...

    def cluster_reset(self) -> None:
        """Another gateway reset the LU (LOGICAL UNIT RESET or a target reset)."""
        ...

    def cluster_mode(self, wce: bool, d_sense: bool, swp: bool, *, changed: bool) -> None:
        """The shared mode page values; ``changed``: changed by another gateway (2A/01)."""
        ...

    def cluster_sanitize(self, state: str | None) -> None:
        """``"running"``, ``"failed"`` or None, as set by the gateway running SANITIZE."""
        ...


class LuCluster(Protocol):
    def attach(self, member: ClusterMember) -> None:
        """Start delivering changes to ``member`` (and deliver the current state at once)."""
        ...

    def refresh(self) -> None:
        """Pick up changes committed elsewhere. Cheap; called for every command."""
        ...

    async def reserve(self, key: str) -> bool:
        """SCSI-2 RESERVE by ``key``: True when ``key`` holds the reservation afterwards."""
        ...

    async def release(self, key: str) -> None:
        """Release the SCSI-2 reservation if ``key`` holds it."""
        ...

    async def reset(self) -> None:
        """Publish a LU reset: drop the SCSI-2 reservation, 29/03 on every other gateway."""
        ...

    async def set_mode(self, wce: bool, d_sense: bool, swp: bool) -> None:
        """Publish new mode page values (2A/01 on the other gateways)."""
        ...

    async def set_sanitize(self, state: str | None) -> None:
        """Publish the SANITIZE state of this LU."""
        ...

    def close(self) -> None:
        """Stop sharing (the LU is being closed)."""
        ...


__all__ = ["ClusterMember", "LuCluster"]
