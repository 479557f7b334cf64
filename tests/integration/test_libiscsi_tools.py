"""libiscsi's command-line tools (Debian libiscsi-bin 1.19) against a demo gateway.

Output formats asserted here were taken from the tools on Debian 12 run against tgt:
``iscsi-ls -s`` prints ``Target:IQN Portal:IP:PORT,TPGT`` then ``Lun:N    Type:DIRECT_ACCESS
(Size:1023M)`` (it prints last-LBA x block size, so 1 GiB shows as 1023M); a failed CHAP
login prints ``... Status: Authentication failure(513)`` and exits 10.

Gotcha: ``iscsi-inq -c`` must be given in decimal; ``-c 0x80`` is silently read as page 0.
"""

from __future__ import annotations

import re

import pytest

from integration.harness import (
    DEMO_SIZE,
    URL_RE,
    Gateway,
    GatewayFactory,
    config_acl,
    config_open_access,
    run_tool,
)

AUTH_FAILURE = "Authentication failure"


def test_demo_url_shape(module_gateway: Gateway) -> None:
    gw = module_gateway
    m = URL_RE.match(gw.url)
    assert m, gw.url
    assert gw.lun == 0, f"the demo LUN must be LUN 0: {gw.url}"
    assert gw.user and gw.password, f"the demo target must have CHAP credentials: {gw.url}"
    assert gw.iqn.startswith("iqn."), gw.iqn
    url_lines = [line for line in gw.stdout_lines if line.startswith("iSCSI URL:")]
    assert len(url_lines) == 1, gw.stdout_lines


def test_iscsi_ls_lists_target_and_lun(module_gateway: Gateway) -> None:
    gw = module_gateway
    res = run_tool(["iscsi-ls", "-s", gw.portal_url()], check=True)
    out = res.stdout
    assert re.search(
        rf"^Target:{re.escape(gw.iqn)} Portal:{re.escape(gw.portal)},\d+$", out, re.M
    ), res.describe()
    m = re.search(rf"^Lun:{gw.lun}\s+Type:DIRECT_ACCESS \(Size:(\d+)([KMGT]?)\)", out, re.M)
    assert m, res.describe()
    size, unit = int(m.group(1)), m.group(2)
    assert (size, unit) in {(1023, "M"), (1024, "M"), (1, "G")}, res.describe()


def test_iscsi_ls_url_mode(module_gateway: Gateway) -> None:
    gw = module_gateway
    res = run_tool(["iscsi-ls", "--url", gw.portal_url()], check=True)
    assert f"iscsi://{gw.portal}/{gw.iqn}/" in res.stdout, res.describe()


def test_iscsi_inq_standard(module_gateway: Gateway) -> None:
    res = run_tool(["iscsi-inq", module_gateway.lun_url()], check=True)
    out = res.stdout
    assert "Peripheral Qualifier:CONNECTED" in out, res.describe()
    assert "Peripheral Device Type:DIRECT_ACCESS" in out, res.describe()
    assert re.search(r"^Vendor:.+$", out, re.M), res.describe()
    assert re.search(r"^Product:.+$", out, re.M), res.describe()
    assert "CmdQue:1" in out, res.describe()


def test_iscsi_inq_supported_vpd_pages(module_gateway: Gateway) -> None:
    res = run_tool(["iscsi-inq", "-e", "1", "-c", "0", module_gateway.lun_url()], check=True)
    for page in (
        "0x00 SUPPORTED_VPD_PAGES",
        "0x80 UNIT_SERIAL_NUMBER",
        "0x83 DEVICE_IDENTIFICATION",
        "0xb0 BLOCK_LIMITS",
    ):
        assert f"Page:{page}" in res.stdout, res.describe()


def test_iscsi_inq_unit_serial(module_gateway: Gateway) -> None:
    res = run_tool(["iscsi-inq", "-e", "1", "-c", str(0x80), module_gateway.lun_url()], check=True)
    m = re.search(r"^Unit Serial Number:\[(.*)\]$", res.stdout, re.M)
    assert m and m.group(1).strip(), res.describe()
    again = run_tool(
        ["iscsi-inq", "-e", "1", "-c", str(0x80), module_gateway.lun_url()], check=True
    )
    assert again.stdout == res.stdout, "the unit serial number must be stable"


