"""The live gateway: logical units opened from the config, sessions, login policy, resets.

This is the only place that joins the config model, the sans-IO protocol core, the SCSI layer
and the backends. It owns no sockets itself (``server.py`` does) but it is allowed to await.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends.registry import open_backend
from ..config.model import GatewayConfig, TargetConfig
from ..config.settings import CephConnection
from ..errors import ConfigError, LoginError
from ..iscsi.auth import ChapSecrets
from ..iscsi.connection import Timeouts
from ..iscsi.keys import TargetSettings
from ..iscsi.login import LoginOutcome
from ..scsi.alua import PortGroups
from ..scsi.identity import LuIdentity
from ..scsi.lun import LogicalUnit
from ..scsi.target import LunMap
from ..scsi.task import ITNexus
from ..scsi.xcopy import LuRegistry
from .prstore import STATE_DIR, FileRangeLock, LuStateDirectory

if TYPE_CHECKING:
    from .driver import IscsiProtocol

log = logging.getLogger("iscsigw.runtime")


@dataclass(slots=True)
class SessionView:
    """What a logged-in connection needs: its LUN map and names."""

    initiator_name: str
    isid: int
    tsih: int
    target_name: str | None
    session_type: str
    lun_map: LunMap


@dataclass(slots=True)
class ApplyReport:
    """What one ``apply_config`` changed on this gateway."""

    epoch: int
    opened: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    sessions_closed: int = 0


@dataclass(slots=True)
class _Target:
    config: TargetConfig
    tpgt: int
    luns: dict[str, LogicalUnit] = field(default_factory=dict)  # disk key -> LU


class TargetAdapter:
    """``iscsi.login.TargetView`` over a target of the config."""

    def __init__(self, target: TargetConfig, tpgt: int) -> None:
        self._target = target
        self.name = target.iqn
        self.alias = target.alias
        self.tpgt = tpgt

    def allows(self, initiator_name: str) -> bool:
        t = self._target
        if not t.may_login(initiator_name):
            return False
        if t.auth_required and t.chap_for(initiator_name) is None:
            # CHAP is on by default: a target without credentials is closed, not open.
            log.warning(
                "refusing %s on %s: CHAP required but no credentials configured",
                initiator_name,
                t.iqn,
            )
            return False
        return True

    def chap_for(self, initiator_name: str) -> ChapSecrets | None:
        chap = self._target.chap_for(initiator_name)
        if chap is None:
            return None
        return ChapSecrets(chap.username, chap.password, chap.mutual_username, chap.mutual_password)


class GatewayRuntime:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        data_dir: Path,
        name: str,
        settings: TargetSettings | None = None,
        timeouts: Timeouts | None = None,
        ceph: CephConnection | None = None,
    ) -> None:
        self.config = config
        self.ceph = ceph or CephConnection()  # rbd disks: iscsi-gateway.cfg's cluster
        self.data_dir = data_dir
        self.name = name
        self.settings = settings or TargetSettings()
        self.timeouts = timeouts or Timeouts()
        self.targets: dict[str, _Target] = {}
        self.lus: dict[str, LogicalUnit] = {}
        self.connections: set[IscsiProtocol] = set()
        self.sessions: dict[tuple[str, int, str | None], IscsiProtocol] = {}
        self._next_tsih = 1
        self._retired: dict[str, LogicalUnit] = {}
        self.copy_registry = LuRegistry()
        # PR / SCSI-2 / reset / mode page state shared with the other gateways of each LU.
        self.lu_states = LuStateDirectory(data_dir / STATE_DIR, name)
        self.send_targets_policy = _SendTargets(self)

    # -- start / stop -------------------------------------------------------------------------
    async def open(self) -> None:
        """Open every disk mapped to a target this gateway serves; a bad disk is an error."""
        await self.apply_config(self.config)
        log.info(
            "gateway %s serves %d target(s), %d LUN(s)", self.name, len(self.targets), len(self.lus)
        )

    async def apply_config(self, new: GatewayConfig) -> ApplyReport:
        """Make the running gateway match ``new`` without a restart (live reconfiguration).

        New disks are opened and resized ones grown (2A/09 to their sessions); sessions see LUN
        map changes at once (3F/0E); a session whose target vanished or whose initiator lost its
        ACL is closed; CHAP changes apply to the next login. Untouched sessions keep running.
        """
        report = ApplyReport(epoch=new.epoch)
        old_disks = self.config.disks
        targets: dict[str, _Target] = {}
        lus: dict[str, LogicalUnit] = {}
        for iqn, target in new.targets.items():
            tpgt = target.tpg_for(self.name)
            if tpgt is None:
                continue
            entry = _Target(target, tpgt)
            for disk_key in _disk_keys(target):
                lu = lus.get(disk_key) or self.lus.get(disk_key)
                disk = new.disks.get(disk_key)
                if disk is None:
                    raise ConfigError(
                        f"target {iqn} maps disk {disk_key!r} which is not in 'disks'"
                    )
                if lu is None:
                    self.config = new  # _open_lu reads the disk from the config being applied
                    lu = await self._open_lu(disk_key, target)
                    report.opened.append(disk_key)
                else:
                    before = old_disks.get(disk_key)
                    if (
                        before is not None
                        and disk.size != before.size
                        and disk.size > lu.backend.size
                    ):
                        await lu.backend.resize(disk.size)
                        lu.notify_capacity_changed()
                        report.resized.append(disk_key)
                    tpgs = sorted(p.tpg for p in target.portals.values())
                    owner = target.tpg_for(disk.owner) if disk.owner else None
                    # A new owner: the changed groups report Transitioning while this
                    # gateway's cached writes reach the backend.
                    await lu.transition(
                        PortGroups.implicit(tpgs, owner=owner if owner is not None else tpgs[0]),
                        lu.backend.flush,
                    )
                lus[disk_key] = lu
                entry.luns[disk_key] = lu
            targets[iqn] = entry
        closed = [key for key in self.lus if key not in lus]
        for key in closed:
            self._retired[key] = self.lus[key]
        self.config = new
        self.targets = targets
        self.lus = lus
        # Bring every live session in line with its target's new view.
        for proto in list(self.connections):
            view = proto.session
            if view is None or view.target_name is None:
                continue
            live = self._find_target(view.target_name)
            if live is None or not TargetAdapter(live.config, live.tpgt).allows(
                view.initiator_name
            ):
                log.info(
                    "closing session of %s: no longer allowed on %s",
                    view.initiator_name,
                    view.target_name,
                )
                proto.abort()
                report.sessions_closed += 1
                continue
            wanted = {
                lun: live.luns[key]
                for lun, key in live.config.luns_for(view.initiator_name).items()
                if key in live.luns
            }
            current = dict(view.lun_map.items())
            for lun, lu in current.items():
                if wanted.get(lun) is not lu:
                    view.lun_map.remove(lun)
            for lun, lu in wanted.items():
                if current.get(lun) is not lu:
                    view.lun_map.add(lun, lu)
        report.closed.extend(closed)
        await self._close_unused(closed)
        return report

    async def _close_unused(self, keys: list[str]) -> None:
        # Disks dropped from every target: their LUs are no longer in any LUN map.
        for key in keys:
            lu = self._retired.pop(key, None)
            if lu is not None:
                await self._release_lu(lu)
                await lu.backend.close()

    async def _release_lu(self, lu: LogicalUnit) -> None:
        self.copy_registry.remove(lu)
        lu.close_pr()
        if lu.sanitizing is not None:
            lu.sanitizing.cancel()
            await asyncio.gather(lu.sanitizing, return_exceptions=True)

    def _find_target(self, name: str) -> _Target | None:
        entry = self.targets.get(name)
        if entry is None:
            for iqn, e in self.targets.items():
                if iqn.lower() == name.lower():
                    return e
        return entry

    async def _open_lu(self, disk_key: str, target: TargetConfig) -> LogicalUnit:
        disk = self.config.disks.get(disk_key)
        if disk is None:
            raise ConfigError(f"target maps disk {disk_key!r} which is not in 'disks'")
        tpgs = sorted(p.tpg for p in target.portals.values())
        # Implicit ALUA: the owner gateway's group is Active/Optimized, all others ANO.
        owner = target.tpg_for(disk.owner) if disk.owner else None
        groups = PortGroups.implicit(tpgs, owner=owner if owner is not None else tpgs[0])
        params: dict[str, Any] = {"size": disk.size, "block_size": disk.block_size}
        if disk.backstore == "file":
            params["path"] = str(disk.file_path(self.data_dir))
            params["create"] = True
        elif disk.backstore == "rbd":
            # The cluster of iscsi-gateway.cfg (default: $CEPH_CONF, else /etc/ceph/ceph.conf,
            # as client.admin). The disk's owner gateway holds the image's exclusive lock;
            # the others open it without (reads work; writes fail while the owner holds it).
            params.update(
                pool=disk.pool,
                image=disk.image,
                size=disk.size or None,
                create=bool(disk.size),
                osd_op_timeout=int(disk.control("osd_op_timeout")),
                conf=self.ceph.conf,
                client=self.ceph.client,
                cluster=self.ceph.cluster,
                options=self.ceph.options(),
                exclusive=not disk.owner or disk.owner == self.name,
            )
        backend = await open_backend(disk.backstore, **params)
        identity = LuIdentity.from_stable_id(disk.wwn or disk_key)
        try:
            shared = await self.lu_states.open(disk_key, disk.wwn or disk_key)
        except BaseException:
            await backend.close()
            raise
        caw_lock = FileRangeLock(params["path"]) if disk.backstore == "file" else None
        lu = LogicalUnit(
            backend,
            identity,
            port_groups=groups,
            pr_store=shared,
            cluster=shared,
            caw_lock=caw_lock,
        )
        self.copy_registry.add(lu)  # EXTENDED COPY finds target LUs by their NAA
        lu.abort_nexus_tasks = functools.partial(self._abort_nexus_tasks, lu)
        return lu

    def _abort_nexus_tasks(self, lu: LogicalUnit, nexus: ITNexus) -> None:
        """PREEMPT AND ABORT: drop the preempted nexus's tasks on ``lu``, without responses."""
        for proto in list(self.connections):
            if proto.nexus is None or proto.nexus.key != nexus.key or proto.conn is None:
                continue
            assert proto.session is not None
            itts: list[int] = []
            for lun_id, other in proto.session.lun_map.items():
                if other is lu:
                    itts.extend(proto.conn.abort_tasks(lun_id))
            if itts:
                asyncio.get_running_loop().create_task(proto.cancel_commands(itts))

    async def close(self) -> None:
        for proto in list(self.connections):
            await proto.drain_commands()
            proto.close()
        for key, lu in self.lus.items():
            try:
                await self._release_lu(lu)
                await lu.backend.flush()
                await lu.backend.close()
            except Exception:  # shutting down: report, keep closing the others
                log.exception("closing disk %s failed", key)
        await self.lu_states.close()

    # -- sessions -----------------------------------------------------------------------------
    def login_policy_for(self, proto: IscsiProtocol) -> _LoginPolicy:
        return _LoginPolicy(self, proto)

    def bind_session(
        self,
        proto: IscsiProtocol,
        *,
        initiator_name: str,
        isid: int,
        tsih: int,
        target_name: str | None,
        session_type: str,
    ) -> int:
        key = (initiator_name.lower(), isid, target_name.lower() if target_name else None)
        if tsih != 0:
            # Adding a connection to an existing session: MaxConnections=1 allows none.
            for existing_key, other in self.sessions.items():
                if other.session is not None and other.session.tsih == tsih and existing_key == key:
                    raise LoginError(0x02, 0x06, "session already has its one connection")
            raise LoginError(0x02, 0x0A, f"no session with TSIH {tsih}")
        old = self.sessions.get(key)
        if old is not None and old is not proto:
            # Session reinstatement (RFC 7143 §6.3.5): the old I_T nexus is gone.
            log.info("reinstating session of %s isid 0x%012x", initiator_name, isid)
            old.abort()
            self._nexus_lost(old)
            self.sessions.pop(key, None)
        tsih = self._next_tsih
        self._next_tsih = tsih % 0xFFFF + 1
        return tsih

    def session_started(
        self, proto: IscsiProtocol, outcome: LoginOutcome
    ) -> tuple[SessionView, ITNexus]:
        target_name = outcome.target.name if outcome.target is not None else None
        luns: dict[int, LogicalUnit] = {}
        tpgt = 0
        if target_name is not None:
            found = self._find_target(target_name)
            assert found is not None
            entry = found
            tpgt = entry.tpgt
            for lun_id, disk_key in entry.config.luns_for(outcome.initiator_name).items():
                lu = entry.luns.get(disk_key)
                if lu is not None:
                    luns[lun_id] = lu
        view = SessionView(
            initiator_name=outcome.initiator_name,
            isid=outcome.isid,
            tsih=outcome.tsih,
            target_name=target_name,
            session_type=outcome.session_type,
            lun_map=LunMap(luns),
        )
        key = (
            outcome.initiator_name.lower(),
            outcome.isid,
            target_name.lower() if target_name else None,
        )
        if target_name is not None:
            self.sessions[key] = proto
        nexus = ITNexus(outcome.initiator_name, outcome.isid, target_name or "", tpgt)
        return view, nexus

    def connection_gone(self, proto: IscsiProtocol) -> None:
        self.connections.discard(proto)
        s = proto.session
        if s is not None:
            key = (
                s.initiator_name.lower(),
                s.isid,
                s.target_name.lower() if s.target_name else None,
            )
            if self.sessions.get(key) is proto:
                del self.sessions[key]
                self._nexus_lost(proto)

    async def logging_out(self, proto: IscsiProtocol) -> None:
        """Logout: release the nexus's SCSI-2 reservations on every gateway before the Logout
        Response, so the initiator's next command through another gateway finds them gone."""
        if proto.session is None or proto.nexus is None:
            return
        for lu in {id(lu): lu for _, lu in proto.session.lun_map.items()}.values():
            await lu.release_reservation_of(proto.nexus)

    def _nexus_lost(self, proto: IscsiProtocol) -> None:
        if proto.session is None or proto.nexus is None:
            return
        for lu in {id(lu): lu for _, lu in proto.session.lun_map.items()}.values():
            lu.nexus_lost(proto.nexus)

    # -- task management ----------------------------------------------------------------------
    async def lun_reset(self, lu: LogicalUnit, origin: IscsiProtocol) -> None:
        """LOGICAL UNIT RESET: abort the LU's tasks on every session, then reset its state."""
        for proto in list(self.connections):
            if proto.session is None or proto.conn is None:
                continue
            for lun_id in [n for n, other in proto.session.lun_map.items() if other is lu]:
                await proto.cancel_commands(proto.conn.abort_tasks(lun_id))
        assert origin.nexus is not None
        lu.reset(origin.nexus)
        await lu.publish_reset()

    async def target_reset(self, target_name: str | None, origin: IscsiProtocol) -> None:
        entry = self.targets.get(target_name or "")
        if entry is None:
            return
        for proto in list(self.connections):
            if (
                proto.session is None
                or proto.conn is None
                or proto.session.target_name != target_name
            ):
                continue
            await proto.cancel_commands(proto.conn.abort_tasks(None))
        assert origin.nexus is not None
        for lu in {id(lu): lu for lu in entry.luns.values()}.values():
            lu.reset(origin.nexus)
            await lu.publish_reset()


