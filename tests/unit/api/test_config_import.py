"""PUT /api/config: replace the whole configuration (gwcli import), validated first."""

from __future__ import annotations

import json
from typing import Any

from apikit import GW, Api, T

T2 = "iqn.2026-11.io.iscsigw:second"


async def _put_config(api: Api, doc: Any, status: int = 200) -> dict[str, Any]:
    return await api.put("/api/config", status, config=json.dumps(doc))


async def test_import_replaces_document_and_applies_it(api: Api) -> None:
    await api.seed(client=False)
    exported = await api.get("/api/config", decrypt_passwords="true")
    await api.put(f"/api/target/{T2}")
    body = await _put_config(api, exported)
    assert body["message"] == "configuration replaced"
    assert body["gateways"][GW]["state"] == "applied"
    after = await api.config()
    assert list(after["targets"]) == [T]
    assert after["epoch"] > exported["epoch"]  # the epoch keeps growing
    assert after["created"] == exported["created"]
    runtime = api.manager.runtime
    assert runtime is not None and set(runtime.targets) == {T} and "rbd/disk_1" in runtime.lus


async def test_import_keeps_where_gateways_really_listen(api: Api) -> None:
    await api.seed(disk=False, client=False)
    await api.manager.commit(
        lambda doc: doc["gateways"][GW].update(
            api_endpoint="http://127.0.0.1:5000", portal_endpoints=["127.0.0.1:3260"]
        )
    )
    doc = await api.config()
    doc["gateways"][GW]["api_endpoint"] = "http://192.0.2.1:5000"  # a stale export
    doc["gateways"]["gw-gone"] = {"active_luns": 0}
    await _put_config(api, doc)
    gws = (await api.config())["gateways"]
    assert gws[GW]["api_endpoint"] == "http://127.0.0.1:5000"
    assert gws[GW]["portal_endpoints"] == ["127.0.0.1:3260"]
    assert "gw-gone" in gws
    # A document without this gateway in 'gateways' still keeps its registration.
    doc.pop("gateways")
    await _put_config(api, doc)
    assert (await api.config())["gateways"][GW]["api_endpoint"] == "http://127.0.0.1:5000"


async def test_import_refuses_bad_documents_and_writes_nothing(api: Api) -> None:
    await api.seed(client=False)
    before = await api.config()

    body = await api.put("/api/config", 400)
    assert "'config' is required" in body["message"]
    body = await api.put("/api/config", 400, config="{not json")
    assert "not valid JSON" in body["message"] and "line 1" in body["message"]
    body = await _put_config(api, ["a", "list"], 400)
    assert "JSON object" in body["message"]
    body = await _put_config(api, {**before, "version": 12}, 400)
    assert "version" in body["message"] and "nothing was changed" in body["message"]
    broken = json.loads(json.dumps(before))
    broken["targets"][T]["disks"]["rbd/missing"] = {"lun_id": 1}
    body = await _put_config(api, broken, 400)
    assert "rbd/missing" in body["message"]
    broken = json.loads(json.dumps(before))
    broken["targets"][T]["clients"]["iqn.1994-05.com.example:c"] = {
        "auth": {"username": "short", "password": "x"}, "luns": {}, "group_name": "",
    }  # fmt: skip
    body = await _put_config(api, broken, 400)
    assert "username" in body["message"]
    assert (await api.config()) == before


async def test_import_accepts_json_body_and_identical_document_is_a_no_op(api: Api) -> None:
    await api.seed(disk=False, client=False)
    doc = await api.config()
    resp = await api.client.put("/api/config", json={"config": doc})
    assert resp.status_code == 200, resp.text
    assert resp.json()["epoch"] == doc["epoch"]  # nothing changed, nothing written
    assert await api.config() == doc


async def test_import_needs_credentials(api: Api) -> None:
    doc = await api.config()
    resp = await api.client.put("/api/config", data={"config": json.dumps(doc)}, auth=None)
    assert resp.status_code == 401
