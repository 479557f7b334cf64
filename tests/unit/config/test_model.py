"""GatewayConfig: parsing the ceph-iscsi shaped document, validation messages, runtime helpers."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from iscsigw.config.model import (
    Chap,
    GatewayConfig,
    PortalAddress,
    TargetConfig,
)
from iscsigw.errors import ConfigError

IQN = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
C1 = "iqn.1994-05.com.redhat:rh7-client"
C2 = "iqn.1994-05.com.redhat:client2"
C3 = "iqn.1994-05.com.redhat:client3"
WWN1 = "6f8b2a7e-1c1d-4b5e-9f0a-0123456789ab"
WWN2 = "6f8b2a7e-1c1d-4b5e-9f0a-0123456789ac"


def auth(user: str = "", pw: str = "", **kw: Any) -> dict[str, Any]:
    return {
        "username": user,
        "password": pw,
        "password_encryption_enabled": False,
        "mutual_username": kw.get("mu", ""),
        "mutual_password": kw.get("mp", ""),
        "mutual_password_encryption_enabled": False,
    }


def sample() -> dict[str, Any]:
    """A ceph-iscsi v11 document (keys we do not model included) plus our extensions."""
    return {
        "version": 11,
        "epoch": 17,
        "created": "2024/01/10 09:00:00",
        "updated": "2024/01/10 09:30:12",
        "discovery_auth": auth(),
        "gateways": {
            "gw1.example.com": {"active_luns": 1, "created": "x", "updated": "y"},
            "gw2.example.com": {"active_luns": 0},
        },
        "disks": {
            "rbd/disk_1": {
                "pool": "rbd",
                "image": "disk_1",
                "pool_id": 2,
                "backstore": "user:rbd",
                "backstore_object_name": "rbd.disk_1",
                "wwn": WWN1,
                "owner": "gw1.example.com",
                "allocating_host": "gw1.example.com",
                "controls": {"max_data_area_mb": 128},
            },
            "rbd/disk_2": {
                "pool": "rbd",
                "image": "disk_2",
                "backstore": "rbd",
                "wwn": WWN2,
                "owner": "gw2.example.com",
                "controls": {},
            },
            "local/scratch": {"backstore": "file", "size": "10G", "controls": {}},
        },
        "targets": {
            IQN: {
                "acl_enabled": True,
                "controls": {"cmdsn_depth": 64, "immediate_data": "no"},
                "auth": auth(),
                "ip_list": ["192.168.122.69", "192.168.122.14"],
                "portals": {
                    "gw1.example.com": {
                        "portal_ip_addresses": ["192.168.122.69"],
                        "gateway_ip_list": ["192.168.122.69", "192.168.122.14"],
                        "inactive_portal_ips": ["192.168.122.14"],
                        "tpgs": 2,
                    },
                    "gw2.example.com": {
                        "portal_ip_addresses": ["192.168.122.14", "[fd00::14]:3261"],
                        "portal_port": 3260,
                    },
                },
                "disks": {"rbd/disk_1": {"lun_id": 0}, "rbd/disk_2": {"lun_id": 1}},
                "clients": {
                    C1: {
                        "auth": auth("myiscsiusername", "myiscsipasswd"),
                        "luns": {"rbd/disk_1": {"lun_id": 0}},
                        "group_name": "",
                    },
                    C2: {"auth": auth(), "luns": {}, "group_name": "group1"},
                },
                "groups": {"group1": {"members": [C2], "disks": {"rbd/disk_2": {"lun_id": 1}}}},
                "created": "2024/01/10 09:00:00",
            }
        },
    }


def test_parse_ceph_shaped_document() -> None:
    cfg = GatewayConfig.from_dict(sample())
    assert cfg.epoch == 17 and cfg.version == 11
    assert set(cfg.gateways) == {"gw1.example.com", "gw2.example.com"}
    d1 = cfg.disks["rbd/disk_1"]
    assert (d1.key, d1.backstore, d1.size, d1.wwn) == ("rbd/disk_1", "rbd", 0, WWN1)
    assert d1.control("max_data_area_mb") == 128 and d1.control("hw_max_sectors") == 1024
    assert cfg.disks["local/scratch"].size == 10 << 30
    assert cfg.disks["local/scratch"].file_path("/data") == Path("/data/local/scratch")
    t = cfg.targets[IQN]
    assert t.control("cmdsn_depth") == 64 and t.control("immediate_data") is False
    assert t.control("max_burst_length") == 524288
    assert t.auth_required  # default on
    assert cfg.target(IQN.upper()) is t
    assert cfg.target_of_disk("rbd/disk_2") is t and cfg.target_of_disk("local/scratch") is None
    assert [x.iqn for x in cfg.targets_on("gw2.example.com")] == [IQN]
    assert cfg.targets_on("gw9") == []


def test_tpgs_and_portals_for_sendtargets() -> None:
    t = GatewayConfig.from_dict(sample()).targets[IQN]
    # no stored tpg: derived from the order of the portals (as ceph-iscsi's ip_list order)
    assert t.tpg_for("gw1.example.com") == 1
    assert t.tpg_for("gw2.example.com") == 2
    assert t.tpg_for("gw3.example.com") is None
    assert t.all_portals() == [
        PortalAddress("192.168.122.69", 3260, 1, "gw1.example.com"),
        PortalAddress("192.168.122.14", 3260, 2, "gw2.example.com"),
        PortalAddress("fd00::14", 3261, 2, "gw2.example.com"),
    ]
    assert [str(p) for p in t.all_portals()][1:] == ["192.168.122.14:3260,2", "[fd00::14]:3261,2"]
    assert t.portals["gw2.example.com"].ip_addresses == ("192.168.122.14", "fd00::14")


def test_stored_tpg_wins_over_order() -> None:
    doc = sample()
    portals = doc["targets"][IQN]["portals"]
    portals["gw1.example.com"]["tpg"] = 7
    portals["gw2.example.com"]["tpg"] = 3
    t = GatewayConfig.from_dict(doc).targets[IQN]
    assert (t.tpg_for("gw1.example.com"), t.tpg_for("gw2.example.com")) == (7, 3)
    assert [p.tpg for p in t.all_portals()] == [3, 3, 7]


def test_lun_masking_with_acl() -> None:
    t = GatewayConfig.from_dict(sample()).targets[IQN]
    assert t.luns_for(C1) == {0: "rbd/disk_1"}
    assert t.luns_for(C1.upper()) == {0: "rbd/disk_1"}  # initiator names ignore case
    assert t.luns_for(C2) == {1: "rbd/disk_2"}  # through its host group
    assert t.luns_for(C3) == {}
    assert t.may_login(C1) and not t.may_login(C3)


def test_lun_masking_without_acl() -> None:
    doc = sample()
    tgt = doc["targets"][IQN]
    tgt["acl_enabled"] = False
    t = GatewayConfig.from_dict(doc).targets[IQN]
    for who in (C1, C2, C3):
        assert t.luns_for(who) == {0: "rbd/disk_1", 1: "rbd/disk_2"}
        assert t.may_login(who)


def test_client_lun_wins_over_group_for_same_disk() -> None:
    doc = sample()
    doc["targets"][IQN]["clients"][C2]["luns"] = {"rbd/disk_2": {"lun_id": 5}}
    t = GatewayConfig.from_dict(doc).targets[IQN]
    assert t.luns_for(C2) == {5: "rbd/disk_2"}


def test_chap_resolution() -> None:
    doc = sample()
    doc["targets"][IQN]["auth"] = auth("targetuser", "targetpasswd")
    t = GatewayConfig.from_dict(doc).targets[IQN]
    c1 = t.chap_for(C1)
    assert c1 is not None and c1.username == "myiscsiusername"  # client overrides
    c2 = t.chap_for(C2)
    assert c2 is not None and c2.username == "targetuser"  # falls back to the target
    t0 = GatewayConfig.from_dict(sample()).targets[IQN]
    assert t0.chap_for(C2) is None  # no CHAP anywhere for this initiator


def test_chap_repr_hides_secrets() -> None:
    chap = Chap("someuser1", "secretpass12", "mutualuser", "mutualsecret")
    assert "secretpass12" not in repr(chap) and "mutualsecret" not in repr(chap)
    assert chap.enabled and chap.mutual and not Chap().enabled


def test_roundtrip_keeps_unknown_keys() -> None:
    doc = sample()
    cfg = GatewayConfig.from_dict(doc)
    out = cfg.to_dict()
    json.dumps(out)  # JSON-serialisable
    assert out["disks"]["rbd/disk_1"]["pool_id"] == 2
    assert out["disks"]["rbd/disk_1"]["backstore_object_name"] == "rbd.disk_1"
    assert out["targets"][IQN]["ip_list"] == ["192.168.122.69", "192.168.122.14"]
    assert out["targets"][IQN]["portals"]["gw1.example.com"]["tpgs"] == 2
    assert out["targets"][IQN]["portals"]["gw2.example.com"]["portal_ip_addresses"] == [
        "192.168.122.14",
        "[fd00::14]:3261",
    ]
    assert out["gateways"]["gw1.example.com"] == {"active_luns": 1, "created": "x", "updated": "y"}
    assert GatewayConfig.from_dict(out) == cfg
    assert GatewayConfig.from_dict(out).to_dict() == out


def test_empty_document() -> None:
    cfg = GatewayConfig.from_dict(GatewayConfig.empty_dict())
    assert cfg == GatewayConfig.empty()
    assert cfg.targets == {} and cfg.epoch == 0


def edit(path: list[str], value: Any) -> dict[str, Any]:
    doc = sample()
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


DELETE = object()
T = ["targets", IQN]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["version"], 10, r"config.version 10 is not supported; expected 11"),
        (["version"], DELETE, r"config.version is missing"),
        (["epoch"], -1, "must not be negative"),
        (["epoch"], "3", r"config.epoch must be an integer"),
        (["disks", "rbd/disk_1", "backstore"], "user:glfs", r"disks\['rbd/disk_1'\].backstore"),
        (["disks", "rbd/disk_1", "backstore"], DELETE, r"backstore is missing"),
        (["disks", "rbd/disk_1", "pool"], "other", "do not match the key"),
        (["disks", "rbd/disk_1", "wwn"], "nope", r"disks\['rbd/disk_1'\]: wwn 'nope' is not a UUID"),
        (["disks", "rbd/disk_2", "wwn"], WWN1, r"disks\['rbd/disk_2'\].wwn is the same as"),
        (["disks", "rbd/disk_1", "controls"], {"bogus": 1}, "unknown control 'bogus'"),
        (["disks", "rbd/disk_1", "controls"], {"hw_max_sectors": 9000}, "between 1 and 8192"),
        (["disks", "local/scratch", "size"], DELETE, r"size is required for a file disk"),
        (["disks", "local/scratch", "size"], 1000, "not a multiple of 512"),
        (["disks", "local/scratch", "block_size"], 1024, "must be 512 or 4096"),
        (["disks", "bad key"], {"backstore": "file", "size": 512}, "pool/image"),
        (["disks"], [], "disks must be a JSON object, not list"),
        (["discovery_auth"], auth("short", "password1234"), r"discovery_auth: CHAP username"),
        ([*T, "acl_enabled"], "yes", r"acl_enabled must be true or false"),
        ([*T, "auth_required"], 0, r"auth_required must be true or false"),
        ([*T, "auth"], auth("targetuser", "bad"), r"\.auth: CHAP password must be 12 to 16"),
        ([*T, "auth"], {**auth("targetuser", "targetpasswd"), "password_encryption_enabled": True},
         "encrypted CHAP secrets are not supported"),
        ([*T, "controls"], {"cmdsn_depth": 0}, r"controls\['cmdsn_depth'\]: 0 must be between 1 and 512"),
        ([*T, "controls"], {"initial_r2t": "maybe"}, "must be yes or no"),
        ([*T, "portals", "gw1.example.com", "portal_ip_addresses"], [], "non-empty list"),
        ([*T, "portals", "gw1.example.com", "portal_ip_addresses"], ["1.2.3"], r"portal_ip_addresses\[0\]"),
        ([*T, "portals", "gw1.example.com", "portal_ip_addresses"], ["192.168.122.14"], "is listed for both"),
        ([*T, "portals", "gw1.example.com", "portal_port"], 70000, "port 70000"),
        ([*T, "portals", "gw1.example.com", "tpg"], 2, "both use tpg 2"),
        ([*T, "portals", "gw1.example.com", "tpg"], 0, "between 1 and 65535"),
        ([*T, "disks", "rbd/disk_9"], {"lun_id": 4}, r"'rbd/disk_9' is not defined in disks"),
        ([*T, "disks", "rbd/disk_2"], {"lun_id": 0}, "LUN 0 is used by both"),
        ([*T, "disks", "rbd/disk_2"], {"lun_id": 256}, "between 0 and 255"),
        ([*T, "disks", "rbd/disk_2"], {}, r"lun_id is missing"),
        ([*T, "clients", "not-an-iqn"], {}, r"clients\['not-an-iqn'\]"),
        ([*T, "clients", C1, "luns"], {"local/scratch": {"lun_id": 3}}, "not mapped to the target"),
        ([*T, "clients", C1, "group_name"], "nogroup", "no group 'nogroup'"),
        ([*T, "clients", C1, "luns"], {"rbd/disk_1": {"lun_id": 1}, "rbd/disk_2": {"lun_id": 1}},
         "LUN 1 is used by both"),
        ([*T, "groups", "group1", "members"], [C1], "has group_name ''"),
        ([*T, "groups", "group1", "members"], [C3], "is not a client of this target"),
        ([*T, "groups", "bad group!"], {}, "group name"),
        ([*T, "groups", "group1", "disks"], {"local/scratch": {"lun_id": 2}}, "not mapped to the target"),
    ],
)  # fmt: skip
def test_validation_says_what_to_fix(path: list[str], value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GatewayConfig.from_dict(edit(path, value))


def test_group_lun_clash_is_refused() -> None:
    doc = sample()
    doc["targets"][IQN]["clients"][C2]["luns"] = {"rbd/disk_1": {"lun_id": 1}}
    with pytest.raises(ConfigError, match="LUN 1 maps to 'rbd/disk_1' for the client"):
        GatewayConfig.from_dict(doc)


def test_a_disk_belongs_to_one_target() -> None:
    doc = sample()
    doc["targets"]["iqn.2026-11.io.iscsigw:other"] = {"disks": {"rbd/disk_1": {"lun_id": 0}}}
    with pytest.raises(ConfigError, match="already mapped to"):
        GatewayConfig.from_dict(doc)


def test_target_names_are_case_insensitive() -> None:
    doc = sample()
    doc["targets"][IQN.upper()] = copy.deepcopy(doc["targets"][IQN])
    doc["targets"][IQN.upper()]["disks"] = {}
    doc["targets"][IQN.upper()]["clients"] = {}
    doc["targets"][IQN.upper()]["groups"] = {}
    doc["targets"][IQN.upper()]["portals"] = {}
    with pytest.raises(ConfigError, match="listed twice"):
        GatewayConfig.from_dict(doc)


def test_open_target_minimal() -> None:
    t = TargetConfig.from_dict(
        "iqn.2026-11.io.x:open", {"acl_enabled": False, "auth_required": False}, "t"
    )
    assert not t.auth_required and t.chap_for(C1) is None and t.luns_for(C1) == {}
    assert t.all_portals() == []


def test_disk_limit() -> None:
    doc = sample()
    for i in range(254):
        doc["disks"][f"p/d{i}"] = {"backstore": "memory", "size": 512}
    with pytest.raises(ConfigError, match="257 disks exceed the limit of 256"):
        GatewayConfig.from_dict(doc)
