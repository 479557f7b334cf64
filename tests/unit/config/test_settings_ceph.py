"""iscsi-gateway.cfg's Ceph side: store selection, the cluster connection, config:// values."""

from __future__ import annotations

from pathlib import Path

import pytest

from iscsigw.config.settings import CephConnection, load_settings, parse_settings
from iscsigw.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "rados"),
    [
        ("", False),
        ("[config]\ncluster_name = ceph\n", False),  # ceph-iscsi's sample cfg: still a file
        ("[config]\npool = iscsi\n", True),
        ("[config]\ngateway_conf = gw.conf\n", True),
        ("[config]\nceph_conf = /x/ceph.conf\n", True),
        ("[config]\nceph_config_dir = /x\n", True),
        ("[config]\nconfig_store = rados\n", True),
        ("[config]\npool = iscsi\nconfig_store = file\n", False),
    ],
)
def test_store_selection(text: str, rados: bool) -> None:
    assert parse_settings(text).uses_rados_store is rados


def test_connection_follows_ceph_iscsi_rules(tmp_path: Path) -> None:
    assert parse_settings("").ceph_connection() == CephConnection()  # $CEPH_CONF at connect
    s = parse_settings(f"[config]\ncluster_name = c2\nceph_config_dir = {tmp_path}\n")
    assert s.ceph_connection() == CephConnection(conf=f"{tmp_path}/c2.conf", cluster="c2")
    (tmp_path / "c2.client.iscsi.keyring").write_text("")
    s = parse_settings(
        f"[config]\ncluster_name = c2\nceph_config_dir = {tmp_path}\n"
        "cluster_client_name = client.iscsi\n"
    )
    conn = s.ceph_connection()
    assert conn.keyring == f"{tmp_path}/c2.client.iscsi.keyring"
    assert conn.options() == {"keyring": conn.keyring} and conn.client == "client.iscsi"
    s = parse_settings("[config]\nceph_conf = /etc/other.conf\ncluster_client_name = iscsi\n")
    assert s.ceph_connection() == CephConnection(conf="/etc/other.conf", client="client.iscsi")


def test_config_key_values_are_fetched_over_the_files_connection() -> None:
    asked: list[tuple[CephConnection, list[str]]] = []

    def resolve(conn: CephConnection, keys: list[str]) -> dict[str, str]:
        asked.append((conn, keys))
        return {"iscsi/pw": "s3cret", "iscsi/port": "5001", "iscsi/depth": "64"}

    s = parse_settings(
        "[config]\nceph_conf = /c/ceph.conf\napi_password = config://iscsi/pw\n"
        "api_port = config://iscsi/port\n[target]\ncmdsn_depth = config://iscsi/depth\n",
        resolve=resolve,
    )
    assert (s.api_password, s.api_port, s.target_control_default("cmdsn_depth")) == (
        "s3cret",
        5001,
        64,
    )
    assert asked == [
        (CephConnection(conf="/c/ceph.conf"), ["iscsi/depth", "iscsi/port", "iscsi/pw"])
    ]


def test_config_key_errors() -> None:
    def resolve(conn: CephConnection, keys: list[str]) -> dict[str, str]:
        return {"k": "not-a-number"}

    with pytest.raises(ConfigError, match=r"no config-key 'missing'"):
        parse_settings("[config]\napi_user = config://missing\n", resolve=resolve)
    with pytest.raises(ConfigError, match=r"api_port = 'not-a-number': must be an integer"):
        parse_settings("[config]\napi_port = config://k\n", resolve=resolve)
    with pytest.raises(ConfigError, match=r"cannot come from the cluster itself"):
        parse_settings("[config]\nceph_conf = config://k\n", resolve=resolve)
    with pytest.raises(ConfigError, match=r"'config://' values"):
        parse_settings("[config]\napi_password = config://k\n")


def test_load_settings_without_a_cluster_says_so(tmp_path: Path) -> None:
    cfg = tmp_path / "iscsi-gateway.cfg"
    cfg.write_text(
        f"[config]\nceph_conf = {tmp_path}/none.conf\napi_password = config://iscsi/pw\n"
    )
    with pytest.raises(ConfigError, match=r"iscsi-gateway\.cfg: cannot resolve") as info:
        load_settings(cfg)
    assert "none.conf" in str(info.value) or "bindings" in str(info.value)
