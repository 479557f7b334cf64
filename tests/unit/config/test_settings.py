"""iscsi-gateway.cfg: ceph-iscsi defaults, ranges, unknown keys, refused values."""

from __future__ import annotations

from pathlib import Path

import pytest

from iscsigw.config.settings import SETTINGS, GatewaySettings, load_settings, parse_settings
from iscsigw.errors import ConfigError

SEED_CFG = """\
[config]
cluster_name = ceph
gateway_keyring = ceph.client.admin.keyring
api_secure = false
# api_port = 5001
trusted_ip_list = 192.168.219.128,192.168.219.129
"""


def test_defaults_are_ceph_iscsi_3_5() -> None:
    s = parse_settings("")
    assert (s.api_host, s.api_port, s.api_secure) == ("::", 5000, True)
    assert (s.api_user, s.api_password) == ("admin", "admin")
    assert s.minimum_gateways == 2 and s.trusted_ip_list == ()
    assert s.prometheus_port == 9287 and s.logger_level == 10
    assert s.target_control_default("cmdsn_depth") == 128
    assert s.disk_control_default("max_data_area_mb") == 8
    for row in SETTINGS:
        assert getattr(GatewaySettings(), row.name) == row.default, row.name


def test_seed_file_parses_and_reports_unknown_keys() -> None:
    s = parse_settings(SEED_CFG)
    assert s.api_secure is False
    assert s.trusted_ip_list == ("192.168.219.128", "192.168.219.129")
    assert s.unknown == ("[config] gateway_keyring",)
    assert "api_secure" in s.explicit and "api_port" not in s.explicit


def test_target_section_sets_control_defaults() -> None:
    s = parse_settings("[target]\ncmdsn_depth = 64\nhw_max_sectors = 2048\nbogus = 1\n[x]\n")
    assert s.target_defaults == {"cmdsn_depth": 64}
    assert s.disk_defaults == {"hw_max_sectors": 2048}
    assert s.unknown == ("[target] bogus", "[x]")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[config]\napi_port = 70000\n", "api_port = 70000: must be between 1 and 65535"),
        ("[config]\napi_port = http\n", "api_port = 'http': must be an integer"),
        ("[config]\napi_secure = maybe\n", "api_secure = 'maybe': must be true or false"),
        ("[config]\nminimum_gateways = 0\n", "must be between 1 and 9999"),
        ("[config]\nalua_failover_type = sideways\n", "must be one of implicit, explicit"),
        ("[config]\ntrusted_ip_list = 10.0.0.1,gw2\n", "'gw2' is not an IPv4 or IPv6 address"),
        ("[config]\napi_password = config://iscsi/pw\n", "'config://' values"),
        ("[target]\ncmdsn_depth = 0\n", "between 1 and 512"),
        ("api_port = 1\n", "not a valid INI file"),
    ],
)
def test_bad_values_name_key_and_rule(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"iscsi-gateway\.cfg") as info:
        parse_settings(text)
    assert message in str(info.value)


def test_load_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "iscsi-gateway.cfg"
    path.write_text("[config]\napi_port = 5001\napi_password = s3cret\n")
    s = load_settings(path)
    assert s.api_port == 5001 and s.config_dir == tmp_path
    assert "s3cret" not in repr(s)
    with pytest.raises(ConfigError, match="no such settings file"):
        load_settings(tmp_path / "missing.cfg")


def test_checkconf_hash_ignores_per_host_settings() -> None:
    a = parse_settings("[config]\nlogger_level = 20\n")
    b = parse_settings("[config]\nlogger_level = 30\n")
    c = parse_settings("[config]\napi_port = 5001\n")
    assert a.checkconf_hash() == b.checkconf_hash() != c.checkconf_hash()