class _LoginPolicy:
    """``iscsi.login.LoginPolicy`` for one connection."""

    def __init__(self, runtime: GatewayRuntime, proto: IscsiProtocol) -> None:
        self._runtime = runtime
        self._proto = proto
        self.settings = runtime.settings

    def find_target(self, name: str) -> TargetAdapter | None:
        entry = self._runtime._find_target(name)
        if entry is None:
            return None
        return TargetAdapter(entry.config, entry.tpgt)

    def discovery_chap(self, initiator_name: str) -> ChapSecrets | None:
        chap = self._runtime.config.discovery_auth
        if not chap.enabled:
            return None
        return ChapSecrets(chap.username, chap.password, chap.mutual_username, chap.mutual_password)

    def bind_session(
        self,
        *,
        initiator_name: str,
        isid: int,
        tsih: int,
        target_name: str | None,
        session_type: str,
    ) -> int:
        return self._runtime.bind_session(
            self._proto,
            initiator_name=initiator_name,
            isid=isid,
            tsih=tsih,
            target_name=target_name,
            session_type=session_type,
        )


class _SendTargets:
    def __init__(self, runtime: GatewayRuntime) -> None:
        self._runtime = runtime

    def send_targets(
        self, initiator_name: str, which: str, current_target: str | None
    ) -> list[tuple[str, list[str]]]:
        out: list[tuple[str, list[str]]] = []
        for iqn, entry in self._runtime.targets.items():
            if which == "All":
                pass
            elif which == "":
                if current_target is None or iqn.lower() != current_target.lower():
                    continue
            elif iqn.lower() != which.lower():
                continue
            if not entry.config.may_login(initiator_name):
                continue
            addrs = [_format_portal(a.ip, a.port, a.tpg) for a in entry.config.all_portals()]
            out.append((iqn, addrs))
        return out


def _disk_keys(target: TargetConfig) -> list[str]:
    keys = dict.fromkeys(target.disks)
    for client in target.clients.values():
        keys.update(dict.fromkeys(client.luns))
    for group in target.groups.values():
        keys.update(dict.fromkeys(group.disks))
    return list(keys)


def _format_portal(ip: str, port: int, tpg: int) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"{host}:{port},{tpg}"


async def start_runtime(config: GatewayConfig, data_dir: Path, name: str) -> GatewayRuntime:
    runtime = GatewayRuntime(config, data_dir=data_dir, name=name)
    await runtime.open()
    return runtime


__all__ = ["GatewayRuntime", "SessionView", "start_runtime"]
_ = asyncio
