"""Two gateways (127.0.0.2 / 127.0.0.3) sharing one --data-dir, managed through the REST API.

A change made through A's API is committed to the shared store, applied by A before the reply
and by B through its store watcher; the reply reports both. A change made while B is down is
reported as pending and applied when B starts. Concurrent writers race on the store without
corrupting it. A live session keeps working while an unrelated LUN is added, and a resize
raises CAPACITY DATA HAS CHANGED (06/2A/09).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.harness import Gateway, free_port, run_tool

T = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
C = "iqn.1994-05.com.redhat:75c3d5efde0"
C2 = "iqn.1994-05.com.redhat:other-host"
SECRET = "secret_12a-bbcc"  # no '@': libiscsi URLs cannot carry one
API_LINE = re.compile(r"^API URL: (https?)://([^:]+):([^@]+)@(\S+)$")


class ApiGateway:
    """A demo gateway process (harness.Gateway) with its REST API on --api."""

    def __init__(self, base: Path, name: str, host: str) -> None:
        self.api_port = free_port(host)
        self.gw = Gateway(
            base / "data", base / "logs", host=host, name=name,
            extra_args=["--api", f"{host}:{self.api_port}"],
        )  # fmt: skip
        self.name, self.host = name, host

    def start(self) -> ApiGateway:
        self.gw.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.api_line():
                return self
            time.sleep(0.05)
        raise AssertionError("no 'API URL:' line\n" + self.gw.log_tail())

    def api_line(self) -> re.Match[str] | None:
        for line in reversed(self.gw.stdout_lines):
            m = API_LINE.match(line)
            if m:
                return m
        return None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    def client(self) -> httpx.Client:
        m = self.api_line()
        assert m is not None
        return httpx.Client(base_url=self.url, auth=(m.group(2), m.group(3)), timeout=30,
                            trust_env=False)  # fmt: skip

    def call(self, method: str, path: str, status: int = 200, **form: str) -> dict[str, Any]:
        with self.client() as c:
            resp = c.request(method, path, data=form or None)
        assert resp.status_code == status, f"{method} {path}: {resp.status_code} {resp.text}"
        body: dict[str, Any] = resp.json()
        return body

    def inq(self, lun: int, *, check: bool = True) -> Any:
        url = f"iscsi://{C}%{SECRET}@{self.gw.portal}/{T}/{lun}"
        return run_tool(["iscsi-inq", "-i", C, url], check=check, timeout=30)


@pytest.fixture
def pair(tmp_path: Path) -> Any:
    a = ApiGateway(tmp_path, "gwa.example.test", "127.0.0.2")
    b = ApiGateway(tmp_path, "gwb.example.test", "127.0.0.3")
    started = [a, b]
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        for g in started:
            if g.gw.alive():
                g.gw.stop()
            g.gw.cleanup()


def _seed(a: ApiGateway) -> dict[str, Any]:
    """The seed walkthrough, through A's API only."""
    a.call("PUT", f"/api/target/{T}")
    a.call("PUT", f"/api/gateway/{T}/gwa.example.test", ip_address="127.0.0.2", skipchecks="true")
    a.call("PUT", f"/api/gateway/{T}/gwb.example.test", ip_address="127.0.0.3", skipchecks="true")
    a.call("PUT", "/api/disk/rbd/disk_1", mode="create", size="100G", pool="rbd", count="1")
    a.call("PUT", f"/api/client/{T}/{C}")
    a.call("PUT", f"/api/clientauth/{T}/{C}", username=C, password=SECRET)
    a.call("PUT", f"/api/targetlun/{T}", disk="rbd/disk_1")
    return a.call("PUT", f"/api/clientlun/{T}/{C}", disk="rbd/disk_1")


def test_change_through_a_is_live_on_b_and_reported(pair: Any) -> None:
    a, b = pair
    reply = _seed(a)
    assert set(reply["gateways"]) >= {"gwa.example.test", "gwb.example.test"}
    assert reply["gateways"]["gwb.example.test"]["state"] == "applied", reply
    assert reply["gateways"]["gwb.example.test"]["epoch"] >= reply["epoch"]
    portals = a.call("GET", f"/api/gateways/{T}")
    assert portals["gwb.example.test"]["portal_port"] == b.gw.port  # from B's registration
    assert "Peripheral Device Type:DIRECT_ACCESS" in b.inq(0).stdout
    assert "Peripheral Device Type:DIRECT_ACCESS" in a.inq(0).stdout
    # B's API sees A's change at once.
    assert b.call("GET", "/api/config")["targets"][T]["clients"][C]["luns"] == {
        "rbd/disk_1": {"lun_id": 0}}  # fmt: skip
    # A new LUN through A: B serves it without a restart and says so.
    a.call("PUT", "/api/disk/rbd/disk_2", mode="create", size="1G")
    mapped = a.call("PUT", f"/api/targetlun/{T}", disk="rbd/disk_2")
    assert "rbd/disk_2" in mapped["gateways"]["gwb.example.test"]["changes"]["opened"], mapped
    a.call("PUT", f"/api/clientlun/{T}/{C}", disk="rbd/disk_2")
    assert "DIRECT_ACCESS" in b.inq(1).stdout
    a.gw.assert_no_tracebacks()
    b.gw.assert_no_tracebacks()


