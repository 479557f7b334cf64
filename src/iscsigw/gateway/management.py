"""The management plane of one gateway: commit a change, apply it here, report everywhere.

``GatewayManager.change(mutator)`` is the single write path of the REST API: the mutator (one of
``config.edits``) is committed to the shared store epoch-checked (a lost race reruns it on the
newer document), this gateway applies the new epoch at once, and the other gateways are asked
for a short while whether they applied it too. The reply says, per gateway, ``applied`` (with
what changed), ``pending`` (down or slow: it applies the change when it is back) or ``failed``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from ..config.model import GatewayConfig
from ..config.settings import GatewaySettings
from ..config.store import ConfigStore, Mutator, commit_retrying
from .images import ImageAdmin, image_admin
from .peers import PEER_WAIT, outcome_changes, peer_get_all, peer_states
from .runtime import GatewayRuntime
from .watch import ConfigWatcher

log = logging.getLogger("iscsigw.management")


@dataclass
class ChangeResult:
    epoch: int
    gateways: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class SessionInfo:
    initiator: str
    target: str
    peer_ip: str
    alias: str = ""  # the initiator's InitiatorAlias login key
    portal: str = ""  # this gateway's portal the connection came in on
    auth: str = ""  # CHAP | None
    luns: int = 0


class GatewayManager:
    def __init__(
        self,
        *,
        name: str,
        settings: GatewaySettings,
        store: ConfigStore,
        data_dir: Path,
        runtime: GatewayRuntime | None = None,
        watcher: ConfigWatcher | None = None,
        default_backstore: str = "file",
        peer_wait: float = PEER_WAIT,
    ) -> None:
        self.name = name
        self.settings = settings
        self.store = store
        self.data_dir = Path(data_dir)
        self.runtime = runtime
        self.watcher = watcher
        self.default_backstore = default_backstore
        self.peer_wait = peer_wait
        self.api_endpoint = ""
        self.portals: list[tuple[str, int]] = []  # where this gateway listens for iSCSI
        self.listeners: list[Any] = []  # their rawsock.Listener objects (set by run_gateway)

    # -- reading ------------------------------------------------------------------------------
    async def config_dict(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.store.load_dict)

    async def config(self) -> GatewayConfig:
        config, _ = await asyncio.to_thread(self.store.load)
        return config

    def images(self, backstore: str) -> ImageAdmin:
        return image_admin(backstore, self.data_dir)

    @property
    def auth(self) -> tuple[str, str]:
        return (self.settings.api_user, self.settings.api_password)

    def peers(self, doc: dict[str, Any]) -> dict[str, str | None]:
        """Every other gateway the document knows: ``{name: api_endpoint or None}``."""
        out: dict[str, str | None] = {}
        for name, entry in (doc.get("gateways") or {}).items():
            if name != self.name:
                endpoint = entry.get("api_endpoint") if isinstance(entry, dict) else None
                out[name] = endpoint or None
        for target in (doc.get("targets") or {}).values():
            for name in target.get("portals") or {}:
                if name != self.name:
                    out.setdefault(name, None)
        return out

    def known_addresses(self, doc: dict[str, Any]) -> set[str]:
        """Addresses of every gateway (portals and registered APIs) for the IP allow-list."""
        out: set[str] = set()
        for target in (doc.get("targets") or {}).values():
            for ip in target.get("ip_list") or []:
                out.add(_host_of(ip))
            for portal in (target.get("portals") or {}).values():
                for ip in portal.get("portal_ip_addresses") or []:
                    out.add(_host_of(ip))
        for entry in (doc.get("gateways") or {}).values():
            if not isinstance(entry, dict):
                continue
            endpoint = entry.get("api_endpoint")
            if endpoint:
                host = urlsplit(endpoint).hostname
                if host:
                    out.add(host)
            for ep in entry.get("portal_endpoints") or []:
                out.add(_host_of(ep))
        out.discard("")
        return out

    def local_addresses(self) -> list[str]:
        """This gateway's IP addresses (``/api/sysinfo/ip_addresses``)."""
        out = [ip for ip, _ in self.portals]
        host = urlsplit(self.api_endpoint).hostname if self.api_endpoint else None
        if host:
            out.append(host)
        try:
            infos = socket.getaddrinfo(socket.gethostname(), None)
        except OSError:
            infos = []
        for info in infos:
            ip = str(info[4][0])
            if not ipaddress.ip_address(ip.split("%")[0]).is_loopback:
                out.append(ip)
        return list(dict.fromkeys(ip for ip in out if ip not in ("0.0.0.0", "::")))

    # -- writing ------------------------------------------------------------------------------
    async def commit(self, mutator: Mutator) -> int:
        return await asyncio.to_thread(commit_retrying, self.store, mutator)

    async def change(self, mutator: Mutator, *, wait_peers: bool = True) -> ChangeResult:
        """Commit, apply here, and report what every gateway did with the new epoch."""
        epoch = await self.commit(mutator)
        result = ChangeResult(epoch)
        result.gateways[self.name] = await self.apply_here(epoch)
        if wait_peers:
            doc = await self.config_dict()
            result.gateways.update(
                await peer_states(self.peers(doc), epoch, auth=self.auth, wait=self.peer_wait)
            )
        return result

    async def apply_here(self, epoch: int) -> dict[str, Any]:
        if self.watcher is None:
            return {"state": "applied", "epoch": epoch}
        outcome = await self.watcher.sync()
        if outcome is None:
            outcome = self.watcher.outcome_for(epoch)
        if outcome is not None and not outcome.ok:
            return {"state": "failed", "epoch": self.watcher.applied_epoch, "error": outcome.error}
        out: dict[str, Any] = {"state": "applied", "epoch": self.watcher.applied_epoch}
        if outcome is not None and outcome.epoch >= epoch:
            changes = outcome_changes(outcome.to_dict())
            if changes:
                out["changes"] = changes
        return out

    def status(self, epoch: int | None = None) -> dict[str, Any]:
        """This gateway's view for ``GET /api/_status``."""
        out: dict[str, Any] = {"gateway": self.name, "api_endpoint": self.api_endpoint}
        if self.watcher is None:
            out["applied_epoch"] = 0
            return out
        out["applied_epoch"] = self.watcher.applied_epoch
        if epoch is not None:
            outcome = self.watcher.outcome_for(epoch)
            if outcome is not None:
                out["outcome"] = outcome.to_dict()
        return out

    def iscsi_problems(self) -> list[str]:
        """Why this gateway's iSCSI portals do not accept logins (empty: they do)."""
        if not self.portals:
            return []  # no datapath here (API-only, tests)
        if not self.listeners:
            return ["no iSCSI listener is running"]
        return [
            f"portal {label} is not accepting connections"
            for label, listener in zip(
                [f"{ip}:{port}" for ip, port in self.portals], self.listeners, strict=False
            )
            if not _accepting(listener)
        ]

    # -- sessions -----------------------------------------------------------------------------
    def sessions(self) -> list[SessionInfo]:
        if self.runtime is None:
            return []
        out: list[SessionInfo] = []
        for (initiator, _isid, target), proto in list(self.runtime.sessions.items()):
            if target is None:
                continue
            peer = proto.peer.rsplit(":", 1)[0].strip("[]")
            outcome = proto.conn.outcome if proto.conn is not None else None
            out.append(
                SessionInfo(
                    initiator,
                    target,
                    peer,
                    alias=outcome.initiator_alias if outcome is not None else "",
                    portal=proto.portal,
                    auth=outcome.auth_method if outcome is not None else "",
                    luns=len(proto.session.lun_map) if proto.session is not None else 0,
                )
            )
        return out

    def num_sessions(self, target: str | None = None) -> int:
        return sum(1 for s in self.sessions() if target is None or s.target == target.lower())

    def client_addresses(self, target: str, client: str) -> list[str]:
        t, c = target.lower(), client.lower()
        return sorted({s.peer_ip for s in self.sessions() if s.target == t and s.initiator == c})

    def client_alias(self, target: str, client: str) -> str:
        """The InitiatorAlias a logged-in client sent (its newest session's), else ""."""
        t, c = target.lower(), client.lower()
        aliases = [s.alias for s in self.sessions() if s.target == t and s.initiator == c]
        return next((a for a in reversed(aliases) if a), "")

    async def client_logins(self, target: str, client: str) -> dict[str, list[str]]:
        """``{gateway: [initiator IPs]}`` over this gateway and every reachable peer."""
        logins, _ = await self.client_state(target, client)
        return logins

    async def client_state(self, target: str, client: str) -> tuple[dict[str, list[str]], str]:
        """``({gateway: [initiator IPs]}, alias)`` over this gateway and every reachable peer."""
        out: dict[str, list[str]] = {}
        alias = ""
        local = self.client_addresses(target, client)
        if local:
            out[self.name] = local
            alias = self.client_alias(target, client)
        doc = await self.config_dict()
        path = f"/api/_clientinfo/{quote(target, safe=':')}/{quote(client, safe=':')}"
        for name, body in (await peer_get_all(self.peers(doc), path, auth=self.auth)).items():
            if not isinstance(body, dict):
                continue
            ips = body.get("ip_address")
            if ips:
                out[name] = list(ips)
                if not alias and isinstance(body.get("alias"), str):
                    alias = body["alias"]
        return out, alias

    async def target_sessions(self, target: str) -> int:
        doc = await self.config_dict()
        total = self.num_sessions(target)
        path = f"/api/_targetinfo/{quote(target, safe=':')}"
        for body in (await peer_get_all(self.peers(doc), path, auth=self.auth)).values():
            if isinstance(body, dict):
                total += int(body.get("num_sessions", 0))
        return total


def _accepting(listener: Any) -> bool:
    """Is this portal listener's socket open and listening?"""
    probe = getattr(listener, "accepting", None)  # a Listener that can tell (preferred)
    if isinstance(probe, bool):
        return probe
    sock = getattr(listener, "_sock", None)
    if not isinstance(sock, socket.socket):
        return False
    try:
        return sock.fileno() >= 0 and bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:
        return False


def _host_of(endpoint: str) -> str:
    s = endpoint.strip()
    if s.startswith("["):
        return s[1:].split("]", 1)[0]
    if s.count(":") == 1:
        s = s.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(s))
    except ValueError:
        return s


__all__ = ["ChangeResult", "GatewayManager", "SessionInfo"]