def test_iscsi_inq_device_identification(module_gateway: Gateway) -> None:
    res = run_tool(["iscsi-inq", "-e", "1", "-c", str(0x83), module_gateway.lun_url()], check=True)
    out = res.stdout
    assert "Page Code:(0x83) DEVICE_IDENTIFICATION" in out, res.describe()
    assert re.search(r"Designator Type:\(3\) NAA", out), "an NAA LU designator is required\n" + (
        res.describe()
    )


def test_iscsi_inq_block_limits(module_gateway: Gateway) -> None:
    res = run_tool(["iscsi-inq", "-e", "1", "-c", str(0xB0), module_gateway.lun_url()], check=True)
    for field in (
        "wsnz:",
        "maximum transfer length:",
        "optimal transfer length:",
        "maximum unmap lba count:",
        "maximum write same length:",
    ):
        assert field in res.stdout, res.describe()


def test_iscsi_readcapacity16(module_gateway: Gateway) -> None:
    url = module_gateway.lun_url()
    res = run_tool(["iscsi-readcapacity16", url], check=True)
    assert f"Total size:{DEMO_SIZE}" in res.stdout, res.describe()
    m_bs = re.search(r"^LOGICAL BLOCK LENGTH IN BYTES:(\d+)$", res.stdout, re.M)
    m_lba = re.search(r"^RETURNED LOGICAL BLOCK ADDRESS:(\d+)$", res.stdout, re.M)
    assert m_bs and m_lba, res.describe()
    assert (int(m_lba.group(1)) + 1) * int(m_bs.group(1)) == DEMO_SIZE
    only = run_tool(["iscsi-readcapacity16", "-s", url], check=True)
    assert only.stdout.strip() == str(DEMO_SIZE), only.describe()


@pytest.mark.parametrize("tool", ["iscsi-inq", "iscsi-readcapacity16"])
def test_wrong_chap_password_is_refused(module_gateway: Gateway, tool: str) -> None:
    gw = module_gateway
    res = run_tool([tool, gw.lun_url(password=gw.password + "x")])
    assert res.returncode != 0, res.describe()
    assert AUTH_FAILURE in res.output, res.describe()


def test_wrong_chap_user_is_refused(module_gateway: Gateway) -> None:
    gw = module_gateway
    res = run_tool(["iscsi-inq", gw.lun_url(user=gw.user + "x")])
    assert res.returncode != 0, res.describe()
    assert AUTH_FAILURE in res.output, res.describe()


@pytest.mark.parametrize("tool", ["iscsi-inq", "iscsi-readcapacity16"])
def test_missing_chap_is_refused(module_gateway: Gateway, tool: str) -> None:
    res = run_tool([tool, module_gateway.lun_url(user="")])
    assert res.returncode != 0, res.describe()
    assert AUTH_FAILURE in res.output, res.describe()


def test_iscsi_ls_without_chap_shows_no_luns(module_gateway: Gateway) -> None:
    """Discovery may or may not require CHAP, but the LUN listing (a normal login) must fail."""
    res = run_tool(["iscsi-ls", "-s", module_gateway.portal_url(user="")])
    assert f"Lun:{module_gateway.lun} " not in res.stdout, res.describe()
    assert res.returncode != 0, res.describe()


def test_unknown_target_is_refused(module_gateway: Gateway) -> None:
    gw = module_gateway
    url = f"{gw.portal_url()}/iqn.2000-01.org.example:no-such-target/0"
    res = run_tool(["iscsi-inq", url])
    assert res.returncode != 0, res.describe()
    assert "Target not found" in res.output or "Failed to log in" in res.output, res.describe()


def test_open_access_without_chap(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(configure=config_open_access)
    res = run_tool(["iscsi-inq", gw.lun_url(user="")], check=True)
    assert "Peripheral Device Type:DIRECT_ACCESS" in res.stdout, res.describe()


def test_acl_admits_only_listed_initiator(gateway_factory: GatewayFactory) -> None:
    allowed = "iqn.2024-01.org.iscsigw.test:allowed"
    gw = gateway_factory(configure=config_acl(allowed))
    ok = run_tool(["iscsi-inq", "-i", allowed, gw.lun_url()], check=True)
    assert "DIRECT_ACCESS" in ok.stdout, ok.describe()
    denied = run_tool(["iscsi-inq", "-i", "iqn.2024-01.org.iscsigw.test:stranger", gw.lun_url()])
    assert denied.returncode != 0, denied.describe()
    assert "Authorization failure" in denied.output or AUTH_FAILURE in denied.output, (
        denied.describe()
    )
