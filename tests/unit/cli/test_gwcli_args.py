"""gwcli argument parsing: both ceph-iscsi spellings, the API URL and iscsi-gateway.cfg."""

from __future__ import annotations

from pathlib import Path

import pytest

from iscsigw.cli.gwcli.args import (
    ArgError,
    Chap,
    normalize_disk,
    normalize_iqn,
    normalize_size,
    parse_chap,
    parse_disk_spec,
    parse_flag,
    parse_ip_list,
    parse_lun_id,
)
from iscsigw.cli.gwcli.client import (
    GwcliConfigError,
    encode_form,
    parse_api_url,
    read_gateway_cfg,
)

USER = "iqn.1994-05.com.redhat:75c3d5efde0"
PASSWORD = "admin@a_12a-bb"


# -- disks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("rbd/disk_1", "rbd/disk_1"),  # 3.5
        ("rbd.disk_1", "rbd/disk_1"),  # the seed (ceph-iscsi-cli 2.x)
        ("rbd.disk.v2", "rbd/disk.v2"),  # first dot separates pool from image
        ("my.pool/img", "my.pool/img"),  # a slash wins over dots
        (" rbd/disk_1 ", "rbd/disk_1"),
    ],
)
def test_disk_spellings(typed: str, key: str) -> None:
    assert normalize_disk(typed) == key


@pytest.mark.parametrize("typed", ["disk_1", "rbd/", "/img", "a/b/c", "rbd/disk 1", "rbd/d$k", ""])
def test_bad_disk_names(typed: str) -> None:
    with pytest.raises(ArgError):
        normalize_disk(typed)


@pytest.mark.parametrize(
    ("args", "disk", "size", "count"),
    [
        (("rbd", "disk_1", "100G", None), "rbd/disk_1", "100G", 1),  # pool= image= size=
        (("rbd/disk_1", "100g", None, None), "rbd/disk_1", "100G", 1),  # create P/I S
        (("rbd/disk_1", "1G", "3", None), "rbd/disk_1", "1G", 3),  # create P/I S N
        (("rbd/disk_1", None, "2T", None), "rbd/disk_1", "2T", 1),  # create P/I size=S
        (("rbd.disk_1", "512M", None, None), "rbd/disk_1", "512M", 1),  # 2.x P.I
        (("rbd", "disk_1", "1G", "10"), "rbd/disk_1", "1G", 10),
        (("my.pool", "img", "1G", None), "my.pool/img", "1G", 1),  # dotted pool, named args
    ],
)
def test_disk_create_forms(
    args: tuple[str | None, str | None, str | None, str | None],
    disk: str,
    size: str,
    count: int,
) -> None:
    spec = parse_disk_spec(*args)
    assert (spec.disk, spec.size, spec.count) == (disk, size, count)
    assert spec.pool == disk.split("/")[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((None, None, None, None), "pool=POOL image=IMAGE"),
        (("rbd", None, "1G", None), "give the image too"),
        (("rbd", "disk_1", None, None), "size is required"),
        (("rbd", "disk_1", "lots", None), "not understood"),
        (("rbd", "disk_1", "0G", None), "larger than 0"),
        (("rbd", "disk_1", "1G", "11"), "1 to 10"),
        (("rbd", "disk_1", "1G", "x"), "1 to 10"),
        (("rbd", "bad name", "1G", None), "may only contain"),
    ],
)
def test_disk_create_errors(
    args: tuple[str | None, str | None, str | None, str | None], needle: str
) -> None:
    with pytest.raises(ArgError, match=needle):
        parse_disk_spec(*args)


def test_attach_takes_no_size() -> None:
    spec = parse_disk_spec("rbd/disk_1", None, None, None, need_size=False)
    assert (spec.disk, spec.size) == ("rbd/disk_1", None)
    with pytest.raises(ArgError, match="no size"):
        parse_disk_spec("rbd", "disk_1", "1G", None, need_size=False)


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("100G", "100G"),
        ("100g", "100G"),
        ("2t", "2T"),
        ("512MiB", "512M"),
        ("10GB", "10G"),
        ("4096", "4096"),
    ],
)
def test_sizes_are_upper_cased_like_gwcli_35(typed: str, sent: str) -> None:
    assert normalize_size(typed) == sent


# -- CHAP ---------------------------------------------------------------------------------------


def test_seed_chap_spelling() -> None:
    assert parse_chap(chap=f"{USER}/{PASSWORD}") == Chap(USER, PASSWORD)


def test_35_chap_spelling() -> None:
    assert parse_chap(username=USER, password=PASSWORD) == Chap(USER, PASSWORD)


def test_positional_user_slash_password() -> None:
    assert parse_chap((f"{USER}/{PASSWORD}",)) == Chap(USER, PASSWORD)


def test_password_may_hold_a_slash() -> None:
    assert parse_chap(chap="myiscsiuser/pass/word1234") == Chap("myiscsiuser", "pass/word1234")


def test_mutual_both_spellings() -> None:
    want = Chap(USER, PASSWORD, "targetuser1", "targetsecret12")
    assert parse_chap(chap=f"{USER}/{PASSWORD}", mutual_chap="targetuser1/targetsecret12") == want
    assert (
        parse_chap(
            username=USER,
            password=PASSWORD,
            mutual_username="targetuser1",
            mutual_password="targetsecret12",
        )
        == want
    )


