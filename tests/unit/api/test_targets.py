"""Targets, gateways (portals), target/discovery auth and target LUN mapping."""

from __future__ import annotations

from apikit import GW, Api, ApiFactory, T, make_settings

T2 = "iqn.2026-11.io.iscsigw:second"


async def test_target_create_is_idempotent_and_listed(api: Api) -> None:
    body = await api.put(f"/api/target/{T}")
    assert body["message"] == "Target defined successfully"
    assert body["gateways"][GW]["state"] == "applied"
    await api.put(f"/api/target/{T.upper().replace('IQN', 'iqn')}")
    assert (await api.get("/api/targets")) == {"targets": [T]}
    t = (await api.config())["targets"][T]
    assert t["acl_enabled"] is True and t["portals"] == {} and t["clients"] == {}


async def test_target_bad_input_is_400_and_writes_nothing(api: Api) -> None:
    before = (await api.config())["epoch"]
    assert "Invalid iqn" in (await api.put("/api/target/iqn.bogus", 400))["message"]
    assert "not an iSCSI name" in (await api.put("/api/target/foo", 400))["message"]
    await api.put(f"/api/target/{T}")
    body = await api.put(f"/api/target/{T}", 400, mode="rebuild")
    assert "Unexpected mode" in body["message"]
    body = await api.put(f"/api/target/{T}", 400, mode="reconfigure", controls="{cmdsn_depth=1}")
    assert "JSON object" in body["message"]
    body = await api.put(f"/api/target/{T}", 400, mode="reconfigure",
                         controls='{"cmdsn_depth": 9999}')  # fmt: skip
    assert "cmdsn_depth" in body["message"] and "between 1 and 512" in body["message"]
    body = await api.put(f"/api/target/{T}", 400, mode="reconfigure", controls='{"bogus": 1}')
    assert "unknown target control 'bogus'" in body["message"]
    assert (await api.config())["epoch"] == before + 1


async def test_target_reconfigure_keeps_only_overrides(api: Api) -> None:
    await api.put(f"/api/target/{T}")
    body = await api.put(f"/api/target/{T}", mode="reconfigure",
                         controls='{"cmdsn_depth": "64", "immediate_data": "no"}')  # fmt: skip
    assert body["message"] == "Target reconfigured."
    assert (await api.config())["targets"][T]["controls"] == {
        "cmdsn_depth": 64, "immediate_data": False}  # fmt: skip
    await api.put(f"/api/target/{T}", mode="reconfigure",
                  controls='{"cmdsn_depth": "", "immediate_data": true}')  # fmt: skip
    assert (await api.config())["targets"][T]["controls"] == {}
    body = await api.put(f"/api/target/{T2}", 404, mode="reconfigure", controls="{}")
    assert "not defined" in body["message"]


async def test_target_delete(api: Api) -> None:
    await api.seed()
    body = await api.delete(f"/api/target/{T}", 400)
    assert "1 disk(s) and 1 client(s)" in body["message"]
    await api.delete(f"/api/client/{T}/iqn.1994-05.com.redhat:75c3d5efde0")
    await api.delete(f"/api/targetlun/{T}", disk="rbd/disk_1")
    assert (await api.delete(f"/api/target/{T}"))["message"] == "Target deleted."
    assert (await api.get("/api/targets")) == {"targets": []}
    assert (await api.delete(f"/api/target/{T}", 404))["message"] == f"Target {T} is not defined"
    await api.delete(f"/api/_target/{T}")  # clearconfig on every portal: idempotent


async def test_gateway_add_list_remove(api: Api) -> None:
    await api.put(f"/api/target/{T}")
    body = await api.put(f"/api/gateway/{T}/{GW}", ip_address="127.0.0.1", nosync="False",
                         skipchecks="true")  # fmt: skip
    assert body["message"] == "Gateway creation successful"
    await api.put(f"/api/gateway/{T}/gw2.example.test", ip_address="127.0.0.2:3261")
    portals = await api.get(f"/api/gateways/{T}")
    assert portals[GW]["tpg"] == 1 and portals["gw2.example.test"]["tpg"] == 2
    assert portals["gw2.example.test"]["portal_ip_addresses"] == ["127.0.0.2"]
    assert portals["gw2.example.test"]["portal_port"] == 3261
    assert portals[GW]["inactive_portal_ips"] == ["127.0.0.2"]
    assert (await api.get(f"/api/_gateway/{T}/{GW}"))["tpg"] == 1
    body = await api.put(f"/api/gateway/{T}/{GW}", 400, ip_address="127.0.0.5")
    assert body["message"] == "Gateway already exists in configuration"
    body = await api.put(f"/api/gateway/{T}/gw3", 400, ip_address="127.0.0.2:3261")
    assert "already a portal of gateway gw2.example.test" in body["message"]
    assert "ip_address is required" in (await api.put(f"/api/gateway/{T}/gw3", 400))["message"]
    body = await api.put(f"/api/gateway/{T}/gw3", 400, ip_address="300.1.1.1")
    assert "not an IPv4 or IPv6 address" in body["message"]
    body = await api.put(f"/api/gateway/{T}/bad_name!", 400, ip_address="127.0.0.9")
    assert "host name" in body["message"]
    assert (await api.delete(f"/api/gateway/{T}/gw2.example.test"))["message"] == (
        "Gateway deletion successful")  # fmt: skip
    assert list(await api.get(f"/api/gateways/{T}")) == [GW]
    await api.delete(f"/api/gateway/{T}/gw2.example.test", 404)
    await api.get(f"/api/gateways/{T2}", 404)


async def test_gateway_port_comes_from_its_registration(api: Api) -> None:
    from iscsigw.config.edits import register_gateway

    await api.manager.commit(lambda d: register_gateway(d, "gw2", "", ["127.0.0.3:13261"]))
    await api.put(f"/api/target/{T}")
    body = await api.put(f"/api/gateway/{T}/gw2", 400, ip_address="127.0.0.4")
    assert "does not listen on 127.0.0.4:3260" in body["message"]
    await api.put(f"/api/gateway/{T}/gw2", ip_address="127.0.0.3")
    portal = (await api.get(f"/api/gateways/{T}"))["gw2"]
    assert portal["portal_port"] == 13261


async def test_removing_a_gateway_moves_lun_ownership(api: Api) -> None:
    await api.seed(client=False)
    await api.put(f"/api/gateway/{T}/gw2", ip_address="127.0.0.2")
    await api.put("/api/disk/rbd/disk_2", mode="create", size="1G")
    await api.put(f"/api/targetlun/{T}", disk="rbd/disk_2")
    cfg = await api.config()
    assert cfg["disks"]["rbd/disk_2"]["owner"] == "gw2"  # fewest active LUNs
    await api.delete(f"/api/gateway/{T}/gw2", force="true")
    cfg = await api.config()
    assert cfg["disks"]["rbd/disk_2"]["owner"] == GW
    assert cfg["gateways"][GW]["active_luns"] == 2 and cfg["gateways"]["gw2"]["active_luns"] == 0


async def test_targetlun_map_unmap_and_errors(api: Api) -> None:
    await api.seed(disk=False, client=False)
    await api.put("/api/disk/rbd/a", mode="create", size="1G")
    await api.put("/api/disk/rbd/b", mode="create", size="1G")
    body = await api.put(f"/api/targetlun/{T}", disk="rbd/a", lun_id="3")
    assert body["message"] == "Target LUN mapping updated successfully"
    assert body["gateways"][GW]["changes"]["opened"] == ["rbd/a"]
    assert (await api.put(f"/api/targetlun/{T}", 400, disk="rbd/b", lun_id="3"))["message"] == (
        "Lun id 3 already in use")  # fmt: skip
    assert (await api.put(f"/api/targetlun/{T}", 400, disk="rbd/b", lun_id="x"))["message"] == (
        "Lun id must be a number")  # fmt: skip
    body = await api.put(f"/api/targetlun/{T}", 400, disk="rbd/b", lun_id="256")
    assert "between 0 and 255" in body["message"]
    body = await api.put(f"/api/targetlun/{T}", 400, disk="rbd/a")
    assert "already mapped on target" in body["message"]
    body = await api.put(f"/api/targetlun/{T}", 400, disk="rbd/none")
    assert body["message"] == "Disk rbd/none is not defined in the configuration"
    assert "parameter 'disk' is required" in (await api.put(f"/api/targetlun/{T}", 400))["message"]
    await api.put(f"/api/targetlun/{T}", disk="rbd/b")
    assert (await api.config())["targets"][T]["disks"] == {"rbd/a": {"lun_id": 3},
                                                             "rbd/b": {"lun_id": 0}}  # fmt: skip
    body = await api.delete(f"/api/targetlun/{T}", 400, disk="rbd/none")
    assert "not defined" in body["message"]
    body = await api.delete(f"/api/targetlun/{T}", 400)
    assert "required" in body["message"]
    await api.delete(f"/api/targetlun/{T}", disk="rbd/a")
    assert list((await api.config())["targets"][T]["disks"]) == ["rbd/b"]
    body = await api.delete(f"/api/targetlun/{T}", 400, disk="rbd/a")
    assert body["message"] == f"Disk rbd/a is not defined in target {T}"


async def test_minimum_gateways_gates_luns_and_clients(api_factory: ApiFactory) -> None:
    api = await api_factory(settings=make_settings(minimum_gateways=2))
    await api.seed(disk=False, client=False)
    await api.put("/api/disk/rbd/a", mode="create", size="1G")
    body = await api.put(f"/api/targetlun/{T}", 400, disk="rbd/a")
    assert "At least 2 gateways must be defined" in body["message"]
    body = await api.put(f"/api/client/{T}/iqn.1994-05.com.redhat:x", 400)
    assert "Clients can not be defined until a HA configuration" in body["message"]


