"""How ``iscsigw serve`` sets up the API, and ``iscsigw config import/export``."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from iscsigw.api.server import start_api
from iscsigw.cli import main as cli
from iscsigw.cli.api_setup import api_options, demo_credentials, read_settings
from iscsigw.config.file_store import FileConfigStore
from iscsigw.config.settings import parse_settings
from iscsigw.errors import ConfigError

PORTALS = [("127.0.0.2", 3260)]


def test_default_password_is_refused_outside_demo(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="api_password is ceph-iscsi's default 'admin'"):
        api_options(None, ("127.0.0.1", 5000), False, tmp_path, PORTALS)
    cfg = parse_settings("[config]\napi_secure = false\n", tmp_path / "iscsi-gateway.cfg")
    with pytest.raises(ConfigError, match="default 'admin'"):
        api_options(cfg, None, False, tmp_path, PORTALS)


def test_no_cfg_no_api_no_demo_means_no_api(tmp_path: Path) -> None:
    settings, options = api_options(None, None, False, tmp_path, PORTALS)
    assert options is None and settings.minimum_gateways == 1 and not settings.api_secure


def test_demo_generates_shared_credentials_and_a_free_port(tmp_path: Path) -> None:
    settings, options = api_options(None, None, True, tmp_path, PORTALS)
    assert options is not None and options.print_url
    assert (options.host, options.port) == ("127.0.0.2", 0)
    assert settings.api_password != "admin" and len(settings.api_password) == 20
    assert demo_credentials(tmp_path) == (settings.api_user, settings.api_password)
    assert (tmp_path / "demo-api.json").stat().st_mode & 0o777 == 0o600


def test_cfg_sets_address_and_tls_files(tmp_path: Path) -> None:
    cfg_path = tmp_path / "iscsi-gateway.cfg"
    cfg_path.write_text("[config]\napi_user = ops\napi_password = s3cret\napi_port = 5001\n")
    settings = read_settings(cfg_path)
    assert settings is not None
    _, options = api_options(settings, None, False, tmp_path, PORTALS)
    assert options is not None
    assert (options.host, options.port) == ("::", 5001)
    assert options.certfile == tmp_path / "iscsi-gateway.crt"  # api_secure defaults to true
    _, options = api_options(settings, ("127.0.0.9", 6000), False, tmp_path, PORTALS)
    assert options is not None and (options.host, options.port) == ("127.0.0.9", 6000)


def test_missing_tls_files_are_a_clear_error(tmp_path: Path) -> None:
    async def go() -> None:
        await start_api(lambda *a: None, "127.0.0.1", 0, certfile=tmp_path / "iscsi-gateway.crt",
                        keyfile=tmp_path / "iscsi-gateway.key")  # fmt: skip

    with pytest.raises(ConfigError, match="api_secure is true but the TLS certificate"):
        asyncio.run(go())


def test_https_with_cfg_dir_cert(tmp_path: Path) -> None:
    crt, key = tmp_path / "iscsi-gateway.crt", tmp_path / "iscsi-gateway.key"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=localhost", "-keyout", str(key), "-out", str(crt)],
        capture_output=True,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate")

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def go() -> int:
        server = await start_api(app, "127.0.0.1", 0, certfile=crt, keyfile=key)
        try:
            assert server.url.startswith("https://")
            async with httpx.AsyncClient(verify=False, trust_env=False) as c:
                return (await c.get(f"{server.url}/api/_ping")).status_code
        finally:
            await server.stop()

    assert asyncio.run(go()) == 200


def test_busy_api_port_is_a_config_error() -> None:
    async def go() -> None:
        first = await start_api(lambda *a: None, "127.0.0.1", 0)
        try:
            await start_api(lambda *a: None, "127.0.0.1", first.port)
        finally:
            await first.stop()

    with pytest.raises(ConfigError, match="already in use"):
        asyncio.run(go())


def test_config_import_export_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    doc = {
        "version": 11, "epoch": 17, "created": "2024/01/10 09:00:00", "updated": "x",
        "discovery_auth": {}, "gateways": {"gw1.example.com": {"active_luns": 1}},
        "disks": {"rbd/disk_1": {"pool": "rbd", "image": "disk_1", "backstore": "user:rbd",
                                 "wwn": "9889fde8-bf2e-4267-8e1e-ef84ecb91337",
                                 "owner": "gw1.example.com", "pool_id": 2, "controls": {}}},
        "targets": {"iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw": {
            "acl_enabled": True, "controls": {"cmdsn_depth": 64}, "auth": {},
            "ip_list": ["192.168.122.69"],
            "portals": {"gw1.example.com": {"portal_ip_addresses": ["192.168.122.69"],
                                            "gateway_ip_list": ["192.168.122.69"],
                                            "inactive_portal_ips": [], "tpgs": 1}},
            "disks": {"rbd/disk_1": {"lun_id": 0}},
            "clients": {"iqn.1994-05.com.redhat:rh7-client": {
                "auth": {}, "luns": {"rbd/disk_1": {"lun_id": 0}}, "group_name": ""}},
            "groups": {}}},
    }  # fmt: skip
    src = tmp_path / "gateway.conf.json"
    src.write_text(json.dumps(doc))
    assert cli.main(["config", "import", "--data-dir", str(data), str(src)]) == 0
    out, err = capsys.readouterr()
    assert "(epoch 1)" in out and "will be refused" in err
    stored, epoch = FileConfigStore(data / "gateway.conf").load()
    assert epoch == 1 and stored.disks["rbd/disk_1"].extra["pool_id"] == 2
    assert cli.main(["config", "export", "--data-dir", str(data)]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["targets"] == doc["targets"] and exported["epoch"] == 1
    # A refused document changes nothing.
    src.write_text(json.dumps({**doc, "version": 9}))
    assert cli.main(["config", "import", "--data-dir", str(data), str(src)]) == 2
    assert "nothing was imported" in capsys.readouterr().err
    assert FileConfigStore(data / "gateway.conf").load()[1] == 1
