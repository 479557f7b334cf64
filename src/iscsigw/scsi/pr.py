"""SCSI-3 persistent reservations (SPC-4 §5.13, §6.15-6.16): a pure state machine.

Nothing here touches a logical unit, a clock or a socket. A PERSISTENT RESERVE OUT command is
``new = apply_out(state, nexus, request)``: it returns the next state (or the same object when
nothing changes) and raises :class:`CheckCondition` with status RESERVATION CONFLICT or CHECK
CONDITION. ``new.notices`` lists the side effects of that transition (unit attentions, task
aborts for PREEMPT AND ABORT) addressed to I_T nexuses by port names, so every gateway that
sees the new state can deliver the ones meant for its own sessions.

State is shared through a :class:`PrStore`: ``current`` is the last known state (what the I/O
fast path checks), ``load`` fetches the authoritative copy, ``commit`` is a compare-and-swap
on ``PrState.version`` (bumped by every committed change, unlike PRGENERATION which SPC-4
bumps only for registration changes). Listeners are told about every committed state, local
or remote. :class:`MemoryPrStore` is the single-process implementation; a cluster-backed one
(config store / RADOS object) only has to provide the same four methods.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Protocol

from .sense import (
    PARAM_LIST_LENGTH_ERROR,
    REGISTRATIONS_PREEMPTED,
    RESERVATIONS_PREEMPTED,
    RESERVATIONS_RELEASED,
    CheckCondition,
    SenseCode,
    invalid_field,
    invalid_param,
)
from .task import RESERVATION_CONFLICT, ITNexus

_BE16 = struct.Struct(">H").pack
_BE32 = struct.Struct(">I").pack
_BE64 = struct.Struct(">Q").pack

MAX_REGISTRATIONS = 256
INSUFFICIENT_REGISTRATION_RESOURCES = SenseCode(0x5, 0x55, 0x04)
INVALID_RELEASE_OF_PR = SenseCode(0x5, 0x26, 0x04)

SCOPE_LU = 0


class PrType(IntEnum):
    WRITE_EXCLUSIVE = 1
    EXCLUSIVE_ACCESS = 3
    WRITE_EXCLUSIVE_RO = 5
    EXCLUSIVE_ACCESS_RO = 6
    WRITE_EXCLUSIVE_AR = 7
    EXCLUSIVE_ACCESS_AR = 8


VALID_TYPES = frozenset(int(t) for t in PrType)
REGISTRANTS_ONLY = frozenset((PrType.WRITE_EXCLUSIVE_RO, PrType.EXCLUSIVE_ACCESS_RO))
ALL_REGISTRANTS = frozenset((PrType.WRITE_EXCLUSIVE_AR, PrType.EXCLUSIVE_ACCESS_AR))
EXCLUSIVE_ACCESS_TYPES = frozenset(
    (PrType.EXCLUSIVE_ACCESS, PrType.EXCLUSIVE_ACCESS_RO, PrType.EXCLUSIVE_ACCESS_AR)
)


class PrOut(IntEnum):
    REGISTER = 0
    RESERVE = 1
    RELEASE = 2
    CLEAR = 3
    PREEMPT = 4
    PREEMPT_AND_ABORT = 5
    REGISTER_AND_IGNORE = 6
    REGISTER_AND_MOVE = 7


class PrIn(IntEnum):
    READ_KEYS = 0
    READ_RESERVATION = 1
    REPORT_CAPABILITIES = 2
    READ_FULL_STATUS = 3


class PrAccess(IntEnum):
    """How a command is treated by a persistent reservation the nexus does not hold."""

    ALLOWED = 0  # INQUIRY, REPORT LUNS, PR IN/OUT, TUR...: never a conflict
    READ = 1  # reads the medium or LU state: conflicts only with Exclusive Access types
    WRITE = 2  # modifies the medium or LU state: conflicts with every type


@functools.lru_cache(maxsize=4096)
def _nexus_ports(nexus: ITNexus) -> tuple[str, str]:
    return nexus.initiator_port.lower(), nexus.target_port.lower()


@dataclass(frozen=True, slots=True)
class Registration:
    """One registered I_T nexus (or, with ``target_port`` None, ALL_TG_PT: every target port)."""

    key: int
    initiator_port: str  # "iqn...,i,0x<ISID>" as the initiator spelled it
    target_port: str | None  # "iqn...,t,0x<TPGT>"; None = all target ports
    rtpi: int = 0

    @property
    def ident(self) -> tuple[str, str | None]:
        return self.initiator_port.lower(), (
            self.target_port.lower() if self.target_port is not None else None
        )

    def matches(self, nexus: ITNexus) -> bool:
        ip, tp = _nexus_ports(nexus)
        return self.initiator_port.lower() == ip and (
            self.target_port is None or self.target_port.lower() == tp
        )


@dataclass(frozen=True, slots=True)
class Reservation:
    type: int
    scope: int = SCOPE_LU
    # The holding registration's ident (initiator port, target port); None for all-registrants.
    holder: tuple[str, str | None] | None = None

    @property
    def all_registrants(self) -> bool:
        return self.type in ALL_REGISTRANTS


@dataclass(frozen=True, slots=True)
class PrNotice:
    """A side effect of a transition for the I_T nexuses of one registration."""

    initiator_port: str
    target_port: str | None  # None: every target port of the initiator port
    code: SenseCode | None = None  # unit attention to queue
    abort: bool = False  # abort the nexus's tasks (PREEMPT AND ABORT)

    def matches(self, nexus: ITNexus) -> bool:
        ip, tp = _nexus_ports(nexus)
        return self.initiator_port.lower() == ip and (
            self.target_port is None or self.target_port.lower() == tp
        )


@dataclass(frozen=True, slots=True)
class PrState:
    version: int = 0  # bumped by every committed change (compare-and-swap token)
    generation: int = 0  # PRGENERATION (SPC-4 §6.15.2)
    registrations: tuple[Registration, ...] = ()
    reservation: Reservation | None = None
    aptpl: bool = False
    notices: tuple[PrNotice, ...] = field(default=(), compare=False)

    # -- queries ---------------------------------------------------------------------------
    def registration_of(self, nexus: ITNexus) -> Registration | None:
        for reg in self.registrations:
            if reg.matches(nexus):
                return reg
        return None

    def is_holder(self, nexus: ITNexus) -> bool:
        res = self.reservation
        if res is None:
            return False
        reg = self.registration_of(nexus)
        if reg is None:
            return False
        return res.all_registrants or reg.ident == res.holder

    def holder_registration(self) -> Registration | None:
        res = self.reservation
        if res is None or res.holder is None:
            return None
        for reg in self.registrations:
            if reg.ident == res.holder:
                return reg
        return None

    def conflicts(self, nexus: ITNexus, access: PrAccess) -> bool:
        """Whether a command of class ``access`` from ``nexus`` gets RESERVATION CONFLICT."""
        res = self.reservation
        if res is None or access == PrAccess.ALLOWED:
            return False
        reg = self.registration_of(nexus)
        if reg is not None:
            if res.all_registrants or res.type in REGISTRANTS_ONLY:
                return False  # every registrant has full access
            if reg.ident == res.holder:
                return False
        # Not the holder (a plain registrant of WE/EA, or not registered at all).
        if res.type in EXCLUSIVE_ACCESS_TYPES:
            return True
        return access == PrAccess.WRITE

    # -- serialization (for stores that persist or share the state) -------------------------
    def to_dict(self) -> dict[str, Any]:
        res = self.reservation
        return {
            "version": self.version,
            "generation": self.generation,
            "aptpl": self.aptpl,
            "registrations": [
                {
                    "key": r.key,
                    "initiator": r.initiator_port,
                    "target": r.target_port,
                    "rtpi": r.rtpi,
                }
                for r in self.registrations
            ],
            "reservation": None
            if res is None
            else {
                "type": res.type,
                "scope": res.scope,
                "holder": list(res.holder) if res.holder is not None else None,
            },
            "notices": [
                {
                    "initiator": n.initiator_port,
                    "target": n.target_port,
                    "code": list(n.code) if n.code is not None else None,
                    "abort": n.abort,
                }
                for n in self.notices
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrState:
        res = d.get("reservation")
        holder = res.get("holder") if res else None
        return cls(
            version=int(d.get("version", 0)),
            generation=int(d.get("generation", 0)),
            aptpl=bool(d.get("aptpl", False)),
            registrations=tuple(
                Registration(
                    int(r["key"]), str(r["initiator"]), r.get("target"), int(r.get("rtpi", 0))
                )
                for r in d.get("registrations", ())
            ),
            reservation=None
            if not res
            else Reservation(
                int(res["type"]),
                int(res.get("scope", 0)),
                (str(holder[0]), holder[1]) if holder else None,
            ),
            notices=tuple(
                PrNotice(
                    str(n["initiator"]),
                    n.get("target"),
                    SenseCode(*n["code"]) if n.get("code") else None,
                    bool(n.get("abort", False)),
                )
                for n in d.get("notices", ())
            ),
        )

    def after_power_loss(self) -> PrState:
        """What survives a restart of every gateway: everything with APTPL, nothing without."""
        if self.aptpl:
            return replace(self, notices=())
        return PrState(version=self.version + 1, generation=self.generation)


# ---------------------------------------------------------------------------------------------
# PERSISTENT RESERVE OUT


@dataclass(frozen=True, slots=True)
class PrOutRequest:
    service_action: int
    scope: int
    type: int
    key: int  # RESERVATION KEY
    sa_key: int  # SERVICE ACTION RESERVATION KEY
    spec_i_pt: bool = False
    all_tg_pt: bool = False
    aptpl: bool = False
    # REGISTER AND MOVE
    unreg: bool = False
    rtpi: int = 0
    transport_id: bytes = b""


def parse_out(cdb: bytes, data: bytes) -> PrOutRequest:
    """Decode a PERSISTENT RESERVE OUT CDB and its parameter list (SPC-4 §6.16)."""
    if len(cdb) < 10:
        raise invalid_field(0)
    sa = cdb[1] & 0x1F
    scope, type_ = cdb[2] >> 4, cdb[2] & 0x0F
    plen = struct.unpack_from(">I", cdb, 5)[0]
    if sa > PrOut.REGISTER_AND_MOVE:
        raise invalid_field(1, 4)
    if len(data) < plen:
        raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
    if sa == PrOut.REGISTER_AND_MOVE:
        if plen < 24:
            raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
        key, sa_key = struct.unpack_from(">QQ", data, 0)
        tid_len = struct.unpack_from(">I", data, 20)[0]
        if 24 + tid_len > plen or (tid_len < 24 and tid_len != 0):
            raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
        return PrOutRequest(
            sa,
            scope,
            type_,
            key,
            sa_key,
            aptpl=bool(data[17] & 0x01),
            unreg=bool(data[17] & 0x02),
            rtpi=struct.unpack_from(">H", data, 18)[0],
            transport_id=bytes(data[24 : 24 + tid_len]),
        )
    if plen != 24:
        # SPEC_I_PT (the only reason for a longer list) is not supported (SIP_C=0).
        if plen > 24 and len(data) >= 21 and data[20] & 0x08:
            raise invalid_param(20, 3)
        raise CheckCondition.of(PARAM_LIST_LENGTH_ERROR)
    key, sa_key = struct.unpack_from(">QQ", data, 0)
    flags = data[20]
    if flags & 0x08:
        raise invalid_param(20, 3)  # SPEC_I_PT: SIP_C=0
    return PrOutRequest(
        sa,
        scope,
        type_,
        key,
        sa_key,
        spec_i_pt=False,
        all_tg_pt=bool(flags & 0x04),
        aptpl=bool(flags & 0x01),
    )


def conflict() -> CheckCondition:
    return CheckCondition(0, 0, 0, status=RESERVATION_CONFLICT)


def _next(state: PrState, *, bump: bool, **changes: Any) -> PrState:
    gen = (state.generation + 1) & 0xFFFFFFFF if bump else state.generation
    changes.setdefault("notices", ())
    return replace(state, version=state.version + 1, generation=gen, **changes)


def _ua(reg: Registration, code: SenseCode, *, abort: bool = False) -> PrNotice:
    return PrNotice(reg.initiator_port, reg.target_port, code, abort)


def _check_type_scope(req: PrOutRequest) -> None:
    if req.scope != SCOPE_LU:
        raise invalid_field(2, 7)
    if req.type not in VALID_TYPES:
        raise invalid_field(2, 3)


def _new_registration(nexus: ITNexus, key: int, all_tg_pt: bool, state: PrState) -> Registration:
    if len(state.registrations) >= MAX_REGISTRATIONS:
        raise CheckCondition.of(INSUFFICIENT_REGISTRATION_RESOURCES)
    return Registration(
        key,
        nexus.initiator_port,
        None if all_tg_pt else nexus.target_port,
        nexus.relative_port_id,
    )


def _unregister(state: PrState, reg: Registration) -> PrState:
    """Remove ``reg``; release the reservation it holds (SPC-4 §5.13.11.3)."""
    regs = tuple(r for r in state.registrations if r is not reg)
    res = state.reservation
    notices: list[PrNotice] = []
    if res is not None:
        if res.all_registrants:
            if not regs:
                res = None
        elif res.holder == reg.ident:
            if res.type in REGISTRANTS_ONLY:
                notices = [_ua(r, RESERVATIONS_RELEASED) for r in regs]
            res = None
    return _next(
        state,
        bump=True,
        registrations=regs,
        reservation=res,
        aptpl=state.aptpl if regs else False,
        notices=tuple(notices),
    )


def apply_out(state: PrState, nexus: ITNexus, req: PrOutRequest) -> PrState:
    """The state after ``req`` from ``nexus``; ``state`` itself when nothing changes."""
    sa = req.service_action
    reg = state.registration_of(nexus)

    if sa in (PrOut.REGISTER, PrOut.REGISTER_AND_IGNORE):
        if req.spec_i_pt:
            raise invalid_param(20, 3)
        if reg is None:
            if sa == PrOut.REGISTER and req.key != 0:
                raise conflict()
            if req.sa_key == 0:
                return state  # unregistering an unregistered nexus: GOOD, no change
            new = _new_registration(nexus, req.sa_key, req.all_tg_pt, state)
            return _next(
                state,
                bump=True,
                registrations=(*state.registrations, new),
                aptpl=req.aptpl,
            )
        if sa == PrOut.REGISTER and req.key != reg.key:
            raise conflict()
        if req.sa_key == 0:
            return _unregister(state, reg)
        regs = tuple(replace(r, key=req.sa_key) if r is reg else r for r in state.registrations)
        return _next(state, bump=True, registrations=regs, aptpl=req.aptpl)

    # Every other service action needs a registered nexus quoting its own key.
    if reg is None or req.key != reg.key:
        raise conflict()

    if sa == PrOut.RESERVE:
        _check_type_scope(req)
        res = state.reservation
        if res is not None:
            if state.is_holder(nexus) and res.type == req.type and res.scope == req.scope:
                return state
            raise conflict()
        holder = None if req.type in ALL_REGISTRANTS else reg.ident
        return _next(state, bump=False, reservation=Reservation(req.type, req.scope, holder))

    if sa == PrOut.RELEASE:
        res = state.reservation
        if res is None or not state.is_holder(nexus):
            return state
        if res.type != req.type or res.scope != req.scope:
            raise CheckCondition.of(INVALID_RELEASE_OF_PR)
        notices: tuple[PrNotice, ...] = ()
        if res.type in REGISTRANTS_ONLY or res.all_registrants:
            notices = tuple(
                _ua(r, RESERVATIONS_RELEASED) for r in state.registrations if r is not reg
            )
        return _next(state, bump=False, reservation=None, notices=notices)

    if sa == PrOut.CLEAR:
        notices = tuple(_ua(r, RESERVATIONS_PREEMPTED) for r in state.registrations if r is not reg)
        return _next(
            state, bump=True, registrations=(), reservation=None, aptpl=False, notices=notices
        )

    if sa in (PrOut.PREEMPT, PrOut.PREEMPT_AND_ABORT):
        return _preempt(state, reg, req, abort=sa == PrOut.PREEMPT_AND_ABORT)

    # REGISTER AND MOVE
    return _register_and_move(state, nexus, reg, req)


def _preempt(state: PrState, reg: Registration, req: PrOutRequest, *, abort: bool) -> PrState:
    res = state.reservation
    sark = req.sa_key
    others = [r for r in state.registrations if r is not reg]
    if res is not None and res.all_registrants and sark == 0:
        # Preempting an all-registrants reservation: every other registrant goes, and the
        # preempting nexus holds a new reservation (SPC-4 §5.13.11.4.3).
        _check_type_scope(req)
        new_res = Reservation(
            req.type, req.scope, None if req.type in ALL_REGISTRANTS else reg.ident
        )
        notices = tuple(_ua(r, REGISTRATIONS_PREEMPTED, abort=abort) for r in others)
        return _next(state, bump=True, registrations=(reg,), reservation=new_res, notices=notices)
    if sark == 0:
        raise invalid_param(8)
    victims = [r for r in others if r.key == sark]
    holder = state.holder_registration()
    if res is not None and not res.all_registrants and holder is not None and holder.key == sark:
        # Preempting the holder: remove its key's registrations, take over the reservation.
        _check_type_scope(req)
        removed = {id(r) for r in victims}
        regs = tuple(r for r in state.registrations if id(r) not in removed)
        notices_l = [_ua(r, REGISTRATIONS_PREEMPTED, abort=abort) for r in victims]
        if res.type != req.type or res.scope != req.scope:
            notices_l += [_ua(r, RESERVATIONS_RELEASED) for r in regs if r is not reg]
        return _next(
            state,
            bump=True,
            registrations=regs,
            reservation=Reservation(req.type, req.scope, reg.ident),
            notices=tuple(notices_l),
        )
    # No reservation, an all-registrants one, or SARK is not the holder's key: remove the
    # registrations with that key; the reservation stays as it is.
    if not victims:
        raise conflict()
    removed = {id(r) for r in victims}
    regs = tuple(r for r in state.registrations if id(r) not in removed)
    kept: Reservation | None = res
    if res is not None and res.holder is not None and not any(r.ident == res.holder for r in regs):
        kept = None
    if res is not None and res.all_registrants and not regs:
        kept = None
    return _next(
        state,
        bump=True,
        registrations=regs,
        reservation=kept,
        notices=tuple(_ua(r, REGISTRATIONS_PREEMPTED, abort=abort) for r in victims),
    )


def parse_iscsi_transport_id(tid: bytes) -> str:
    """The initiator port (``name,i,0x<ISID>``) or initiator name of an iSCSI TransportID."""
    if len(tid) < 4 or tid[0] & 0x0F != 0x5:
        raise invalid_param(24)
    fmt = tid[0] >> 6
    length = struct.unpack_from(">H", tid, 2)[0]
    raw = tid[4 : 4 + length].split(b"\x00", 1)[0]
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_param(28) from None
    if fmt not in (0, 1) or not name:
        raise invalid_param(24, 7)
    if fmt == 1:
        parts = name.split(",")
        if len(parts) != 3 or parts[1].lower() != "i" or not parts[2].lower().startswith("0x"):
            raise invalid_param(28)
        return f"{parts[0]},i,0x{int(parts[2], 16):012x}"
    return name


def _register_and_move(
    state: PrState, nexus: ITNexus, reg: Registration, req: PrOutRequest
) -> PrState:
    res = state.reservation
    if res is None or res.all_registrants or res.holder != reg.ident:
        raise conflict()
    _check_type_scope(req)
    if req.sa_key == 0:
        raise invalid_param(8)
    if not req.transport_id:
        raise invalid_param(20)
    dest_port = parse_iscsi_transport_id(req.transport_id)
    if ",i,0x" not in dest_port:
        raise invalid_param(24, 7)  # a destination needs a full initiator port (format 01b)
    dest_target = f"{nexus.target_name},t,0x{req.rtpi:04x}"
    dest_ident = (dest_port.lower(), dest_target.lower())
    if dest_ident == reg.ident:
        raise invalid_param(20)  # moving to itself
    regs = list(state.registrations)
    existing = next((r for r in regs if r.ident == dest_ident), None)
    if existing is not None:
        dest = existing
    else:
        if len(regs) >= MAX_REGISTRATIONS:
            raise CheckCondition.of(INSUFFICIENT_REGISTRATION_RESOURCES)
        dest = Registration(req.sa_key, dest_port, dest_target, req.rtpi)
        regs.append(dest)
    if req.unreg:
        regs = [r for r in regs if r is not reg]
    return _next(
        state,
        bump=True,
        registrations=tuple(regs),
        reservation=Reservation(req.type, req.scope, dest.ident),
        aptpl=req.aptpl,
    )


# ---------------------------------------------------------------------------------------------
# PERSISTENT RESERVE IN


def transport_id(initiator_port: str) -> bytes:
    """iSCSI TransportID, format 01b (name + ISID), NUL-terminated, padded to 4 (min 20)."""
    raw = initiator_port.encode("utf-8") + b"\x00"
    raw += b"\x00" * (-len(raw) % 4)
    if len(raw) < 20:
        raw += bytes(20 - len(raw))
    fmt = 0x40 if ",i,0x" in initiator_port else 0x00
    return bytes((fmt | 0x05, 0)) + _BE16(len(raw)) + raw


def report_capabilities(state: PrState) -> bytes:
    buf = bytearray(8)
    buf[0:2] = _BE16(8)
    buf[2] = 0x10 | 0x04 | 0x01  # CRH | ATP_C | PTPL_C (SIP_C=0)
    buf[3] = 0x80 | (0x1 << 4) | (0x01 if state.aptpl else 0)  # TMV, ALLOW COMMANDS=001b
    buf[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02  # WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
    buf[5] = 0x01  # EX_AC_AR
    return bytes(buf)


def read_keys(state: PrState) -> bytes:
    keys = b"".join(_BE64(r.key) for r in state.registrations)
    return _BE32(state.generation) + _BE32(len(keys)) + keys


def read_reservation(state: PrState) -> bytes:
    res = state.reservation
    head = _BE32(state.generation)
    if res is None:
        return head + _BE32(0)
    holder = state.holder_registration()
    key = holder.key if holder is not None and not res.all_registrants else 0
    body = _BE64(key) + bytes(4) + bytes((0, (res.scope << 4) | res.type)) + bytes(2)
    return head + _BE32(len(body)) + body


def read_full_status(state: PrState) -> bytes:
    res = state.reservation
    body = bytearray()
    for reg in state.registrations:
        holds = res is not None and (res.all_registrants or res.holder == reg.ident)
        tid = transport_id(reg.initiator_port)
        desc = bytearray(24)
        desc[0:8] = _BE64(reg.key)
        desc[12] = (0x02 if reg.target_port is None else 0) | (0x01 if holds else 0)
        if holds and res is not None:
            desc[13] = (res.scope << 4) | res.type
        desc[18:20] = _BE16(0 if reg.target_port is None else reg.rtpi & 0xFFFF)
        desc[20:24] = _BE32(len(tid))
        body += desc + tid
    return _BE32(state.generation) + _BE32(len(body)) + bytes(body)


def apply_in(state: PrState, service_action: int) -> bytes:
    """Parameter data for PERSISTENT RESERVE IN (before allocation-length truncation)."""
    if service_action == PrIn.READ_KEYS:
        return read_keys(state)
    if service_action == PrIn.READ_RESERVATION:
        return read_reservation(state)
    if service_action == PrIn.REPORT_CAPABILITIES:
        return report_capabilities(state)
    if service_action == PrIn.READ_FULL_STATUS:
        return read_full_status(state)
    raise invalid_field(1, 4)


# ---------------------------------------------------------------------------------------------
# Stores

Listener = Callable[[PrState], None]


class PrStore(Protocol):
    """Where a LU's persistent reservation state lives (one per LU, shared by its gateways)."""

    @property
    def current(self) -> PrState:
        """The last known state, without I/O: what the command fast path is checked against."""
        ...

    async def load(self) -> PrState:
        """The authoritative state (refreshes ``current``)."""
        ...

    async def commit(self, expected_version: int, new: PrState) -> bool:
        """Store ``new`` iff the stored version is still ``expected_version`` (CAS).

        On success ``current`` becomes ``new`` and every listener is called with it; on a lost
        race returns False and the caller reloads and recomputes.
        """
        ...

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(state)`` for every committed state, local or remote; returns an
        unsubscribe function."""
        ...


class MemoryPrStore:
    """In-process store. Several LogicalUnits may share one (e.g. two gateways in a test)."""

    def __init__(self, state: PrState | None = None) -> None:
        self._state = state if state is not None else PrState()
        self._listeners: list[Listener] = []

    @property
    def current(self) -> PrState:
        return self._state

    async def load(self) -> PrState:
        return self._state

    async def commit(self, expected_version: int, new: PrState) -> bool:
        if self._state.version != expected_version:
            return False
        self._state = new
        for listener in list(self._listeners):
            listener(new)
        return True

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe
