"""``ls`` summaries and info pages: the words ceph-iscsi's gwcli prints."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from gwcli_fake_api import FakeAPI

from iscsigw.cli import shell
from iscsigw.cli.gwcli import fmt

T = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
I = "iqn.1994-05.com.redhat:75c3d5efde0"  # noqa: E741


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0B"), (512, "512B"), (1024, "1K"), (100 << 30, "100G"), (3 << 39, "1.5T"),
     (1536 << 20, "1.5G"), ((1 << 30) + 1, "1G"), (2 << 40, "2T"), (1234567, "1.18M")],
)  # fmt: skip
def test_human_size(n: int, text: str) -> None:
    assert fmt.human_size(n) == text


def test_auth_modes() -> None:
    assert fmt.auth_mode(None) == "None"
    assert fmt.auth_mode({"username": "", "password": ""}) == "None"
    assert fmt.auth_mode({"username": "u", "password": "p"}) == "CHAP"
    assert fmt.auth_mode({"username": "u", "password": "p", "mutual_username": "m"}) == (
        "CHAP_MUTUAL"
    )


def test_summary_texts() -> None:
    assert fmt.gateways_summary({"gw1": "UP", "gw2": "UP"}, 2) == ("Up: 2/2, Portals: 2", True)
    assert fmt.gateways_summary({"gw1": "UP", "gw2": "UNKNOWN"}, 3) == (
        "Up: 1/2, Portals: 3",
        False,
    )
    assert fmt.gateway_summary(["192.168.219.128"], "UP") == ("192.168.219.128 (UP)", True)
    assert fmt.target_disk_summary("gw2", 0) == "Owner: gw2, Lun: 0"
    assert fmt.host_summary(True, {"username": "u", "password": "p"}, [100 << 30]) == (
        "LOGGED-IN, Auth: CHAP, Disks: 1(100G)",
        True,
    )
    assert fmt.host_summary(False, None, [])[0] == "Auth: None, Disks: 0(0B)"
    assert fmt.lun_summary("rbd/disk_1", 2 << 30, "gw2") == "rbd/disk_1(2G), Owner: gw2"
    assert fmt.disks_summary([1 << 30, 7 << 30]) == "8G, Disks: 2"
    assert fmt.pool_summary("rbd", [8 << 30]) == "rbd (8G)"
    assert fmt.disk_summary("rbd/disk_1", "Online", 1 << 30) == ("rbd/disk_1 (Online, 1G)", True)
    assert fmt.disk_summary("rbd/disk_1", "NOT FOUND", 0)[1] is False
    assert fmt.hostgroups_summary(0) == "Groups : 0"
    assert fmt.targets_summary(None, 1) == "DiscoveryAuth: None, Targets: 1"


def test_acl_states() -> None:
    chap = {"username": "u", "password": "p"}
    target = {"acl_enabled": True, "auth": {}, "clients": {"a": {"auth": chap}, "b": {"auth": {}}}}
    assert fmt.acl_state(target) == "MISCONFIG"
    assert fmt.hosts_summary(target) == ("Auth: MISCONFIG, Hosts: 2", False)
    assert fmt.acl_state({**target, "auth": chap}) == "ACL_ENABLED"  # target CHAP: not judged
    assert fmt.acl_state({**target, "acl_enabled": False}) == "ACL_DISABLED"
    assert fmt.acl_state({"clients": {"a": {"auth": chap}}}) == "ACL_ENABLED"


# -- the rendered tree --------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    monkeypatch.setenv("HOME", str(tmp_path))
    fake = FakeAPI()
    yield fake
    fake.close()


def gwcli(api: FakeAPI, capsys: pytest.CaptureFixture[str], *cmd: str) -> str:
    capsys.readouterr()
    rc = shell.main(["--api", api.url, *cmd])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def summaries(text: str) -> dict[str, str]:
    """``{node name: summary}`` from an ``ls`` tree (last one wins for repeated names)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^[\s|]*o- (\S+(?: \d+)?) \.*\s*\[(.*)\]$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_ls_after_the_seed(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in [
        ("/iscsi-target", "create", T),
        (f"/iscsi-target/{T}/gateways", "create", "gw1", "127.0.0.2", "skipchecks=true"),
        (f"/iscsi-target/{T}/gateways", "create", "gw2", "127.0.0.3", "skipchecks=true"),
        ("/disks", "create", "pool=rbd", "image=disk_1", "size=100G"),
        (f"/iscsi-target/{T}/hosts", "create", I),
        (f"/iscsi-target/{T}/hosts/{I}", "auth", f"chap={I}/admin@a_12a-bb"),
        (f"/iscsi-target/{T}/hosts/{I}", "disk", "add", "rbd.disk_1"),
    ]:
        gwcli(api, capsys, *cmd)
    api.logged_in.add(I)
    got = summaries(gwcli(api, capsys, "ls"))
    assert got["cluster"] == "Clusters: 1"
    assert got["pools"] == "Pools: 1"
    assert got["disks"] in ("100G, Disks: 1", "Disks: 1")  # two nodes named disks
    assert got["disk_1"] == "rbd/disk_1 (Online, 100G)"
    assert got["iscsi-targets"] == "DiscoveryAuth: None, Targets: 1"
    assert got[T] == "Auth: None, Gateways: 2"
    assert got["rbd/disk_1"] == "Owner: gw1, Lun: 0"
    assert got["gateways"] == "Up: 2/2, Portals: 2"
    assert got["gw1"] == "127.0.0.2 (UP)"
    assert got["gw2"] == "127.0.0.3 (UP)"
    assert got["host-groups"] == "Groups : 0"
    assert got["hosts"] == "Auth: ACL_ENABLED, Hosts: 1"
    assert got[I] == "LOGGED-IN, Auth: CHAP, Disks: 1(100G)"
    assert got["lun 0"] == "rbd/disk_1(100G), Owner: gw1"
    top = summaries(gwcli(api, capsys, "ls", "/", "1"))
    assert top["disks"] == "100G, Disks: 1"

    # nodes named pool/image or "lun N" are reachable by path and by alias
    info = gwcli(api, capsys, f"/iscsi-targets/{T}/disks/rbd/disk_1", "info")
    assert re.search(r"^Image\.+ disk_1$", info, re.M)
    assert "Size" in gwcli(api, capsys, f"/iscsi-targets/{T}/disks/rbd.disk_1", "info")
    assert "rbd/disk_1" in gwcli(api, capsys, f"/iscsi-targets/{T}/hosts/{I}/lun0", "info")
    host = gwcli(api, capsys, f"/iscsi-targets/{T}/hosts/{I.upper()}", "info")
    assert re.search(r"^Logged In\.+ gw1$", host, re.M)
    assert re.search(r"^Auth\.+ CHAP$", host, re.M)


def test_unreachable_gateway_is_unknown(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    gwcli(api, capsys, "/iscsi-targets", "create", T)
    gwcli(api, capsys, f"/iscsi-targets/{T}/gateways", "create", "gw1", "127.0.0.2")
    gwcli(api, capsys, f"/iscsi-targets/{T}/gateways", "create", "gw2", "127.0.0.3")
    api.config["gateways"]["gw2"]["api_endpoint"] = "http://127.0.0.1:1"  # nothing there
    got = summaries(gwcli(api, capsys, "ls", f"/iscsi-targets/{T}/gateways"))
    assert got["gateways"] == "Up: 1/2, Portals: 2"
    assert got["gw2"] == "127.0.0.3 (UNKNOWN)"


def test_info_pages(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    info = gwcli(api, capsys, "info")
    assert re.search(r"^API endpoint\.+ http://admin@127\.0\.0\.1:\d+$", info, re.M)
    assert "secret-pw" not in info
    gwcli(api, capsys, "/disks", "create", "rbd/disk_1", "1G")
    assert "Backstore: " in gwcli(api, capsys, "ls", "/cluster")
    assert re.search(r"^Pools\.+ rbd$", gwcli(api, capsys, "/cluster/ceph", "info"), re.M)
    page = gwcli(api, capsys, "/disks/rbd/disk_1", "info")
    assert re.search(r"^WWN\.+ 6b8e3c3e-", page, re.M)
    assert re.search(r"^State\.+ Online$", page, re.M)


def test_help_is_the_docstring(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    gwcli(api, capsys, "/iscsi-targets", "create", T)
    gwcli(api, capsys, f"/iscsi-targets/{T}/hosts", "create", I)
    text = gwcli(api, capsys, f"/iscsi-targets/{T}/hosts/{I}", "help", "auth")
    assert "SYNTAX" in text
    assert "auth chap=<user>/<pass>" in text
    assert "12-16 characters" in text
    assert "SEE ALSO" in text
    listing = gwcli(api, capsys, "/disks", "help")
    for command in ("create", "attach", "resize", "reconfigure", "detach", "delete", "info"):
        assert f"- {command} " in listing
