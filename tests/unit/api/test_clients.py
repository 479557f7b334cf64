"""Clients: create/delete, CHAP, LUN masking, login info; host groups."""

from __future__ import annotations

from apikit import Api, C, T

C2 = "iqn.1994-05.com.redhat:other"


async def test_client_lifecycle(api: Api) -> None:
    await api.seed()
    assert (await api.get(f"/api/clients/{T}")) == {"clients": [C]}
    assert (await api.put(f"/api/client/{T}/{C}"))["message"] == "client create/update successful"
    body = await api.put(f"/api/client/{T}/iqn.bad", 400)
    assert "Invalid iqn" in body["message"]
    assert (await api.get(f"/api/_client/{T}/{C}"))["luns"] == {}
    assert (await api.delete(f"/api/client/{T}/{C}"))["message"] == "client delete successful"
    await api.delete(f"/api/client/{T}/{C}", 404)
    await api.delete(f"/api/_client/{T}/{C}")  # internal twin is idempotent
    await api.get(f"/api/_client/{T}/{C}", 404)
    await api.get("/api/clients/iqn.2026-11.io.iscsigw:none", 404)


async def test_client_auth_rules(api: Api) -> None:
    await api.seed()
    body = await api.put(f"/api/clientauth/{T}/{C}", username=C, password="admin@a_12a-bb")
    assert body["message"] == "client auth successful"
    auth = (await api.config())["targets"][T]["clients"][C]["auth"]
    assert auth["username"] == C and auth["password"] == "admin@a_12a-bb"
    assert auth["password_encryption_enabled"] is False
    cases = [
        ({"username": "user.name", "password": "short"}, "password must be 12 to 16"),
        ({"username": "user.name", "password": "has space 1234"}, "may only contain"),
        ({"password": "secret1234567"}, "a CHAP password needs a username"),
        ({"username": "user.name"}, "needs a password"),
        ({"username": "user.name", "password": "secret1234567", "mutual_password": "x" * 12},
         "mutual CHAP needs"),
    ]  # fmt: skip
    for form, text in cases:
        body = await api.put(f"/api/clientauth/{T}/{C}", 400, **form)
        assert text in body["message"], (form, body)
    await api.put(f"/api/clientauth/{T}/{C}")  # nochap
    assert (await api.config())["targets"][T]["clients"][C]["auth"]["username"] == ""
    await api.put(f"/api/clientauth/{T}/{C2}", 404, username="user.name", password="x" * 12)


async def test_client_luns(api: Api) -> None:
    await api.seed()
    body = await api.put(f"/api/clientlun/{T}/{C}", disk="rbd/disk_1")
    assert body["message"] == "client masking update successful"
    assert (await api.get(f"/api/_clientlun/{T}/{C}", disk="rbd/disk_1")) == {
        "message": {"rbd/disk_1": {"lun_id": 0}}}  # fmt: skip
    await api.put("/api/disk/rbd/x", mode="create", size="1G")
    body = await api.put(f"/api/clientlun/{T}/{C}", 400, disk="rbd/x")
    assert "not mapped to target" in body["message"]
    await api.delete(f"/api/clientlun/{T}/{C}", disk="rbd/disk_1")
    body = await api.delete(f"/api/clientlun/{T}/{C}", 400, disk="rbd/disk_1")
    assert body["message"] == "disk not mapped to client"
    await api.put(f"/api/_clientlun/{T}/{C}", image_list="rbd/disk_1")
    assert (await api.get(f"/api/_clientlun/{T}/{C}"))["message"] == {"rbd/disk_1": {"lun_id": 0}}
    await api.put(f"/api/_clientlun/{T}/{C}", image_list="")
    assert (await api.get(f"/api/_clientlun/{T}/{C}"))["message"] == {}


async def test_clientinfo(api: Api) -> None:
    await api.seed()
    assert (await api.get(f"/api/clientinfo/{T}/{C}")) == {"alias": "", "state": {},
                                                           "ip_address": []}  # fmt: skip
    assert (await api.get(f"/api/_clientinfo/{T}/{C}"))["state"] == ""
    await api.get(f"/api/clientinfo/{T}/{C2}", 404)


async def test_host_groups(api: Api) -> None:
    await api.seed()
    await api.put(f"/api/client/{T}/{C2}")
    body = await api.put(f"/api/hostgroup/{T}/group1")
    assert body["message"] == "hostgroup create/update successful"
    assert (await api.get(f"/api/hostgroups/{T}")) == {"groups": ["group1"]}
    await api.put(f"/api/hostgroup/{T}/group1", action="add", members=f"{C},{C2}")
    await api.put(f"/api/hostgroup/{T}/group1", action="add", disks="rbd/disk_1")
    group = await api.get(f"/api/hostgroup/{T}/group1")
    assert group == {"members": [C, C2], "disks": {"rbd/disk_1": {"lun_id": 0}}}
    body = await api.put(f"/api/clientlun/{T}/{C}", 400, disk="rbd/disk_1")
    assert "manage its disks through the group" in body["message"]
    body = await api.delete(f"/api/client/{T}/{C}", 400)
    assert "member of host group group1" in body["message"]
    body = await api.delete(f"/api/targetlun/{T}", 400, disk="rbd/disk_1")
    assert body["message"] == "Disk rbd/disk_1 belongs to group group1"
    body = await api.put(f"/api/hostgroup/{T}/group1", 400, action="jump")
    assert "Invalid hostgroup action" in body["message"]
    body = await api.put(f"/api/hostgroup/{T}/bad name", 400)
    assert "Group name" in body["message"]
    await api.put(f"/api/hostgroup/{T}/group1", action="remove", members=C2)
    cfg = await api.config()
    assert cfg["targets"][T]["clients"][C2]["luns"] == {"rbd/disk_1": {"lun_id": 0}}
    assert (await api.delete(f"/api/hostgroup/{T}/group1"))["message"] == "Group 'group1' removed"
    cfg = await api.config()
    assert cfg["targets"][T]["clients"][C]["luns"] == {"rbd/disk_1": {"lun_id": 0}}
    assert cfg["targets"][T]["clients"][C]["group_name"] == ""
    await api.get(f"/api/hostgroup/{T}/group1", 404)
    await api.delete(f"/api/hostgroup/{T}/group1", 404)
    await api.delete(f"/api/_hostgroup/{T}/group1")