def test_change_while_b_is_down_is_applied_when_it_starts(pair: Any) -> None:
    a, b = pair
    _seed(a)
    b.gw.stop()
    a.call("PUT", "/api/disk/rbd/late", mode="create", size="1G")
    reply = a.call("PUT", f"/api/targetlun/{T}", disk="rbd/late")
    assert reply["gateways"]["gwa.example.test"]["state"] == "applied"
    assert reply["gateways"]["gwb.example.test"]["state"] == "pending", reply
    reply = a.call("PUT", f"/api/clientlun/{T}/{C}", disk="rbd/late")
    assert reply["gateways"]["gwb.example.test"]["state"] == "pending"
    b.start()
    assert "DIRECT_ACCESS" in b.inq(1).stdout
    status = b.call("GET", "/api/_status")
    assert status["applied_epoch"] >= reply["epoch"]


_WRITER = r"""
import sys
from iscsigw.config import edits
from iscsigw.config.file_store import FileConfigStore
from iscsigw.config.store import commit_retrying
from iscsigw.errors import ConfigError
store = FileConfigStore(sys.argv[1])
tag = sys.argv[2]
for i in range(15):
    commit_retrying(store, lambda d, i=i: edits.create_target(d, f"iqn.2026-11.io.race:{tag}-{i}"),
                    attempts=50)
try:
    commit_retrying(store, lambda d: edits.add_disk(d, "rbd/same", backstore="file",
                                                    size=1 << 20), attempts=50)
    print("won")
except ConfigError as exc:
    print("lost:", exc)
"""


def test_concurrent_writers_one_wins_file_never_corrupt(tmp_path: Path) -> None:
    conf = tmp_path / "gateway.conf"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(conf), tag],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        for tag in ("w1", "w2", "w3")
    ]  # fmt: skip
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    results = sorted(out.strip() for out, _ in outs)
    assert results.count("won") == 1, results
    assert all(r.startswith("lost: Disk rbd/same is already defined") for r in results[:-1] if
               r != "won"), results  # fmt: skip
    doc = json.loads(conf.read_text())
    assert len(doc["targets"]) == 45 and list(doc["disks"]) == ["rbd/same"]
    assert doc["epoch"] == 46  # every commit counted once, none lost


def test_live_session_survives_unrelated_change_and_sees_resize(pair: Any) -> None:
    a, b = pair
    _seed(a)
    session = b.gw.session()
    try:
        session.login(T, initiator=C, user=C, password=SECRET)
        assert session.test_unit_ready().status == 0
        blocks, bs = session.read_capacity16()
        assert blocks * bs == 100 << 30
        # An unrelated LUN for another client: this session keeps working, no attention.
        a.call("PUT", "/api/disk/rbd/other", mode="create", size="1G")
        a.call("PUT", f"/api/targetlun/{T}", disk="rbd/other")
        a.call("PUT", f"/api/client/{T}/{C2}")
        a.call("PUT", f"/api/clientlun/{T}/{C2}", disk="rbd/other")
        res = session.read10(0, 8, bs)
        assert res.status == 0 and len(res.data) == 8 * bs
        # A resize through A raises CAPACITY DATA HAS CHANGED on B's session.
        reply = a.call("PUT", "/api/disk/rbd/disk_1", mode="resize", size="200G")
        assert "rbd/disk_1" in reply["gateways"]["gwb.example.test"]["changes"]["resized"]
        res = session.scsi(bytes(6))
        assert res.status == 0x02 and res.sense_key == 0x06, res
        sense = res.sense
        asc = (sense[2], sense[3]) if sense[0] & 0x7F in (0x72, 0x73) else (sense[12], sense[13])
        assert asc == (0x2A, 0x09), sense.hex()
        blocks, bs = session.read_capacity16()
        assert blocks * bs == 200 << 30
    finally:
        session.close()
