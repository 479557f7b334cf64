"""Name and value validators: good values pass (normalised), bad ones say what is wrong."""

from __future__ import annotations

import pytest

from iscsigw.config import names
from iscsigw.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("iqn.2026-11.io.iscsigw:demo", "iqn.2026-11.io.iscsigw:demo"),
        ("iqn.1994-05.com.redhat:rh7-client", "iqn.1994-05.com.redhat:rh7-client"),
        (
            "iqn.1991-05.com.microsoft:Host.Example.COM",
            "iqn.1991-05.com.microsoft:host.example.com",
        ),
        ("IQN.2003-01.org.linux-iscsi.host.x8664:sn.f7a2e5f3b1c4", None),
        ("iqn.2001-04.com.example", None),  # no ':' part is legal
        ("iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw", None),
        ("eui.02004567A425678D", "eui.02004567a425678d"),
        ("naa.52004567BA64678D", "naa.52004567ba64678d"),
        ("naa.62004567BA64678D0123456789ABCDEF", "naa.62004567ba64678d0123456789abcdef"),
    ],
)
def test_good_iscsi_names(name: str, normalised: str | None) -> None:
    assert names.normalize_iscsi_name(name) == (normalised or name.lower())
    assert names.is_iscsi_name(name)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "required"),
        ("iqn.2026-13.io.x:y", "month 13"),
        ("iqn.2026-00.io.x:y", "month 00"),
        ("iqn.26-11.io.x:y", "not a valid IQN"),
        ("iqn.2026-11:y", "not a valid IQN"),
        ("iqn.2026-11.-io.x:y", "not a valid IQN"),
        ("iqn.2026-11.io..x:y", "not a valid IQN"),
        ("iqn.2026-11.io_x.y:z", "not a valid IQN"),
        ("iqn.2026-11.io.x:has space", "spaces"),
        ("iqn.2026-11.io.x:tab\there", "spaces"),
        ("eui.0123", "16 hex"),
        ("eui.02004567A425678G", "16 hex"),
        ("naa.0123456789abcdef0", "16 or 32 hex"),
        ("wwn.0123456789abcdef", "must start with iqn., eui. or naa."),
        ("iqn.2026-11.io.x:" + "a" * 210, "longer than 223 bytes"),
    ],
)
def test_bad_iscsi_names(name: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        names.normalize_iscsi_name(name, "targets")
    assert not names.is_iscsi_name(name)


def test_iscsi_name_length_counts_bytes() -> None:
    base = "iqn.2026-11.io.x:"
    ok = base + "a" * (223 - len(base))
    assert names.normalize_iscsi_name(ok) == ok
    with pytest.raises(ConfigError, match="223 bytes"):
        names.normalize_iscsi_name(base + "é" * (223 - len(base)))  # 2 bytes each


def test_error_names_the_location() -> None:
    with pytest.raises(ConfigError, match=r"^targets\['x'\]: 'x' is not an iSCSI name"):
        names.normalize_iscsi_name("x", "targets['x']")


@pytest.mark.parametrize(
    "creds",
    [
        ("", "", "", ""),
        ("myiscsiusername", "myiscsipassword", "", ""),
        ("user.name:x@y_z-1", "p@ss-w_rd/12", "", ""),
        ("a\\backslash", "123456789012", "", ""),  # ceph-iscsi's regex admits '\'
        ("myiscsiusername", "myiscsipassword", "mutualusername", "mutualpassword1"),
        ("ünïcödeuser", "ünïcödepasswd", "", ""),  # \w is Unicode in ceph-iscsi too
    ],
)
def test_good_chap(creds: tuple[str, str, str, str]) -> None:
    names.validate_chap(*creds)


@pytest.mark.parametrize(
    ("creds", "reason"),
    [
        (("user1234", "", "", ""), "needs a password"),
        (("", "password1234", "", ""), "password needs a username"),
        (("", "", "mutualuser", "mutualpass12"), "one-way CHAP first"),
        (("user1234", "password1234", "mutualuser", ""), "both mutual_username and mutual"),
        (("user1234", "password1234", "", "mutualpass12"), "one-way CHAP first|both mutual"),
        (
            ("short", "password1234", "", ""),
            r"username must be 8 to 64 characters long \(it has 5\)",
        ),
        (("u" * 65, "password1234", "", ""), "username must be 8 to 64"),
        (("user1234", "short", "", ""), "password must be 12 to 16"),
        (("user1234", "p" * 17, "", ""), "password must be 12 to 16"),
        (("user 1234", "password1234", "", ""), "username may only contain"),
        (("user1234", "password!234", "", ""), "password may only contain letters, digits"),
        (("user1234", "pass%word1234", "", ""), "password may only contain"),
        (("user1234", "password1234", "mutual/user", "mutualpass12"), "mutual_username may only"),
        (("user1234", "password1234", "mutualuser", "mutual&pass1"), "mutual_password may only"),
    ],
)
def test_bad_chap_names_the_rule(creds: tuple[str, str, str, str], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        names.validate_chap(*creds)


def test_chap_length_error_comes_before_charset_error() -> None:
    with pytest.raises(ConfigError, match="12 to 16"):
        names.validate_chap("user1234", "bad!")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("100G", 100 << 30),
        ("512M", 512 << 20),
        ("2T", 2 << 40),
        ("1024K", 1 << 20),
        ("4096", 4096),
        ("10g", 10 << 30),
        (" 1 GiB ", 1 << 30),
        ("3MB", 3 << 20),
        (8192, 8192),
        ("0", 0),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert names.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "1.5G", "-1", "10X", "ten", "1 G B", -5, True])
