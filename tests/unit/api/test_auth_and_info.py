"""Auth (401/403), the route listing, OpenAPI, info routes, method/unknown-path errors."""

from __future__ import annotations

from typing import Any

from apikit import GW, TRUSTED, Api, ApiFactory, T, make_settings

from iscsigw.api.routes import ROUTES


async def test_no_credentials_is_401(api_factory: ApiFactory) -> None:
    api = await api_factory(auth=None)
    body = await api.get("/api/config", 401)
    assert body == {"message": "Missing credentials"}


async def test_wrong_credentials_is_401(api_factory: ApiFactory) -> None:
    api = await api_factory(auth=("admin", "wrong"))
    body = await api.get("/api/targets", 401)
    assert body["message"] == "username/password mismatch with the configuration file"


async def test_untrusted_ip_is_403_before_credentials(api_factory: ApiFactory) -> None:
    api = await api_factory(ip="10.1.2.3", auth=None)
    body = await api.get("/api/config", 403)
    assert body == {"message": "API access not available to 10.1.2.3"}


async def test_ipv4_mapped_source_is_unwrapped(api_factory: ApiFactory) -> None:
    api = await api_factory(ip="::ffff:10.1.2.3")
    body = await api.get("/api/targets", 403)
    assert body["message"] == "API access not available to 10.1.2.3"


async def test_trusted_ip_list_and_gateway_addresses_are_allowed(api_factory: ApiFactory) -> None:
    assert (await (await api_factory(ip=TRUSTED)).get("/api/targets")) == {"targets": []}
    local = await api_factory()
    await local.seed(disk=False, client=False)
    await local.put(f"/api/gateway/{T}/gw2.example.test", ip_address="192.0.2.7", skipchecks="1")
    remote = await api_factory(ip="192.0.2.7")
    assert (await remote.get("/api/targets"))["targets"] == [T]


async def test_sysinfo_needs_only_credentials(api_factory: ApiFactory) -> None:
    api = await api_factory(ip="10.1.2.3")
    assert (await api.get("/api/sysinfo/hostname")) == {"data": GW}
    assert len((await api.get("/api/sysinfo/checkconf"))["data"]) == 64
    assert (await api.get("/api/sysinfo/checkversions")) == {"data": "checks passed"}
    assert isinstance((await api.get("/api/sysinfo/ip_addresses"))["data"], list)
    assert (await api.get("/api/sysinfo/nope", 404))["message"] == "Unknown /sysinfo query"
    assert await (await api_factory(ip="10.1.2.3", auth=None)).get("/api/sysinfo/hostname", 401)


async def test_api_index_lists_public_routes_without_auth(api_factory: ApiFactory) -> None:
    api = await api_factory(ip="10.1.2.3", auth=None)
    body = await api.get("/api")
    urls = [entry[0].split(" : ")[0] for entry in body["api"]]
    assert "/api/disk/<pool>/<image>" in urls
    assert "/api/target/<target_iqn>" in urls
    assert not [u for u in urls if "/_" in u]
    public = {r.path for r in ROUTES if not r.internal}
    assert len(urls) == len(public)
    methods = dict((e[0].split(" : ")[0], e[1]) for e in body["api"])
    assert methods["/api/disk/<pool>/<image>"] == "Methods: GET,PUT,DELETE"


async def test_openapi_describes_every_route(api: Api) -> None:
    spec = await api.get("/openapi.json")
    assert spec["openapi"].startswith("3.")
    for route in ROUTES:
        for method in route.methods:
            assert method.lower() in spec["paths"][route.path], (route.path, method)


async def test_ping_status_settings(api: Api) -> None:
    assert (await api.get("/api/_ping")) == {"message": "pong"}
    status = await api.get("/api/_status")
    assert status["gateway"] == GW and status["applied_epoch"] >= 0
    settings = await api.get("/api/settings")
    assert settings["api_version"] == 2
    assert settings["config"] == {"minimum_gateways": 1}
    assert settings["target_default_controls"]["cmdsn_depth"] == 128
    assert settings["target_controls_limits"]["cmdsn_depth"] == {
        "min": 1,
        "max": 512,
        "type": "int",
    }
    assert settings["required_rbd_features"]["user:rbd"] == 4
    assert "user:rbd" in settings["disk_default_controls"]
    assert "user:rbd" in settings["unsupported_rbd_features"]


async def test_settings_reflect_target_defaults(api_factory: ApiFactory) -> None:
    settings = make_settings(target_defaults={"cmdsn_depth": 64}, minimum_gateways=2)
    api = await api_factory(settings=settings)
    body = await api.get("/api/settings")
    assert body["target_default_controls"]["cmdsn_depth"] == 64
    assert body["config"]["minimum_gateways"] == 2


async def test_config_shape_and_decrypt_passwords(api: Api) -> None:
    await api.seed()
    cfg = await api.get("/api/config", decrypt_passwords="True")
    assert cfg["version"] == 11
    assert set(cfg) >= {"discovery_auth", "disks", "gateways", "targets", "epoch"}
    t = cfg["targets"][T]
    assert t["portals"][GW]["portal_ip_addresses"] == ["127.0.0.1"]
    assert t["portals"][GW]["gateway_ip_list"] == ["127.0.0.1"]
    assert t["disks"] == {"rbd/disk_1": {"lun_id": 0}}
    assert cfg["disks"]["rbd/disk_1"]["owner"] == GW
    assert cfg["gateways"][GW]["active_luns"] == 1
    assert (await api.client.get("/api/config?decrypt_passwords=maybe")).status_code == 400


async def test_session_counts(api: Api) -> None:
    await api.seed()
    assert (await api.get(f"/api/targetinfo/{T}")) == {"num_sessions": 0}
    assert (await api.get(f"/api/_targetinfo/{T}")) == {"num_sessions": 0}
    assert (await api.get("/api/gatewayinfo")) == {"num_sessions": 0}
    body = await api.get("/api/targetinfo/iqn.2003-01.org.example:none", 404)
    assert "does not exist" in body["message"]


async def test_gatewayinfo_404_when_not_in_config(api: Api) -> None:
    body = await api.get("/api/gatewayinfo", 404)
    assert GW in body["message"]


async def test_wrong_method_and_unknown_path(api: Api) -> None:
    body = await api.call("POST", f"/api/target/{T}", 405)
    assert "PUT, DELETE" in body["message"]
    assert (await api.get("/api/nothing-here", 404))["message"] == "Not found"


async def test_get_tolerates_a_form_body_and_json_bodies_work(api: Api) -> None:
    await api.seed()
    resp = await api.client.request("GET", "/api/disks", content=b"config=yes",
                                    headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert resp.status_code == 200 and "rbd/disk_1" in resp.json()["disks"]
    assert isinstance(resp.json()["disks"], dict)
    resp = await api.client.put(f"/api/target/{T}", json={"mode": "reconfigure",
                                                           "controls": {"cmdsn_depth": 64}})  # fmt: skip
    assert resp.status_code == 200, resp.text
    cfg: dict[str, Any] = await api.config()
    assert cfg["targets"][T]["controls"] == {"cmdsn_depth": 64}