@pytest.mark.parametrize(
    "kwargs", [{"positional": ("nochap",)}, {"chap": "nochap"}, {"positional": ("NOCHAP",)}]
)
def test_nochap(kwargs: dict[str, object]) -> None:
    assert parse_chap(**kwargs) == "nochap"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"username": "short", "password": PASSWORD}, "username must be 8 to 64"),
        ({"username": USER, "password": "short"}, "password must be 12 to 16"),
        ({"username": USER, "password": "bad&password12"}, "password may only contain"),
        ({"username": "bad user name", "password": PASSWORD}, "username may only contain"),
        ({"username": USER}, "needs a password"),
        ({"password": PASSWORD}, "needs a username"),
        ({"username": USER, "password": PASSWORD, "mutual_username": "targetuser1"}, "both"),
        ({"chap": "nopassword"}, "USERNAME/PASSWORD"),
        ({"chap": f"{USER}/{PASSWORD}", "username": USER}, "not both"),
        ({}, "no credentials"),
        ({"positional": ("what",)}, "unexpected"),
    ],
)
def test_chap_errors_name_the_rule(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ArgError, match=needle):
        parse_chap(**kwargs)  # type: ignore[arg-type]


def test_chap_form_leaves_out_unset_mutual_like_gwcli_35() -> None:
    assert encode_form(Chap(USER, PASSWORD).form()) == encode_form(
        {"username": USER, "password": PASSWORD}
    )
    assert Chap().form(send_empty_mutual=True) == {
        "username": "",
        "password": "",
        "mutual_username": "",
        "mutual_password": "",
    }


# -- other values -------------------------------------------------------------------------------


def test_iqn_is_lower_cased_and_checked() -> None:
    assert normalize_iqn("IQN.2003-01.com.RedHat.iscsi-gw:iscsi-igw") == (
        "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
    )
    with pytest.raises(ArgError, match="not an iSCSI name"):
        normalize_iqn("target1")


def test_ip_lists() -> None:
    assert parse_ip_list("127.0.0.2") == ["127.0.0.2"]
    assert parse_ip_list("127.0.0.2,[::1],127.0.0.2") == ["127.0.0.2", "::1"]
    with pytest.raises(ArgError, match="not an IPv4 or IPv6"):
        parse_ip_list("gw1.example.com")


def test_flags_and_lun_ids() -> None:
    assert parse_flag("TRUE", "confirm") is True
    assert parse_flag(None, "confirm") is False
    with pytest.raises(ArgError, match="confirm=maybe"):
        parse_flag("maybe", "confirm")
    assert parse_lun_id("7") == 7
    assert parse_lun_id(None) is None
    with pytest.raises(ArgError):
        parse_lun_id("256")


# -- where the API is ---------------------------------------------------------------------------


def test_api_url() -> None:
    ep = parse_api_url("http://admin:s%40cret@127.0.0.2:5123")
    assert (ep.scheme, ep.host, ep.port, ep.user, ep.password) == (
        "http",
        "127.0.0.2",
        5123,
        "admin",
        "s@cret",
    )
    assert ep.describe() == "http://admin@127.0.0.2:5123"
    ipv6 = parse_api_url("https://u:p@[::1]:8443")
    assert ipv6.base_url == "https://[::1]:8443"
    bare = parse_api_url("127.0.0.1")
    assert (bare.scheme, bare.port, bare.user, bare.password) == ("http", 5000, "admin", "admin")


@pytest.mark.parametrize("url", ["ftp://h:1", "http://:1", "http://h:99999", "http://h:1/api"])
def test_bad_api_urls(url: str) -> None:
    with pytest.raises(GwcliConfigError):
        parse_api_url(url)


def test_cfg_defaults_follow_ceph_iscsi(tmp_path: Path) -> None:
    cfg = read_gateway_cfg(tmp_path / "missing.cfg")
    assert not cfg.found
    ep = cfg.endpoint()
    assert (ep.scheme, ep.host, ep.port, ep.user, ep.password) == (
        "https",  # ceph-iscsi's code default api_secure = True
        "127.0.0.1",
        5000,
        "admin",
        "admin",
    )


def test_cfg_values(tmp_path: Path) -> None:
    path = tmp_path / "iscsi-gateway.cfg"
    path.write_text(
        "[config]\ncluster_name = ceph\ngateway_keyring = ceph.client.admin.keyring\n"
        "api_secure = false\napi_user = gwadmin\napi_password = s3cret-pw\n"
        "api_port = 5001\napi_host = 127.0.0.3\n"
        "trusted_ip_list = 192.168.219.128,192.168.219.129\n"
    )
    cfg = read_gateway_cfg(path)
    ep = cfg.endpoint()
    assert ep.base_url == "http://127.0.0.3:5001"
    assert (ep.user, ep.password, ep.source) == ("gwadmin", "s3cret-pw", str(path))
    assert cfg.get("trusted_ip_list") == "192.168.219.128,192.168.219.129"


@pytest.mark.parametrize(
    ("line", "host"), [("api_host = ::", "127.0.0.1"), ("api_host = 0.0.0.0", "127.0.0.1"),
                       ("api_host = ::1", "::1"), ("api_host = gw1.example.test", "gw1.example.test")]
)  # fmt: skip
def test_cfg_wildcard_host_means_this_machine(tmp_path: Path, line: str, host: str) -> None:
    path = tmp_path / "iscsi-gateway.cfg"
    path.write_text(f"[config]\n{line}\n")
    assert read_gateway_cfg(path).endpoint().host == host


@pytest.mark.parametrize("body", ["[config]\napi_secure = maybe\n", "[config]\napi_port = x\n",
                                  "not an ini file\n"])  # fmt: skip
def test_cfg_errors(tmp_path: Path, body: str) -> None:
    path = tmp_path / "iscsi-gateway.cfg"
    path.write_text(body)
    with pytest.raises(GwcliConfigError, match=str(path)):
        read_gateway_cfg(path).endpoint()