def test_parse_size_rejects(text: str | int) -> None:
    with pytest.raises(ConfigError):
        names.parse_size(text)


@pytest.mark.parametrize("n", [0, 1, 512, 1 << 20, 3 << 30, (1 << 40) + 4096])
def test_format_size_roundtrip(n: int) -> None:
    assert names.parse_size(names.format_size(n)) == n
    assert names.format_size(1 << 30) == "1G"


def test_disk_keys() -> None:
    assert names.split_disk_key("rbd/disk_1") == ("rbd", "disk_1")
    assert names.split_disk_key("my-pool.a/img.v2") == ("my-pool.a", "img.v2")
    for bad, reason in [
        ("rbd", "pool/image"),
        ("a/b/c", "pool/image"),
        ("/img", "pool name is empty"),
        ("rbd/", "image name is empty"),
        ("../img", "not allowed"),
        ("rbd/..", "not allowed"),
        ("rbd/disk 1", "letters, digits"),
        ("rb@d/x", "letters, digits"),
    ]:
        with pytest.raises(ConfigError, match=reason):
            names.split_disk_key(bad)


def test_small_validators() -> None:
    assert names.validate_lun_id(0) == 0 and names.validate_lun_id(255) == 255
    for bad in (-1, 256, "1", True, None):
        with pytest.raises(ConfigError, match="lun_id"):
            names.validate_lun_id(bad)
    assert names.validate_ip("192.168.122.69") == "192.168.122.69"
    assert names.validate_ip("2001:DB8::0:1") == "2001:db8::1"
    for bad_ip in ("192.168.1", "host.example.com", "[::1]", "10.0.0.1:3260", 5):
        with pytest.raises(ConfigError):
            names.validate_ip(bad_ip)
    assert names.validate_port(3260) == 3260
    for bad_port in (0, 65536, "3260", False):
        with pytest.raises(ConfigError, match="port"):
            names.validate_port(bad_port)
    assert names.validate_gateway_name("gw1.example.com") == "gw1.example.com"
    for bad_gw in ("", "gw 1", "gw/1", "-gw", None):
        with pytest.raises(ConfigError, match="gateway name"):
            names.validate_gateway_name(bad_gw)
    uid = "6F8B2A7E-1C1D-4B5E-9F0A-0123456789AB"
    assert names.validate_wwn(uid) == uid.lower()
    with pytest.raises(ConfigError, match="not a UUID"):
        names.validate_wwn("serial-1234")
