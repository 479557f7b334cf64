"""``GET /metrics``: Prometheus text exposition of this gateway (format 0.0.4).

The series follow ceph-iscsi's rbd-target-gw exporter (port 9287 there) so existing Grafana
panels keep working, with well-formed ``# HELP``/``# TYPE`` lines (rbd-target-gw writes
``#HELP:``, which Prometheus ignores). ``lun_name`` is ceph-iscsi's backstore name
``pool.image``. Differences: LIO counts per client and LUN; iscsigw counts per LUN (all
clients), so the ``ceph_iscsi_lun_*`` counters carry no ``client_iqn`` label. Everything comes
from the running gateway: its configuration, its sessions and the per-LU counters
(``iscsigw.iostats``). ``iscsigw_*`` series are extensions.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..config.names import parse_endpoint
from ..errors import ConfigError
from ..gateway.management import GatewayManager
from ..iostats import io_counters

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Family:
    name: str
    kind: str  # gauge | counter
    help: str
    samples: list[tuple[dict[str, str], float | int]] = field(default_factory=list)

    def add(self, value: float | int, **labels: str) -> None:
        self.samples.append((labels, value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {fam.help}")
        lines.append(f"# TYPE {fam.name} {fam.kind}")
        for labels, value in fam.samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{fam.name}{{{text}}} {value}" if text else f"{fam.name} {value}")
    return "\n".join(lines) + "\n"


def _lun_name(key: str) -> str:
    return key.replace("/", ".", 1)


def _owner_ip(target: dict[str, Any], owner: str) -> str:
    """ceph-iscsi's ``gw_owner``: the first portal IP of the disk's owner gateway."""
    portal = (target.get("portals") or {}).get(owner) or {}
    for text in portal.get("portal_ip_addresses") or []:
        try:
            return parse_endpoint(str(text), 3260)[0]
        except ConfigError:
            continue
    return ""


def collect(manager: GatewayManager, doc: dict[str, Any]) -> list[Family]:
    start = time.perf_counter()
    gw = manager.name
    runtime = manager.runtime
    lus = dict(runtime.lus) if runtime is not None else {}
    sessions = manager.sessions()
    targets: dict[str, Any] = doc.get("targets") or {}
    disks: dict[str, Any] = doc.get("disks") or {}
    served = {iqn: t for iqn, t in targets.items() if gw in (t.get("portals") or {})}

    tpgs = Family("ceph_iscsi_gateway_tpg_total", "gauge",
                  "target portal groups defined within gateway group")  # fmt: skip
    for iqn, t in served.items():
        tpgs.add(len(t.get("portals") or {}), gw_iqn=iqn)

    mapped = Family("ceph_iscsi_lun_mapped", "gauge", "LUN mapping state 0=unmapped, 1=mapped")
    size = Family("ceph_iscsi_lun_size_bytes", "gauge", "LUN size (bytes)")
    for key, disk in sorted(disks.items()):
        where = next((t for t in served.values() if key in (t.get("disks") or {})), None)
        owner = _owner_ip(where, str(disk.get("owner") or "")) if where else ""
        mapped.add(1 if key in lus else 0, lun_name=_lun_name(key), gw_name=gw, gw_owner=owner)
        lu = lus.get(key)
        size.add(int(lu.backend.size) if lu is not None else int(disk.get("size") or 0),
                 lun_name=_lun_name(key), gw_name=gw)  # fmt: skip

    iops = Family("ceph_iscsi_lun_iops", "counter", "SCSI commands per LUN (all clients)")
    rbytes = Family("ceph_iscsi_lun_read_bytes", "counter", "read bytes per LUN (all clients)")
    wbytes = Family("ceph_iscsi_lun_write_bytes", "counter", "write bytes per LUN (all clients)")
    ext = {
        name: Family(f"iscsigw_lun_{name}_total", "counter", text)
        for name, text in (
            ("read_ops", "READ commands completed per LUN"),
            ("write_ops", "WRITE commands completed per LUN"),
            ("read_bytes", "bytes read by READ commands per LUN"),
            ("write_bytes", "bytes written by WRITE commands per LUN"),
            ("commands", "SCSI commands completed per LUN"),
            ("errors", "SCSI commands per LUN that ended with a status other than GOOD"),
        )
    }  # fmt: skip
    for key, lu in sorted(lus.items()):
        io = io_counters(lu)
        labels = {"gw_name": gw, "lun_name": _lun_name(key)}
        iops.add(io.commands, **labels)
        rbytes.add(io.read_bytes, **labels)
        wbytes.add(io.write_bytes, **labels)
        for name, fam in ext.items():
            fam.add(getattr(io, name), **labels, disk=key)

    logins = Family("ceph_iscsi_client_login", "gauge",
                    "iscsi client session active (0=No, 1=Yes)")  # fmt: skip
    client_lun = Family("ceph_iscsi_client_lun", "gauge", "LUN ID by client")
    logged_in = {(s.target, s.initiator) for s in sessions}
    for iqn, t in served.items():
        groups = t.get("groups") or {}
        for client, entry in sorted((t.get("clients") or {}).items()):
            logins.add(1 if (iqn.lower(), client.lower()) in logged_in else 0,
                       gw_name=gw, client_iqn=client, target_iqn=iqn)  # fmt: skip
            luns = dict(entry.get("luns") or {})
            group = groups.get(entry.get("group_name") or "") or {}
            luns.update(group.get("disks") or {})
            for key, lun in sorted(luns.items()):
                client_lun.add(int((lun or {}).get("lun_id", 0)), gw_name=gw,
                               client_iqn=client, lun_name=_lun_name(key))  # fmt: skip

    per_target = Family("iscsigw_gateway_sessions", "gauge",
                        "logged-in iSCSI sessions on this gateway per target")  # fmt: skip
    counts: dict[str, int] = {iqn: 0 for iqn in served}
    for s in sessions:
        name = next((iqn for iqn in counts if iqn.lower() == s.target), s.target)
        counts[name] = counts.get(name, 0) + 1
    for iqn, n in sorted(counts.items()):
        per_target.add(n, gw_name=gw, target_iqn=iqn)
    conns = Family("iscsigw_gateway_connections", "gauge",
                   "TCP connections to this gateway's portals (logged in or not)")  # fmt: skip
    conns.add(len(runtime.connections) if runtime is not None else 0, gw_name=gw)
    up = Family("iscsigw_gateway_up", "gauge",
                "1 when every iSCSI portal of this gateway accepts connections")  # fmt: skip
    up.add(0 if manager.iscsi_problems() else 1, gw_name=gw)
    epoch = Family("iscsigw_config_epoch", "gauge",
                   "configuration epoch this gateway has applied")  # fmt: skip
    epoch.add(manager.watcher.applied_epoch if manager.watcher else 0, gw_name=gw)

    scrape = Family("ceph_iscsi_scrape_duration_seconds", "gauge",
                    "time taken to scrape iscsi stats (secs)")  # fmt: skip
    scrape.add(round(time.perf_counter() - start, 6), gw_name=gw)
    return [scrape, tpgs, mapped, size, iops, rbytes, wbytes, *ext.values(), logins, client_lun,
            per_target, conns, up, epoch]  # fmt: skip


async def metrics_text(manager: GatewayManager) -> str:
    return render(collect(manager, await manager.config_dict()))


__all__ = ["CONTENT_TYPE", "Family", "collect", "metrics_text", "render"]
