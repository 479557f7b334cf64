"""The web dashboard in a real headless browser, and /metrics, against two real gateways.

gwa (127.0.0.2) and gwb (127.0.0.3) share one data directory and are set up through gwa's
API as in the seed walkthrough. An initiator that sends an InitiatorAlias logs in to gwb and
reads and writes. Debian's chromium (driven by playwright, no browser download) opens gwa's
``/dashboard`` with the API credentials and must show both gateways up, the target, the disk,
the logged-in client with its alias and the session; after gwb stops, gwb turns ``down`` and
its session disappears. ``/metrics`` of both gateways is checked against the same state.

Every process this module starts is stopped by its own pid.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.harness import Gateway, free_port
from integration.rawclient import Session

T = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
C = "iqn.1994-05.com.redhat:75c3d5efde0"
SECRET = "secret_12a-bbcc"
ALIAS = "db-host-7"
A, B = "gwa.example.test", "gwb.example.test"
CHROMIUM = os.environ.get("ISCSIGW_CHROMIUM", "/usr/bin/chromium")
API_LINE = re.compile(r"^API URL: (https?)://([^:]+):([^@]+)@(\S+)$")

pytestmark = pytest.mark.integration


class AliasSession(Session):
    """rawclient.Session that also declares an InitiatorAlias in its first login request."""

    alias = ALIAS

    def _login_pdu(self, csg: int, nsg: int, transit: bool, keys: dict[str, str]) -> Any:
        if "InitiatorName" in keys:
            keys = {**keys, "InitiatorAlias": self.alias}
        return super()._login_pdu(csg, nsg, transit, keys)


class ApiGw:
    def __init__(self, base: Path, name: str, host: str) -> None:
        self.api_port = free_port(host)
        self.gw = Gateway(base / "data", base / "logs", host=host, name=name,
                          extra_args=["--api", f"{host}:{self.api_port}"])  # fmt: skip
        self.name, self.host = name, host
        self.url = f"http://{host}:{self.api_port}"
        self.auth: tuple[str, str] = ("", "")

    def start(self) -> None:
        self.gw.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for line in self.gw.stdout_lines:
                m = API_LINE.match(line)
                if m:
                    self.auth = (m.group(2), m.group(3))
                    return
            time.sleep(0.05)
        raise AssertionError("no 'API URL:' line\n" + self.gw.log_tail())

    def call(self, method: str, path: str, **form: str) -> dict[str, Any]:
        with httpx.Client(base_url=self.url, auth=self.auth, timeout=30, trust_env=False) as c:
            resp = c.request(method, path, data=form or None)
        assert resp.status_code == 200, f"{method} {path}: {resp.status_code} {resp.text}"
        body: dict[str, Any] = resp.json()
        return body

    def metrics(self) -> str:
        resp = httpx.get(f"{self.url}/metrics", timeout=10, trust_env=False)  # no credentials
        assert resp.status_code == 200
        return resp.text


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            return float(m.group(2))
    raise AssertionError(f"no {name} {labels} in\n{text}")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[ApiGw, ApiGw]]:
    a, b = ApiGw(tmp_path, A, "127.0.0.2"), ApiGw(tmp_path, B, "127.0.0.3")
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        for g in (a, b):
            if g.gw.alive():
                g.gw.stop()
            g.gw.cleanup()


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/install-test-deps installs chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--headless", "--no-sandbox", "--disable-gpu"])  # fmt: skip
        try:
            yield b
        finally:
            b.close()


def _seed(a: ApiGw) -> None:
    a.call("PUT", f"/api/target/{T}")
    a.call("PUT", f"/api/gateway/{T}/{A}", ip_address="127.0.0.2", skipchecks="true")
    a.call("PUT", f"/api/gateway/{T}/{B}", ip_address="127.0.0.3", skipchecks="true")
    a.call("PUT", "/api/disk/rbd/disk_1", mode="create", size="1G", pool="rbd")
    a.call("PUT", f"/api/client/{T}/{C}")
    a.call("PUT", f"/api/clientauth/{T}/{C}", username=C, password=SECRET)
    a.call("PUT", f"/api/targetlun/{T}", disk="rbd/disk_1")
    a.call("PUT", f"/api/clientlun/{T}/{C}", disk="rbd/disk_1")


def _row(page: Any, table: str, key: str) -> list[str]:
    cells: list[str] = page.locator(f'#{table} tbody tr[data-key="{key}"] td').all_text_contents()
    return cells


def _wait_refresh(page: Any) -> None:
    """Wait for the next completed poll of /api/config + /api/overview."""
    n = int(page.evaluate("Number(document.body.dataset.refreshes || 0)"))
    page.wait_for_function(f"Number(document.body.dataset.refreshes || 0) > {n}", timeout=10000)


def test_dashboard_and_metrics(pair: tuple[ApiGw, ApiGw], browser: Any) -> None:
    a, b = pair
    _seed(a)
    session = AliasSession(b.host, b.gw.port)
    try:
        session.login(T, initiator=C, user=C, password=SECRET)
        assert session.test_unit_ready().status == 0
        _, bs = session.read_capacity16()
        assert session.write10(0, b"\x5a" * (8 * bs), bs).status == 0
        assert session.read10(0, 8, bs).data == b"\x5a" * (8 * bs)
        assert session.read10(8, 8, bs).status == 0

        # /metrics of gwb (where the session is) and gwa (where it is not).
        mb, ma = b.metrics(), a.metrics()
        assert sample(mb, "ceph_iscsi_client_login", gw_name=B, client_iqn=C) == 1
        assert sample(ma, "ceph_iscsi_client_login", gw_name=A, client_iqn=C) == 0
        assert sample(mb, "iscsigw_gateway_sessions", gw_name=B, target_iqn=T) == 1
        assert sample(mb, "ceph_iscsi_lun_size_bytes", lun_name="rbd.disk_1") == 1 << 30
        assert sample(mb, "ceph_iscsi_client_lun", client_iqn=C, lun_name="rbd.disk_1") == 0
        assert sample(ma, "ceph_iscsi_gateway_tpg_total", gw_iqn=T) == 2
        assert sample(ma, "iscsigw_gateway_up", gw_name=A) == 1
        reads = sample(mb, "iscsigw_lun_read_ops_total", gw_name=B, disk="rbd/disk_1")
        writes = sample(mb, "iscsigw_lun_write_ops_total", gw_name=B, disk="rbd/disk_1")
        io_counted = (reads, writes) != (0, 0)
        if io_counted:  # the driver bumps iscsigw.iostats counters where commands complete
            assert (reads, writes) == (2, 1)
            assert sample(mb, "ceph_iscsi_lun_read_bytes", lun_name="rbd.disk_1") == 16 * bs
            assert sample(mb, "ceph_iscsi_lun_write_bytes", lun_name="rbd.disk_1") == 8 * bs

        # The dashboard, served by gwa, in a real browser.
        context = browser.new_context(http_credentials={"username": a.auth[0],
                                                        "password": a.auth[1]})  # fmt: skip
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{a.url}/?interval=0.5")  # / redirects to /dashboard
        assert page.url.startswith(f"{a.url}/dashboard")
        _wait_refresh(page)
        assert page.text_content("#self") == A
        assert page.text_content("#error") == ""
        assert _row(page, "gateways", A)[:2] == [A, "up"]
        assert _row(page, "gateways", B)[:2] == [B, "up"]
        target = _row(page, "targets", T)
        assert target[1] == "Up: 2/2" and "127.0.0.2" in target[2] and "127.0.0.3" in target[2]
        assert target[3] == "ACL, CHAP required" and target[4:] == ["1", "1", "1"]
        disk = _row(page, "disks", "rbd/disk_1")
        owner = a.call("GET", "/api/config")["disks"]["rbd/disk_1"]["owner"]
        assert disk[:5] == ["rbd/disk_1", "file", "1.0 GiB", f"{T} / 0", owner]
        if io_counted:
            assert disk[5:] == ["2", f"{16 * bs // 1024}.0 KiB", "1", f"{8 * bs // 1024}.0 KiB"]
        client = _row(page, "clients", f"{T} {C}")
        assert client == [C, T, f"LOGGED-IN ({B})", "CHAP", "1", ALIAS, "127.0.0.1"]
        sessions = page.locator("#sessions tbody tr").all()
        assert len(sessions) == 1
        assert sessions[0].locator("td").all_text_contents() == [
            B, C, ALIAS, T.lower(), "127.0.0.1", f"127.0.0.3:{b.gw.port}", "CHAP", "1"]  # fmt: skip

        # gwb goes away: its row turns down, its session and the login disappear.
        session.close()
        b.gw.stop()
        page.wait_for_function(
            f"""() => {{
                const row = document.querySelector('#gateways tr[data-key="{B}"]');
                return row && row.children[1].textContent === "down";
            }}""",
            timeout=15000,
        )
        _wait_refresh(page)
        assert _row(page, "targets", T)[1] == "Up: 1/2"
        assert _row(page, "clients", f"{T} {C}")[2] == "-"
        assert page.locator("#sessions tbody tr.empty").count() == 1
        assert errors == []
        context.close()
    finally:
        session.close()
    a.gw.assert_no_tracebacks()
