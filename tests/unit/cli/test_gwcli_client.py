"""What gwcli sends to the API, request by request, against a recording fake server.

The expected method/path/form of each command are those gwcli 3.5 sends
(``shared/reference/gwcli-3.5-client.md`` §3), so a gateway that serves gwcli 3.5 serves this
shell too. Reads (``GET``) are left out of most assertions: this shell reads less than 3.5.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from gwcli_fake_api import FakeAPI

from iscsigw.cli import main as iscsigw_main
from iscsigw.cli import shell
from iscsigw.cli.gwcli.client import APIClient, APIError, parse_api_url

T = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
I = "iqn.1994-05.com.redhat:75c3d5efde0"  # noqa: E741
PW = "admin@a_12a-bb"


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    fake = FakeAPI()
    yield fake
    fake.close()


class Run:
    def __init__(self, api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
        self.api = api
        self.capsys = capsys
        self.out = self.err = ""

    def __call__(self, *cmd: str) -> int:
        self.capsys.readouterr()
        rc = shell.main(["--api", self.api.url, *cmd])
        captured = self.capsys.readouterr()
        self.out, self.err = captured.out, captured.err
        return rc

    def ok(self, *cmd: str) -> list[tuple[str, str, dict[str, str]]]:
        """Run a command that must succeed; return the changes it sent."""
        before = len(self.api.changes())
        rc = self(*cmd)
        assert rc == 0, f"{cmd}: rc={rc}\nstdout={self.out}\nstderr={self.err}"
        return self.api.calls()[before:]


@pytest.fixture
def run(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(api, capsys)


def seed(run: Run) -> None:
    """The seed walkthrough, up to the mapped disk."""
    run.ok("/iscsi-target", "create", T)
    run.ok(f"/iscsi-target/{T}/gateways", "create", "gw1", "127.0.0.2", "skipchecks=true")
    run.ok(f"/iscsi-target/{T}/gateways", "create", "gw2", "127.0.0.3", "skipchecks=true")
    run.ok("/disks", "create", "pool=rbd", "image=disk_1", "size=100G")
    run.ok(f"/iscsi-target/{T}/hosts", "create", I)
    run.ok(f"/iscsi-target/{T}/hosts/{I}", "auth", f"chap={I}/{PW}")
    run.ok(f"/iscsi-target/{T}/hosts/{I}", "disk", "add", "rbd.disk_1")


def test_seed_walkthrough_requests(run: Run, api: FakeAPI) -> None:
    assert run.ok("/iscsi-target", "create", T) == [("PUT", f"/api/target/{T}", {})]
    assert run.ok(
        f"/iscsi-target/{T}/gateways", "create", "gw1", "127.0.0.2", "skipchecks=true"
    ) == [
        (
            "PUT",
            f"/api/gateway/{T}/gw1",
            {"ip_address": "127.0.0.2", "nosync": "False", "skipchecks": "true"},
        )
    ]
    assert "OS version/package checks have been bypassed" in run.out
    run.ok(f"/iscsi-target/{T}/gateways", "create", "gw2", "127.0.0.3", "skipchecks=true")
    assert run.ok("/disks", "create", "pool=rbd", "image=disk_1", "size=100g") == [
        (
            "PUT",
            "/api/disk/rbd/disk_1",
            {
                "pool": "rbd",
                "owner": "gw1",  # the API's own name, as 3.5 sends its fqdn
                "count": "1",
                "mode": "create",
                "create_image": "true",
                "size": "100G",
            },
        )
    ]
    assert run.ok(f"/iscsi-target/{T}/hosts", "create", I) == [("PUT", f"/api/client/{T}/{I}", {})]
    assert run.ok(f"/iscsi-target/{T}/hosts/{I}", "auth", f"chap={I}/{PW}") == [
        ("PUT", f"/api/clientauth/{T}/{I}", {"username": I, "password": PW})
    ]
    assert run.ok(f"/iscsi-target/{T}/hosts/{I}", "disk", "add", "rbd.disk_1") == [
        ("PUT", f"/api/targetlun/{T}", {"disk": "rbd/disk_1"}),
        ("PUT", f"/api/clientlun/{T}/{I}", {"disk": "rbd/disk_1"}),
    ]
    # every request carried the credentials of --api
    assert {(r.user, r.password) for r in api.requests} == {("admin", "secret-pw")}
    assert all(r.method in ("GET", "PUT", "DELETE") for r in api.requests)


def test_35_spellings_send_the_same(run: Run, api: FakeAPI) -> None:
    run.ok("/iscsi-targets", "create", T)
    run.ok(f"/iscsi-targets/{T}/gateways", "create", "gw1", "127.0.0.2")
    run.ok("/disks", "create", "rbd/disk_1", "1G")
    run.ok(f"/iscsi-targets/{T}/hosts", "create", I)
    assert run.ok(f"/iscsi-targets/{T}/hosts/{I}", "auth", f"username={I}", f"password={PW}") == [
        ("PUT", f"/api/clientauth/{T}/{I}", {"username": I, "password": PW})
    ]
    assert run.ok(f"/iscsi-targets/{T}/hosts/{I}", "disk", "add", "rbd/disk_1") == [
        ("PUT", f"/api/targetlun/{T}", {"disk": "rbd/disk_1"}),
        ("PUT", f"/api/clientlun/{T}/{I}", {"disk": "rbd/disk_1"}),
    ]
    gw = next(r for r in api.changes() if r.path.startswith("/api/gateway/"))
    assert gw.form == {"ip_address": "127.0.0.2", "nosync": "False", "skipchecks": "false"}


def test_other_commands(run: Run, api: FakeAPI) -> None:
    seed(run)
    tgt = f"/iscsi-targets/{T}"
    cases: list[tuple[tuple[str, ...], list[tuple[str, str, dict[str, str]]]]] = [
        (
            ("/disks", "resize", "rbd/disk_1", "200G"),
            [("PUT", "/api/disk/rbd/disk_1",
              {"pool": "rbd", "size": "200G", "owner": "gw1", "mode": "resize"})],
        ),
        (
            ("/disks/rbd/disk_1", "resize", "300g"),
            [("PUT", "/api/disk/rbd/disk_1",
              {"pool": "rbd", "size": "300G", "owner": "gw1", "mode": "resize"})],
        ),
        (
            ("/disks", "reconfigure", "rbd/disk_1", "max_data_area_mb", "16"),
            [("PUT", "/api/disk/rbd/disk_1",
              {"pool": "rbd", "owner": "gw1", "controls": '{"max_data_area_mb": "16"}',
               "mode": "reconfigure"})],
        ),
        (
            (tgt, "reconfigure", "cmdsn_depth", "64"),
            [("PUT", f"/api/target/{T}", {"mode": "reconfigure", "controls": '{"cmdsn_depth": "64"}'})],
        ),
        (
            ("/iscsi-targets", "discovery_auth", "username=discovery1", "password=discoverypw12"),
            [("PUT", "/api/discoveryauth",
              {"username": "discovery1", "password": "discoverypw12",
               "mutual_username": "", "mutual_password": ""})],
        ),
        (
            ("/iscsi-targets", "discovery_auth", "chap=discovery1/discoverypw12",
             "chap_mutual=mutualuser1/mutualsecret12"),
            [("PUT", "/api/discoveryauth",
              {"username": "discovery1", "password": "discoverypw12",
               "mutual_username": "mutualuser1", "mutual_password": "mutualsecret12"})],
        ),
        (
            ("/iscsi-targets", "discovery_auth", "nochap"),
            [("PUT", "/api/discoveryauth",
              {"username": "", "password": "", "mutual_username": "", "mutual_password": ""})],
        ),
        (
            (tgt, "auth", "username=targetuser1", "password=targetsecret12"),
            [("PUT", f"/api/targetauth/{T}",
              {"username": "targetuser1", "password": "targetsecret12",
               "mutual_username": "", "mutual_password": ""})],
        ),
        (
            (tgt, "auth", "nochap"),
            [("PUT", f"/api/targetauth/{T}",
              {"username": "", "password": "", "mutual_username": "", "mutual_password": ""})],
        ),
        (
            (f"{tgt}/hosts/{I}", "auth", f"username={I}", f"password={PW}",
             "mutual_username=mutualuser1", "mutual_password=mutualsecret12"),
            [("PUT", f"/api/clientauth/{T}/{I}",
              {"username": I, "password": PW, "mutual_username": "mutualuser1",
               "mutual_password": "mutualsecret12"})],
        ),
        (
            (f"{tgt}/hosts/{I}", "auth", "nochap"),
            [("PUT", f"/api/clientauth/{T}/{I}",
              {"username": "", "password": "", "mutual_username": "", "mutual_password": ""})],
        ),
        ((f"{tgt}/hosts", "auth", "disable_acl"),
         [("PUT", f"/api/targetauth/{T}", {"action": "disable_acl"})]),
        ((f"{tgt}/hosts", "auth", "enable_acl"),
         [("PUT", f"/api/targetauth/{T}", {"action": "enable_acl"})]),
        ((f"{tgt}/hosts/{I}", "disk", "remove", "rbd/disk_1"),
         [("DELETE", f"/api/clientlun/{T}/{I}", {"disk": "rbd/disk_1"})]),
        ((f"{tgt}/host-groups", "create", "group1"), [("PUT", f"/api/hostgroup/{T}/group1", {})]),
        ((f"{tgt}/host-groups/group1", "host", "add", I),
         [("PUT", f"/api/hostgroup/{T}/group1", {"action": "add", "members": I})]),
        ((f"{tgt}/host-groups/group1", "disk", "add", "rbd/disk_1"),
         [("PUT", f"/api/hostgroup/{T}/group1", {"action": "add", "disks": "rbd/disk_1"})]),
        ((f"{tgt}/host-groups/group1", "disk", "remove", "rbd.disk_1"),
         [("PUT", f"/api/hostgroup/{T}/group1", {"action": "remove", "disks": "rbd/disk_1"})]),
        ((f"{tgt}/host-groups/group1", "host", "remove", I),
         [("PUT", f"/api/hostgroup/{T}/group1", {"action": "remove", "members": I})]),
        ((f"{tgt}/host-groups", "delete", "group1"), [("DELETE", f"/api/hostgroup/{T}/group1", {})]),
        (("/disks/rbd/disk_1", "snapshot", "create", "snap1"),
         [("PUT", "/api/disksnap/rbd/disk_1/snap1", {"mode": "create"})]),
        (("/disks", "snapshot", "rbd/disk_1", "rollback", "snap1"),
         [("PUT", "/api/disksnap/rbd/disk_1/snap1", {"mode": "rollback"})]),
        (("/disks/rbd/disk_1", "snapshot", "delete", "snap1"),
         [("DELETE", "/api/disksnap/rbd/disk_1/snap1", {})]),
        ((f"{tgt}/hosts", "delete", I), [("DELETE", f"/api/client/{T}/{I}", {})]),
        ((f"{tgt}/disks", "delete", "rbd/disk_1"),
         [("DELETE", f"/api/targetlun/{T}", {"disk": "rbd/disk_1"})]),
        ((f"{tgt}/disks", "add", "rbd/disk_1", "lun_id=5"),
         [("PUT", f"/api/targetlun/{T}", {"disk": "rbd/disk_1", "lun_id": "5"})]),
        ((f"{tgt}/disks", "delete", "rbd.disk_1"),
         [("DELETE", f"/api/targetlun/{T}", {"disk": "rbd/disk_1"})]),
        (("/disks", "detach", "rbd/disk_1"),
         [("DELETE", "/api/disk/rbd/disk_1", {"purge_host": "gw1", "preserve_image": "true"})]),
        (("/disks", "attach", "pool=rbd", "image=disk_1"),
         [("PUT", "/api/disk/rbd/disk_1",
           {"pool": "rbd", "owner": "gw1", "count": "1", "mode": "create",
            "create_image": "false"})]),
        (("/disks", "delete", "rbd/disk_1"),
         [("DELETE", "/api/disk/rbd/disk_1", {"purge_host": "gw1", "preserve_image": "false"})]),
        ((f"{tgt}/gateways", "delete", "gw2"), [("DELETE", f"/api/gateway/{T}/gw2", {"force": "false"})]),
        ((f"{tgt}/gateways", "delete", "gw1", "confirm=true"),
         [("DELETE", f"/api/gateway/{T}/gw1", {"force": "true"})]),
        (("/iscsi-targets", "delete", T), [("DELETE", f"/api/target/{T}", {})]),
    ]  # fmt: skip
    for cmd, want in cases:
        assert run.ok(*cmd) == want, cmd


def test_disk_add_creates_a_missing_disk_with_a_size(run: Run) -> None:
    seed(run)
    sent = run.ok(f"/iscsi-targets/{T}/hosts/{I}", "disk", "add", "rbd/disk_2", "10G")
    assert sent == [
        ("PUT", "/api/disk/rbd/disk_2",
         {"pool": "rbd", "owner": "gw1", "count": "1", "mode": "create", "create_image": "true",
          "size": "10G"}),
        ("PUT", f"/api/targetlun/{T}", {"disk": "rbd/disk_2"}),
        ("PUT", f"/api/clientlun/{T}/{I}", {"disk": "rbd/disk_2"}),
    ]  # fmt: skip


def test_create_count_and_backstore(run: Run) -> None:
    assert run.ok("/disks", "create", "rbd/img", "1G", "3", "backstore=memory") == [
        ("PUT", "/api/disk/rbd/img",
         {"pool": "rbd", "owner": "gw1", "count": "3", "mode": "create", "create_image": "true",
          "size": "1G", "backstore": "memory"}),
    ]  # fmt: skip


def test_clearconfig_uses_the_public_route(run: Run) -> None:
    run.ok("/iscsi-targets", "create", T)
    run.ok("/iscsi-targets", "create", "iqn.2026-11.io.iscsigw:second")
    assert run("/iscsi-targets", "clearconfig") == 1
    assert "confirm=true" in run.err
    assert run.ok("/iscsi-targets", "clearconfig", "confirm=true") == [
        ("DELETE", f"/api/target/{T}", {}),
        ("DELETE", "/api/target/iqn.2026-11.io.iscsigw:second", {}),
    ]


# -- failures -----------------------------------------------------------------------------------


def test_api_message_on_stderr_and_exit_1(run: Run, api: FakeAPI) -> None:
    api.overrides[("PUT", f"/api/target/{T}")] = (400, {"message": "Invalid IQN - bad stuff"})
    assert run("/iscsi-targets", "create", T) == 1
    assert "Invalid IQN - bad stuff" in run.err
    assert "ok" not in run.out


def test_status_other_than_200_is_a_failure(run: Run, api: FakeAPI) -> None:
    api.overrides[("PUT", f"/api/target/{T}")] = (201, {"message": "created"})
    assert run("/iscsi-targets", "create", T) == 1
    assert "created" in run.err


def test_checks_before_sending(run: Run, api: FakeAPI) -> None:
    seed(run)
    before = len(api.changes())
    for cmd, needle in [
        (("/disks", "create", "pool=rbd", "image=disk_1"), "size is required"),
        (("/disks", "create", "rbd/disk_1", "1G"), "already exists"),
        (("/disks", "delete", "rbd/disk_1"), "mapped to target"),
        ((f"/iscsi-targets/{T}/hosts/{I}", "auth", "chap=short/x"), "username must be 8 to 64"),
        ((f"/iscsi-targets/{T}/hosts", "create", "not-an-iqn"), "not an iSCSI name"),
        ((f"/iscsi-targets/{T}/gateways", "create", "gw3", "nowhere"), "not an IPv4"),
        ((f"/iscsi-targets/{T}/gateways", "delete", "gw9"), "not defined"),
        (("/iscsi-targets", "create", T), "already exists"),
        (("/nowhere", "ls"), "No such path"),
        (("/disks", "frobnicate"), "Command not found"),
    ]:
        assert run(*cmd) == 1, cmd
        assert needle in run.err, (cmd, run.err)
    assert len(api.changes()) == before  # nothing was sent


def test_last_gateway_needs_confirm(run: Run) -> None:
    run.ok("/iscsi-targets", "create", T)
    run.ok(f"/iscsi-targets/{T}/gateways", "create", "gw1", "127.0.0.2")
    assert run(f"/iscsi-targets/{T}/gateways", "delete", "gw1") == 1
    assert "confirm=true" in run.err


def test_wrong_password_exits_2(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    url = api.url.replace("secret-pw", "wrong")
    assert shell.main(["--api", url, "ls"]) == 2
    err = capsys.readouterr().err
    assert "username/password mismatch" in err
    assert "wrong" not in err  # the password is never printed


def test_unreachable_api_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    assert shell.main(["--api", f"http://a:b@127.0.0.1:{port}", "ls"]) == 2
    assert "Unable to connect to api endpoint" in capsys.readouterr().err


def test_pending_gateway_is_a_warning_and_failed_is_an_error(run: Run, api: FakeAPI) -> None:
    api.change_extra = {
        "epoch": 7,
        "gateways": {
            "gw1": {"state": "applied", "epoch": 7},
            "gw2": {"state": "pending", "reason": "not reachable at http://127.0.0.3:5000"},
        },
    }
    assert run("/iscsi-targets", "create", T) == 0
    assert "gw2: not applied yet: not reachable" in run.err
    api.change_extra = {"epoch": 8, "gateways": {"gw1": {"state": "failed", "error": "disk gone"}}}
    assert run("/iscsi-targets", "delete", T) == 1
    assert "committed at epoch 8, but gw1 failed to apply it: disk gone" in run.err


# -- configuration sources ----------------------------------------------------------------------


def test_config_file_instead_of_api(
    api: FakeAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "iscsi-gateway.cfg"
    cfg.write_text(
        f"[config]\napi_secure = false\napi_host = 127.0.0.1\napi_port = {api.port}\n"
        "api_user = admin\napi_password = secret-pw\n"
    )
    assert shell.main(["--config", str(cfg), "/iscsi-targets", "create", T]) == 0
    assert api.calls() == [("PUT", f"/api/target/{T}", {})]
    assert shell.main(["--config", str(tmp_path / "nope.cfg"), "ls"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_iscsigw_shell_subcommand(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    assert iscsigw_main.main(["shell", "--api", api.url, "/iscsi-targets", "create", T]) == 0
    assert api.calls() == [("PUT", f"/api/target/{T}", {})]
    assert "ok" in capsys.readouterr().out


def test_export_and_import_round_trip(run: Run, api: FakeAPI, tmp_path: Path) -> None:
    seed(run)
    assert run("/", "export") == 0
    exported = json.loads(run.out)
    assert exported == api.config
    assert run.out.startswith("{\n    ")  # sorted, indent 4 (gwcli 3.5)
    get = [r for r in api.requests if r.path == "/api/config"][-1]
    assert get.query == {"decrypt_passwords": "true"}
    dump = tmp_path / "gw.json"
    run.ok("/", "export", f"file={dump}")
    assert json.loads(dump.read_text()) == exported
    assert run("/", "import", f"file={dump}") == 1
    assert "confirm=true" in run.err
    sent = run.ok("/", "import", f"file={dump}", "confirm=true")
    assert [(m, p) for m, p, _ in sent] == [("PUT", "/api/config")]
    assert json.loads(sent[0][2]["config"]) == exported


# -- the client itself --------------------------------------------------------------------------


def test_client_forms_and_errors(api: FakeAPI) -> None:
    client = APIClient(parse_api_url(api.url))
    client.put(f"/api/target/{T}", {"mode": None, "x": "a b&c"})
    req = api.requests[-1]
    assert req.form == {"x": "a b&c"}  # None dropped, value encoded
    with pytest.raises(APIError) as info:
        client.get("/api/nothing")
    assert info.value.status == 404
    assert "no route" in str(info.value)
    assert client.ping() == "UP"
    assert APIClient(parse_api_url(api.url.replace("secret-pw", "x"))).ping() == "UNAUTHORIZED"


def test_debug_traces_requests_without_the_password(
    api: FakeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    assert shell.main(["-d", "--api", api.url, "/iscsi-targets", "create", T]) == 0
    err = capsys.readouterr().err
    assert f"GET http://127.0.0.1:{api.port}/api/config -> 200" in err
    assert f"PUT http://127.0.0.1:{api.port}/api/target/{T} -> 200" in err
    assert "secret-pw" not in err
