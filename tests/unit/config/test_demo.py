"""seed_demo: a valid demo config, a sparse disk, stable credentials, idempotent reruns."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from iscsigw.config import demo
from iscsigw.config.demo import DEMO_DISK, DEMO_IQN, iscsi_url, seed_demo
from iscsigw.config.file_store import FileConfigStore
from iscsigw.config.names import validate_chap
from iscsigw.errors import ConfigError

# the same shape the integration harness parses
URL_RE = re.compile(
    r"^iscsi://(?P<user>[^%@/]+)%(?P<password>[^@/]+)@"
    r"(?P<host>[^/:]+|\[[^\]]+\]):(?P<port>\d+)/(?P<iqn>[^/]+)/(?P<lun>\d+)$"
)


def test_first_run_seeds_everything(tmp_path: Path) -> None:
    info = seed_demo(tmp_path, "gw1", [("127.0.0.1", 3260)])
    assert info.target_iqn == DEMO_IQN == "iqn.2026-11.io.iscsigw:demo"
    assert info.lun_id == 0
    assert re.fullmatch(r"demo-[0-9a-f]{8}", info.username)
    assert re.fullmatch(r"[A-Za-z0-9]{16}", info.password)
    validate_chap(info.username, info.password)
    m = URL_RE.match(info.url)
    assert m is not None, info.url
    assert m.groupdict() == {
        "user": info.username,
        "password": info.password,
        "host": "127.0.0.1",
        "port": "3260",
        "iqn": DEMO_IQN,
        "lun": "0",
    }

    cfg, epoch = FileConfigStore(tmp_path / "gateway.conf").load()
    assert epoch == 1
    disk = cfg.disks[DEMO_DISK]
    assert (disk.backstore, disk.size, disk.owner) == ("file", 1 << 30, "gw1")
    assert disk.wwn
    t = cfg.targets[DEMO_IQN]
    assert not t.acl_enabled and t.auth_required
    assert t.luns_for("iqn.1994-05.com.example:anyone") == {0: DEMO_DISK}
    chap = t.chap_for("iqn.1994-05.com.example:anyone")
    assert chap is not None and (chap.username, chap.password) == (info.username, info.password)
    assert [(p.ip, p.port, p.tpg) for p in t.all_portals()] == [("127.0.0.1", 3260, 1)]
    assert "gw1" in cfg.gateways

    path = tmp_path / "demo" / "disk0"
    st = os.stat(path)
    assert st.st_size == 1 << 30 and st.st_blocks * 512 < (1 << 20)  # sparse


def test_rerun_is_idempotent_and_keeps_credentials(tmp_path: Path) -> None:
    first = seed_demo(tmp_path, "gw1", [("127.0.0.1", 3260)])
    conf = tmp_path / "gateway.conf"
    text = conf.read_text()
    (tmp_path / "demo" / "disk0").write_bytes(b"keep me")  # data must survive a rerun
    again = seed_demo(tmp_path, "gw1", [("127.0.0.1", 3260)])
    assert again == first
    assert conf.read_text() == text  # nothing changed: not even the epoch
    assert (tmp_path / "demo" / "disk0").read_bytes() == b"keep me"


def test_new_portals_replace_this_gateways_old_ones(tmp_path: Path) -> None:
    first = seed_demo(tmp_path, "gw1", [("127.0.0.1", 3260)])
    again = seed_demo(tmp_path, "gw1", [("127.0.0.2", 3270), ("::1", 3271)])
    assert (again.username, again.password) == (first.username, first.password)
    assert again.url.endswith(f"@127.0.0.2:3270/{DEMO_IQN}/0")
    cfg, epoch = FileConfigStore(tmp_path / "gateway.conf").load()
    assert epoch == 2
    t = cfg.targets[DEMO_IQN]
    assert [(p.ip, p.port, p.tpg) for p in t.all_portals()] == [
        ("127.0.0.2", 3270, 1),
        ("::1", 3271, 1),
    ]
    raw = json.loads((tmp_path / "gateway.conf").read_text())
    portal = raw["targets"][DEMO_IQN]["portals"]["gw1"]
    assert portal == {
        "portal_ip_addresses": ["127.0.0.2", "[::1]:3271"],
        "portal_port": 3270,
        "tpg": 1,
    }


def test_second_gateway_gets_its_own_tpg(tmp_path: Path) -> None:
    a = seed_demo(tmp_path, "gw1", [("127.0.0.1", 3260)])
    b = seed_demo(tmp_path, "gw2", [("127.0.0.2", 3260)])
    assert (a.username, a.password) == (b.username, b.password)
    cfg, _ = FileConfigStore(tmp_path / "gateway.conf").load()
    t = cfg.targets[DEMO_IQN]
    assert (t.tpg_for("gw1"), t.tpg_for("gw2")) == (1, 2)
    assert cfg.disks[DEMO_DISK].owner == "gw1"


def test_existing_config_without_demo_target_gets_one(tmp_path: Path) -> None:
    store = FileConfigStore(tmp_path / "gateway.conf")

    def other(doc: dict[str, Any]) -> None:
        doc["targets"] = {"iqn.2026-11.io.example:other": {"acl_enabled": False}}

    store.commit(other)
    info = seed_demo(tmp_path, "gw1", [("127.0.0.1", 3260)])
    cfg, _ = store.load()
    assert set(cfg.targets) == {"iqn.2026-11.io.example:other", DEMO_IQN}
    assert info.username


def test_admin_changed_credentials_are_reused(tmp_path: Path) -> None:
    seed_demo(tmp_path, "gw1", [("127.0.0.1", 3260)])
    store = FileConfigStore(tmp_path / "gateway.conf")

    def rotate(doc: dict[str, Any]) -> None:
        doc["targets"][DEMO_IQN]["auth"].update(username="admin-chosen", password="Pa55word-_/x")

    store.commit(rotate)
    info = seed_demo(tmp_path, "gw1", [("127.0.0.1", 3260)])
    assert (info.username, info.password) == ("admin-chosen", "Pa55word-_/x")


def test_wildcard_portal_gives_loopback_url() -> None:
    assert (
        iscsi_url("0.0.0.0", 3260, DEMO_IQN, 0, "u", "p")
        == f"iscsi://u%p@127.0.0.1:3260/{DEMO_IQN}/0"
    )
    assert iscsi_url("::", 3261, DEMO_IQN, 0) == f"iscsi://[::1]:3261/{DEMO_IQN}/0"
    assert iscsi_url("fd00::1", 3260, DEMO_IQN, 2, "u", "p").startswith(
        "iscsi://u%p@[fd00::1]:3260/"
    )


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least one portal"):
        seed_demo(tmp_path, "gw1", [])
    with pytest.raises(ConfigError, match="not an IPv4 or IPv6"):
        seed_demo(tmp_path, "gw1", [("localhost", 3260)])
    with pytest.raises(ConfigError, match="gateway name"):
        seed_demo(tmp_path, "bad name", [("127.0.0.1", 3260)])
    assert not (tmp_path / "gateway.conf").exists()


def test_generated_passwords_always_valid() -> None:
    for _ in range(200):
        validate_chap(demo.generate_username(), demo.generate_password())
    with pytest.raises(ValueError):
        demo.generate_password(20)