async def test_discovery_auth(api: Api) -> None:
    body = await api.put("/api/discoveryauth", username="discovery.user", password="secret1234567")
    assert body["message"] == "discovery auth successful"
    auth = (await api.config())["discovery_auth"]
    assert auth["username"] == "discovery.user" and auth["password"] == "secret1234567"
    body = await api.put("/api/discoveryauth", 400, username="short", password="secret1234567")
    assert "CHAP username must be 8 to 64 characters long (it has 5)" in body["message"]
    body = await api.put(
        "/api/discoveryauth", 400, username="discovery.user", password="bad!pass!1234"
    )
    assert "CHAP password may only contain" in body["message"]
    body = await api.put("/api/discoveryauth", 400, username="discovery.user",
                         password="secret1234567", mutual_username="mutual.user")  # fmt: skip
    assert "mutual CHAP needs both" in body["message"]
    await api.put("/api/_discoveryauth/")  # internal twin, clears
    assert (await api.config())["discovery_auth"]["username"] == ""


async def test_target_auth_and_acl(api: Api) -> None:
    await api.seed(disk=False)
    body = await api.put(f"/api/targetauth/{T}", 400, action="disable_acl")
    assert body["message"] == "Cannot disable ACL authentication because target has clients"
    body = await api.put(f"/api/targetauth/{T}", 400, action="sideways")
    assert "Invalid auth sideways" in body["message"]
    await api.delete(f"/api/client/{T}/iqn.1994-05.com.redhat:75c3d5efde0")
    await api.put(f"/api/targetauth/{T}", action="disable_acl")
    body = await api.put(f"/api/targetauth/{T}", username="target.user", password="secret1234567")
    assert body["message"] == "target auth chap - successful"
    t = (await api.config())["targets"][T]
    assert t["acl_enabled"] is False and t["auth"]["username"] == "target.user"
    await api.put(f"/api/_targetauth/{T}", action="enable_acl")
    t = (await api.config())["targets"][T]
    # An action alone keeps the target's CHAP (the Dashboard sends the action, then creds).
    assert t["acl_enabled"] is True and t["auth"]["username"] == "target.user"
    await api.put(f"/api/targetauth/{T}", username="", password="")
    assert (await api.config())["targets"][T]["auth"]["username"] == ""


def _allows(api: Api, initiator: str) -> bool:
    """Would this gateway's running target let ``initiator`` log in (ACL and CHAP policy)?"""
    from iscsigw.gateway.runtime import TargetAdapter

    runtime = api.manager.runtime
    assert runtime is not None
    entry = runtime.targets[T]
    return TargetAdapter(entry.config, entry.tpgt).allows(initiator)


async def test_open_target_ceph_style_and_auth_required_extension(api: Api) -> None:
    anyone, client = "iqn.1994-05.com.example:anyone", "iqn.1994-05.com.redhat:75c3d5efde0"
    await api.seed(disk=False, client=False)
    t = (await api.config())["targets"][T]
    assert t["auth_required"] is True and not _allows(api, anyone)
    # ceph-iscsi: disable_acl with no target CHAP = any initiator, no authentication.
    body = await api.put(f"/api/targetauth/{T}", action="disable_acl")
    assert (
        body["message"] == "target auth disable_acl - successful (CHAP not required on this target)"
    )
    assert (await api.config())["targets"][T]["auth_required"] is False
    assert _allows(api, anyone)
    # Target CHAP on an ACL-less target: everyone must use it; clearing it opens it again.
    await api.put(f"/api/targetauth/{T}", username="target.user", password="secret1234567")
    assert (await api.config())["targets"][T]["auth_required"] is True
    await api.put(f"/api/targetauth/{T}", username="", password="")
    assert (await api.config())["targets"][T]["auth_required"] is False
    # The extension closes it explicitly (no CHAP configured: nobody gets in).
    await api.put(f"/api/targetauth/{T}", auth_required="true")
    assert (await api.config())["targets"][T]["auth_required"] is True and not _allows(api, anyone)
    # enable_acl brings back iscsigw's default: CHAP required for the clients.
    await api.put(f"/api/targetauth/{T}", action="disable_acl")
    await api.put(f"/api/targetauth/{T}", action="enable_acl")
    await api.put(f"/api/client/{T}/{client}")
    assert (await api.config())["targets"][T]["auth_required"] is True
    assert not _allows(api, client)
    # ACL by initiator name only (ceph-iscsi's clients without CHAP), on purpose.
    await api.put(f"/api/targetauth/{T}", auth_required="false")
    assert _allows(api, client) and not _allows(api, anyone)
    body = await api.put(f"/api/targetauth/{T}", 400, auth_required="maybe")
    assert "auth_required" in body["message"]
    assert (await api.config())["targets"][T]["auth_required"] is False
