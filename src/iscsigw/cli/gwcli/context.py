"""What the shell knows about the gateways: the config from the API plus cached live state.

The tree is rebuilt from ``GET /api/config`` after every change, so the shell never shows
state that the API did not report. Live state that costs one request per object (disk status,
client login state, gateway pings) is fetched only when a summary needs it and cached: disk and
client state until the next reload, gateway pings for ``PING_TTL`` seconds (gwcli 3.5 re-pings
every 10 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlsplit

from .client import APIClient, APIError, GatewayCfg

Json = dict[str, Any]
PING_TTL = 10.0
GATEWAY_ADDRESS_KEYS = ("api_endpoint", "api_url", "api_address")


def _q(part: str) -> str:
    return quote(part, safe=":@_-.~")


class Context:
    """The API client, the last config it returned and per-object caches."""

    def __init__(
        self,
        api: APIClient,
        cfg: GatewayCfg | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.cfg = cfg
        self.config: Json = {}
        self.loaded_at = float("-inf")
        self._clock = clock
        self._settings: Json | None = None
        self._hostname: str | None = None
        self._disk_detail: dict[str, Json] = {}
        self._client_info: dict[tuple[str, str], Json] = {}
        self._ping: dict[str, tuple[float, str]] = {}

    # -- the config --------------------------------------------------------------------------

    def load(self) -> Json:
        """``GET /api/config``; forget cached disk and client state."""
        config = self.api.get("/api/config")
        self.config = config
        self.loaded_at = self._clock()
        self._disk_detail.clear()
        self._client_info.clear()
        return config

    def age(self) -> float:
        """Seconds since the config was read."""
        return self._clock() - self.loaded_at

    @property
    def disks(self) -> dict[str, Json]:
        return dict(self.config.get("disks") or {})

    @property
    def targets(self) -> dict[str, Json]:
        return dict(self.config.get("targets") or {})

    def target(self, iqn: str) -> Json:
        return dict((self.config.get("targets") or {}).get(iqn) or {})

    def target_of_disk(self, key: str) -> str:
        for iqn, target in self.targets.items():
            if key in (target.get("disks") or {}):
                return iqn
        return ""

    # -- lazily fetched facts ------------------------------------------------------------------

    def settings(self) -> Json:
        """``GET /api/settings`` (once); empty when the API does not answer it."""
        if self._settings is None:
            try:
                self._settings = self.api.get("/api/settings")
            except APIError:
                self._settings = {}
        return self._settings

    def hostname(self) -> str:
        """The name of the gateway whose API we talk to (``GET /api/sysinfo/hostname``)."""
        if self._hostname is None:
            try:
                data = self.api.get("/api/sysinfo/hostname").get("data")
                self._hostname = str(data) if data else ""
            except APIError:
                self._hostname = ""
        return self._hostname

    def disk_detail(self, key: str) -> Json:
        """``GET /api/disk/<pool>/<image>`` (disk dict + ``status``); ``{}`` when it fails."""
        if key not in self._disk_detail:
            pool, _, image = key.partition("/")
            try:
                self._disk_detail[key] = self.api.get(f"/api/disk/{_q(pool)}/{_q(image)}")
            except APIError:
                self._disk_detail[key] = {}
        return self._disk_detail[key]

    def disk_size(self, key: str) -> int:
        from .fmt import to_bytes

        size = to_bytes((self.disks.get(key) or {}).get("size"))
        if not size:
            size = to_bytes(self.disk_detail(key).get("size"))
        return size

    def disk_state(self, key: str) -> str:
        detail = self.disk_detail(key)
        if not detail:
            return "NOT FOUND" if key in self.disks else "Unknown"
        status = detail.get("status")
        if isinstance(status, dict) and status.get("state"):
            return str(status["state"])
        return "Unknown"

    def client_info(self, iqn: str, client: str) -> Json:
        """``GET /api/clientinfo/<iqn>/<client>``; ``{}`` when it fails."""
        key = (iqn, client)
        if key not in self._client_info:
            try:
                self._client_info[key] = self.api.get(f"/api/clientinfo/{_q(iqn)}/{_q(client)}")
            except APIError:
                self._client_info[key] = {}
        return self._client_info[key]

    def logged_in(self, iqn: str, client: str) -> bool:
        state = self.client_info(iqn, client).get("state")
        return isinstance(state, dict) and bool(state.get("LOGGED_IN"))

    # -- gateway state -------------------------------------------------------------------------

    def gateway_apis(self, name: str) -> list[APIClient]:
        """Where gateway ``name``'s API may answer, best guess first.

        1. an address the config records for it (iscsigw: ``gateways[name].api_endpoint``);
        2. the API we talk to, when it is that gateway;
        3. each of its portal IPs on our API port (ceph-iscsi: one ``api_port`` everywhere).
        """
        out: list[APIClient] = []
        seen: set[str] = set()

        def add(client: APIClient) -> None:
            if client.endpoint.base_url not in seen:
                seen.add(client.endpoint.base_url)
                out.append(client)

        info = (self.config.get("gateways") or {}).get(name)
        if isinstance(info, dict):
            for key in GATEWAY_ADDRESS_KEYS:
                value = info.get(key)
                if isinstance(value, str) and value:
                    parts = urlsplit(value if "://" in value else "http://" + value)
                    if parts.hostname:
                        try:
                            port = parts.port
                        except ValueError:
                            port = None
                        add(self.api.for_host(parts.hostname, port))
        if name and name == self.hostname():
            add(self.api)
        for target in self.targets.values():
            portal = (target.get("portals") or {}).get(name) or {}
            for ip in portal.get("portal_ip_addresses") or []:
                host = str(ip)
                if host.startswith("["):
                    host = host[1:].partition("]")[0]
                elif host.count(":") == 1:
                    host = host.partition(":")[0]
                add(self.api.for_host(host))
        return out

    def _ping_one(self, name: str) -> str:
        state = "UNKNOWN"
        for client in self.gateway_apis(name):
            state = client.ping()
            if state != "UNKNOWN":
                break
        return state

    def gateway_states(self, names: Iterable[str]) -> dict[str, str]:
        """UP / UNAUTHORIZED / FORBIDDEN / PARTIAL / UNKNOWN per gateway (pinged in parallel)."""
        names = list(dict.fromkeys(names))
        now = self._clock()
        stale = [n for n in names if n not in self._ping or now - self._ping[n][0] > PING_TTL]
        if stale:
            with ThreadPoolExecutor(max_workers=min(8, len(stale))) as pool:
                for name, state in zip(stale, pool.map(self._ping_one, stale), strict=True):
                    self._ping[name] = (self._clock(), state)
        return {n: self._ping[n][1] for n in names}

    def forget_pings(self) -> None:
        self._ping.clear()
