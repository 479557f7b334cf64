"""Operations: _ping vs the iSCSI listeners, client alias, /metrics, /api/overview, dashboard."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace

from apikit import GW, PASSWORD, USER, Api, ApiFactory, C, T

from iscsigw.gateway.rawsock import Listener, listen
from iscsigw.iostats import io_counters


class _FakeProto:
    """A logged-in connection as the driver leaves it in GatewayRuntime.sessions/connections."""

    def __init__(self, alias: str) -> None:
        self.peer = "10.1.2.3:51000"
        self.portal = "127.0.0.1:3260"
        outcome = SimpleNamespace(initiator_alias=alias, auth_method="CHAP")
        self.conn = SimpleNamespace(outcome=outcome)
        # target_name None: GatewayRuntime.apply_config leaves this fake alone.
        self.session = SimpleNamespace(lun_map=[0], target_name=None)

    async def drain_commands(self) -> None:
        return None

    def close(self) -> None:
        return None


def _fake_session(api: Api, initiator: str = C, alias: str = "db-host-1") -> None:
    runtime = api.manager.runtime
    assert runtime is not None
    proto = _FakeProto(alias)
    runtime.sessions[(initiator.lower(), 0x23D000000, T.lower())] = proto  # type: ignore[assignment]
    runtime.connections.add(proto)  # type: ignore[arg-type]


async def test_ping_is_503_when_the_iscsi_listener_stops(api: Api) -> None:
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    listener = Listener(asyncio.get_running_loop(), sock, lambda: None)  # type: ignore[arg-type,return-value]
    api.manager.portals = [("127.0.0.1", port)]
    api.manager.listeners = [listener]
    try:
        assert (await api.get("/api/_ping")) == {"message": "pong"}
        listener.close()
        body = await api.get("/api/_ping", 503)
        assert body["message"] == (
            f"iSCSI is down on {GW}: portal 127.0.0.1:{port} is not accepting connections"
        )
        api.manager.listeners = []
        assert "no iSCSI listener" in (await api.get("/api/_ping", 503))["message"]
    finally:
        listener.close()
    # The ping still needs the API's credentials.
    assert (await api.client.get("/api/_ping", auth=None)).status_code == 401


async def test_clientinfo_alias_comes_from_the_login(api: Api) -> None:
    await api.seed()
    _fake_session(api)
    info = await api.get(f"/api/clientinfo/{T}/{C}")
    assert info == {"alias": "db-host-1", "state": {"LOGGED_IN": [GW]}, "ip_address": ["10.1.2.3"]}
    internal = await api.get(f"/api/_clientinfo/{T}/{C}")
    assert internal == {"alias": "db-host-1", "state": "LOGGED_IN", "ip_address": ["10.1.2.3"]}


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            return float(m.group(2))
    raise AssertionError(f"no {name} {labels} in\n{text}")


async def test_metrics_prometheus_text(api: Api) -> None:
    await api.seed()
    await api.put(f"/api/clientlun/{T}/{C}", disk="rbd/disk_1")
    runtime = api.manager.runtime
    assert runtime is not None
    io = io_counters(runtime.lus["rbd/disk_1"])
    io.count(0x28, 4096, 0)  # READ(10), 8 blocks
    io.count(0x2A, 0, 8192)  # WRITE(10)
    io.count(0x8A, 0, 512)  # WRITE(16)
    io.count(0x12, 36, 0)  # INQUIRY: a command, not I/O
    io.count(0x28, 0, 0, status=2)  # a READ that failed: an error, not a read
    _fake_session(api)
    resp = await api.client.get("/metrics", auth=None)  # no credentials needed
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = resp.text
    lun = {"lun_name": "rbd.disk_1", "gw_name": GW}
    assert _sample(text, "ceph_iscsi_lun_iops", **lun) == 5
    assert _sample(text, "ceph_iscsi_lun_read_bytes", **lun) == 4096
    assert _sample(text, "ceph_iscsi_lun_write_bytes", **lun) == 8704
    assert _sample(text, "iscsigw_lun_read_ops_total", disk="rbd/disk_1") == 1
    assert _sample(text, "iscsigw_lun_write_ops_total", disk="rbd/disk_1") == 2
    assert _sample(text, "iscsigw_lun_errors_total", disk="rbd/disk_1") == 1
    assert _sample(text, "ceph_iscsi_lun_size_bytes", **lun) == 1 << 30
    assert _sample(text, "ceph_iscsi_lun_mapped", **lun, gw_owner="127.0.0.1") == 1
    assert _sample(text, "ceph_iscsi_gateway_tpg_total", gw_iqn=T) == 1
    assert _sample(text, "ceph_iscsi_client_login", client_iqn=C, gw_name=GW) == 1
    assert _sample(text, "ceph_iscsi_client_lun", client_iqn=C, lun_name="rbd.disk_1") == 0
    assert _sample(text, "iscsigw_gateway_sessions", target_iqn=T) == 1
    assert _sample(text, "iscsigw_gateway_connections", gw_name=GW) == 1
    assert _sample(text, "iscsigw_gateway_up", gw_name=GW) == 1
    assert _sample(text, "iscsigw_config_epoch", gw_name=GW) >= 1
    # Well-formed exposition: every family has HELP and TYPE before its samples.
    families = re.findall(r"^# TYPE (\S+) (gauge|counter)$", text, re.M)
    assert len(families) == len({name for name, _ in families}) >= 15
    for line in text.splitlines():
        assert line.startswith("# ") or re.fullmatch(r"[a-z_]+(\{.*\})? \S+", line), line


async def test_metrics_of_an_empty_gateway(api: Api) -> None:
    text = (await api.client.get("/metrics")).text
    assert "# TYPE ceph_iscsi_lun_iops counter" in text
    assert _sample(text, "iscsigw_gateway_connections", gw_name=GW) == 0


async def test_overview_reports_every_gateway(api: Api) -> None:
    await api.seed()
    _fake_session(api)
    io_counters(api.manager.runtime.lus["rbd/disk_1"]).count(0x28, 512, 0)  # type: ignore[union-attr]
    await api.manager.commit(
        lambda doc: doc["gateways"].update(
            {"gw2": {"api_endpoint": "http://127.0.0.1:9"}, "gw3": {"active_luns": 0}}
        )
    )
    body = await api.get("/api/overview")
    gws = body["gateways"]
    assert list(gws) == [GW, "gw2", "gw3"]
    me = gws[GW]
    assert me["state"] == "up" and me["problems"] == []
    assert me["sessions"] == [{"initiator": C, "target": T, "ip_address": "10.1.2.3",
                               "alias": "db-host-1", "portal": "127.0.0.1:3260", "auth": "CHAP",
                               "luns": 1}]  # fmt: skip
    assert me["luns"]["rbd/disk_1"]["read_ops"] == 1
    assert me["luns"]["rbd/disk_1"]["size"] == 1 << 30
    assert gws["gw2"]["state"] == "down" and "not reachable" in gws["gw2"]["problems"][0]
    assert gws["gw3"]["state"] == "unknown"
    assert (await api.get("/api/_overview"))["gateway"] == GW
    assert (await api.client.get("/api/overview", auth=None)).status_code == 401


async def test_dashboard_page_and_auth(api_factory: ApiFactory) -> None:
    api = await api_factory()
    resp = await api.client.get("/dashboard")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert f'<body data-gateway="{GW}">' in resp.text
    assert '<table id="sessions">' in resp.text
    root = await api.client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/dashboard"
    anon = await api.client.get("/dashboard", auth=None)
    assert anon.status_code == 401 and "Basic" in anon.headers["www-authenticate"]
    wrong = await api.client.get("/dashboard", auth=(USER, PASSWORD + "x"))
    assert wrong.status_code == 401
    outsider = await api_factory(ip="192.0.2.77")
    assert (await outsider.client.get("/dashboard")).status_code == 403


def test_io_counters_per_lu() -> None:
    import gc

    from iscsigw import iostats

    class Lu:
        pass

    a, b, own = Lu(), Lu(), Lu()
    own.io = iostats.IoCounters()  # type: ignore[attr-defined]
    assert io_counters(a) is io_counters(a) and io_counters(a) is not io_counters(b)
    assert io_counters(own) is own.io  # type: ignore[attr-defined]
    io_counters(a).count(0x88, 1 << 20, 0)  # READ(16)
    io_counters(a).count(0x93, 0, 512)  # WRITE SAME(16)
    assert io_counters(a).as_dict() == {"commands": 2, "errors": 0, "read_bytes": 1 << 20,
                                        "read_ops": 1, "write_bytes": 512, "write_ops": 1}  # fmt: skip
    key = id(a)
    assert key in iostats._COUNTERS
    del a
    gc.collect()
    assert key not in iostats._COUNTERS  # gone with its LU
