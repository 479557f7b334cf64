"""The seed walkthrough (shared/reference/seed-ceph-iscsi-gateway.txt) through the real shell.

Two real gateways (``iscsigw serve``) share one data directory: gw1 on 127.0.0.2 and gw2 on
127.0.0.3 stand in for the walkthrough's 192.168.219.128/129, each with its own iSCSI portal
and REST API on free ports. ``gwcli`` builds the walkthrough's configuration — once in batch
mode (one ``gwcli`` process per step) and once as an interactive session on a pseudo-terminal —
and then libiscsi logs in through both portals with the CHAP that gwcli set, and data written
through one portal is read back through the other.

Every process this module starts is stopped by its own pid.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from integration.harness import free_port, gateway_command, require_tool, run_tool
from integration.rawclient import Session

T = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
I = "iqn.1994-05.com.redhat:75c3d5efde0"  # noqa: E741  (the seed's initiator)
PW = "admin@a_12a-bb"  # the seed's CHAP password
API_USER = "gwadmin"
API_PASSWORD = "s3cret-pass-gw"
DISK_BYTES = 100 << 30  # size=100G
START_TIMEOUT = 30.0
MiB = 1 << 20


def gwcli_argv() -> list[str]:
    script = Path(sys.executable).parent / "gwcli"
    return [str(script)] if script.exists() else [sys.executable, "-m", "iscsigw.cli.shell"]


@dataclass
class GatewayProc:
    """One ``iscsigw serve`` (no demo): its portal, its API, its log."""

    name: str
    ip: str
    data_dir: Path
    cfg: Path
    log_dir: Path
    portal_port: int = 0
    api_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.portal_port = self.portal_port or free_port(self.ip)
        self.api_port = self.api_port or free_port(self.ip)
        self.log_path = self.log_dir / f"{self.name}.log"

    @property
    def api_url(self) -> str:
        return f"http://{API_USER}:{API_PASSWORD}@{self.ip}:{self.api_port}"

    @property
    def portal(self) -> str:
        return f"{self.ip}:{self.portal_port}"

    def start(self) -> None:
        argv = [
            *gateway_command(),
            "serve",
            "--data-dir", str(self.data_dir),
            "--portal", self.portal,
            "--name", self.name,
            "--config", str(self.cfg),
            "--api", f"{self.ip}:{self.api_port}",
        ]  # fmt: skip
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode}\n{self.tail()}"
                )
            if self._ping() == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: API not up within {START_TIMEOUT:.0f}s\n{self.tail()}")

    def _ping(self) -> int:
        req = urllib.request.Request(f"http://{self.ip}:{self.api_port}/api/_ping")
        token = base64.b64encode(f"{API_USER}:{API_PASSWORD}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=1) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Pair:
    gw1: GatewayProc
    gw2: GatewayProc
    cfg: Path
    home: Path

    @property
    def gateways(self) -> list[GatewayProc]:
        return [self.gw1, self.gw2]

    def gwcli(self, *cmd: str, via: GatewayProc | None = None) -> subprocess.CompletedProcess[str]:
        """One batch-mode gwcli run against gw1's API (or ``via``'s)."""
        gw = via or self.gw1
        return subprocess.run(
            [*gwcli_argv(), "--api", gw.api_url, *cmd],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, HOME=str(self.home)),
        )

    def ok(self, *cmd: str, via: GatewayProc | None = None) -> str:
        res = self.gwcli(*cmd, via=via)
        assert res.returncode == 0, f"gwcli {' '.join(cmd)}: exit {res.returncode}\n{res.stderr}"
        return res.stdout


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    cfg = tmp_path / "iscsi-gateway.cfg"
    cfg.write_text(
        "[config]\n"
        "cluster_name = ceph\n"
        "api_secure = false\n"
        f"api_user = {API_USER}\n"
        f"api_password = {API_PASSWORD}\n"
        "trusted_ip_list = 127.0.0.2,127.0.0.3\n"
    )
    data = tmp_path / "data"
    logs = tmp_path / "logs"
    gw1 = GatewayProc("gw1", "127.0.0.2", data, cfg, logs)
    gw2 = GatewayProc("gw2", "127.0.0.3", data, cfg, logs)
    p = Pair(gw1, gw2, cfg, tmp_path / "home")
    try:
        gw1.start()
        gw2.start()
        yield p
    except BaseException:
        for gw in p.gateways:
            print(f"==== {gw.name} log\n{gw.tail()}")
        raise
    finally:
        for gw in p.gateways:
            gw.stop()


# -- checks after the walkthrough -----------------------------------------------------------------


def summaries(listing: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in listing.splitlines():
        m = re.match(r"^[\s|]*o- (\S+(?: \d+)?) \.*\s*\[(.*)\]$", line)
        if m:
            out.setdefault(m.group(1), m.group(2))
    return out


def check_tree(p: Pair) -> None:
    got = summaries(p.ok("ls"))
    assert got["iscsi-targets"] == "DiscoveryAuth: None, Targets: 1"
    assert got[T] == "Auth: None, Gateways: 2"
    assert got["gateways"] == "Up: 2/2, Portals: 2"
    assert got["gw1"] == "127.0.0.2 (UP)"
    assert got["gw2"] == "127.0.0.3 (UP)"
    assert re.fullmatch(r"Owner: gw[12], Lun: 0", got["rbd/disk_1"])
    assert got["disk_1"] == "rbd/disk_1 (Online, 100G)"
    assert got["hosts"] == "Auth: ACL_ENABLED, Hosts: 1"
    assert got[I] == "Auth: CHAP, Disks: 1(100G)"
    # every gateway's API shows the same tree
    assert summaries(p.ok("ls", via=p.gw2)) == got
    # the disk is a sparse file in the pool folder (file backend)
    assert (p.gw1.data_dir / "rbd" / "disk_1").stat().st_size == DISK_BYTES


def chap_env() -> dict[str, str]:
    return {"LIBISCSI_CHAP_USERNAME": I, "LIBISCSI_CHAP_PASSWORD": PW}


def check_initiators(p: Pair, tmp_path: Path) -> None:
    """libiscsi through both portals with the CHAP gwcli set; data crosses portals."""
    for gw in p.gateways:
        portal = f"iscsi://{gw.portal}"
        res = run_tool(["iscsi-ls", "-i", I, "-s", portal], env=chap_env(), check=True)
        for other in p.gateways:  # SendTargets on either gateway lists both portals
            assert f"Portal:{other.portal}," in res.stdout, res.describe()
        assert "Lun:0" in res.stdout, res.describe()
        lun = f"{portal}/{T}/0"
        inq = run_tool(["iscsi-inq", "-i", I, lun], env=chap_env(), check=True)
        assert inq.stdout.strip(), inq.describe()
        cap = run_tool(["iscsi-readcapacity16", "-i", I, lun], env=chap_env(), check=True)
        assert f"Total size:{DISK_BYTES}" in cap.stdout, cap.describe()
    # without CHAP, or with a wrong password, the login is refused
    lun = f"iscsi://{p.gw1.portal}/{T}/0"
    res = run_tool(["iscsi-inq", "-i", I, lun])
    assert res.returncode != 0, res.describe()
    bad = {"LIBISCSI_CHAP_USERNAME": I, "LIBISCSI_CHAP_PASSWORD": "wrong_pass_1234"}
    res = run_tool(["iscsi-inq", "-i", I, lun], env=bad)
    assert res.returncode != 0, res.describe()

    # write 4 MiB through gw1, read them back through gw2
    require_tool("qemu-img")
    src = tmp_path / "src.raw"
    src.write_bytes(os.urandom(4 * MiB))
    dst = tmp_path / "dst.raw"

    def opts(gw: GatewayProc, size: int | None = None) -> str:
        parts = ["driver=raw"] + ([f"size={size}"] if size else [])
        parts += [
            "file.driver=iscsi", "file.transport=tcp", f"file.portal={gw.portal}",
            f"file.target={T}", "file.lun=0", f"file.user={I}", f"file.password={PW}",
            f"file.initiator-name={I}",
        ]  # fmt: skip
        return ",".join(parts)

    run_tool(
        ["qemu-img", "convert", "-n", "-f", "raw", str(src), "--target-image-opts", opts(p.gw1)],
        check=True,
    )
    run_tool(
        ["qemu-img", "convert", "-O", "raw", "--image-opts", opts(p.gw2, 4 * MiB), str(dst)],
        check=True,
    )
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()


def check_logged_in(p: Pair) -> None:
    """While an initiator is logged in, ``ls`` says LOGGED-IN for it."""
    s = Session(p.gw2.ip, p.gw2.portal_port)
    try:
        s.login(T, initiator=I, user=I, password=PW)
        got = summaries(p.ok("ls", f"/iscsi-targets/{T}/hosts"))
        assert got[I] == "LOGGED-IN, Auth: CHAP, Disks: 1(100G)"
        info = p.ok(f"/iscsi-targets/{T}/hosts/{I}", "info")
        assert re.search(r"^Logged In\.+ gw2$", info, re.M), info
    finally:
        s.close()


# -- the tests ---------------------------------------------------------------------------------


def test_seed_walkthrough_batch_mode(pair: Pair, tmp_path: Path) -> None:
    p = pair
    for tool in ("iscsi-ls", "iscsi-inq", "iscsi-readcapacity16"):
        require_tool(tool)
    assert p.ok("/iscsi-target", "create", T).strip() == "ok"
    out = p.ok(f"/iscsi-target/{T}/gateways", "create", "gw1", "127.0.0.2", "skipchecks=true")
    assert "OS version/package checks have been bypassed" in out
    # the second gateway is added through the *other* gateway's API: one config for both
    p.ok(f"/iscsi-target/{T}/gateways", "create", "gw2", "127.0.0.3", "skipchecks=true", via=p.gw2)
    p.ok("/disks", "create", "pool=rbd", "image=disk_1", "size=100G")
    p.ok(f"/iscsi-target/{T}/hosts", "create", I)
    p.ok(f"/iscsi-target/{T}/hosts/{I}", "auth", f"chap={I}/{PW}")
    p.ok(f"/iscsi-target/{T}/hosts/{I}", "disk", "add", "rbd.disk_1")
    check_tree(p)

    # failures: non-zero exit and the API's (or the shell's) message on stderr
    res = p.gwcli(f"/iscsi-targets/{T}/hosts", "create", I)
    assert res.returncode == 1 and "already exists" in res.stderr, res
    res = p.gwcli("/iscsi-targets", "delete", T)  # the target still has a host and a disk
    assert res.returncode == 1 and res.stderr.strip(), res
    assert T in p.ok("/iscsi-targets", "info")

    # without --api: the settings of iscsi-gateway.cfg (gwcli --config FILE)
    cfg = p.cfg.read_text() + f"api_host = {p.gw1.ip}\napi_port = {p.gw1.api_port}\n"
    own = tmp_path / "gwcli.cfg"
    own.write_text(cfg)
    res = subprocess.run(
        [*gwcli_argv(), "--config", str(own), "ls", "/iscsi-targets", "1"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, HOME=str(p.home)),
    )  # fmt: skip
    assert res.returncode == 0 and "Targets: 1" in res.stdout, res

    check_initiators(p, tmp_path)
    check_logged_in(p)


def test_seed_walkthrough_interactive(pair: Pair, tmp_path: Path) -> None:
    """The seed's own keystrokes (cd-based, older spellings) on a pty."""
    pexpect = pytest.importorskip("pexpect")
    p = pair
    for tool in ("iscsi-ls", "iscsi-inq", "iscsi-readcapacity16"):
        require_tool(tool)
    prompt = re.compile(r"(/[^\r\n]*)> $")
    argv = gwcli_argv()
    child = pexpect.spawn(
        argv[0],
        [*argv[1:], "--api", p.gw1.api_url],
        env=dict(os.environ, HOME=str(p.home), TERM="xterm"),
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 160),
    )
    transcript: list[str] = []

    def cmd(line: str) -> str:
        child.sendline(line)
        child.expect(prompt)
        out = str(child.before).replace("\r\n", "\n")
        transcript.append(f"> {line}\n{out}")
        return out

    try:
        child.expect(prompt)
        cmd("set global color_mode=false prompt_length=0")
        cmd("cd iscsi-target")
        assert "ok" in cmd(f"create {T}")
        cmd(f"cd {T}/")
        cmd("cd gateways")
        assert child.match.group(1) == f"/iscsi-targets/{T}/gateways"
        out = cmd("create gw1 127.0.0.2 skipchecks=true")
        assert "OS version/package checks have been bypassed" in out and "ok" in out
        assert "ok" in cmd("create gw2 127.0.0.3 skipchecks=true")
        listing = cmd("ls")
        assert re.search(r"o- gateways \.+ \[Up: 2/2, Portals: 2\]", listing), listing
        assert re.search(r"o- gw1 \.+ \[127\.0\.0\.2 \(UP\)\]", listing), listing
        assert re.search(r"o- gw2 \.+ \[127\.0\.0\.3 \(UP\)\]", listing), listing
        cmd("cd /disks")
        assert "ok" in cmd("create pool=rbd image=disk_1 size=100G")
        cmd(f"cd /iscsi-target/{T}/hosts")
        assert "ok" in cmd(f"create {I}")
        assert child.match.group(1).endswith(f"/hosts/{I}")
        assert "ok" in cmd(f"auth chap={I}/{PW}")
        help_text = cmd("help auth")
        assert "username ..." in help_text and "password ..." in help_text
        assert "ok" in cmd("disk add rbd.disk_1")
        assert re.search(r"\[Auth: CHAP, Disks: 1\(100G\)\]", cmd("ls"))
        child.sendline("exit")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
    except BaseException:
        print("\n".join(transcript))
        raise
    finally:
        if child.isalive():
            child.terminate(force=True)
    check_tree(p)
    check_initiators(p, tmp_path)


def test_export_import_round_trip(pair: Pair, tmp_path: Path) -> None:
    """export writes what GET /api/config returns; import (PUT /api/config) puts it back."""
    p = pair
    p.ok("/iscsi-targets", "create", T)
    p.ok(f"/iscsi-targets/{T}/gateways", "create", "gw1", "127.0.0.2")
    p.ok("/disks", "create", "rbd/disk_1", "1G")
    dump = tmp_path / "export.json"
    p.ok("/", "export", f"file={dump}")
    exported = json.loads(dump.read_text())
    # Change the configuration, then import the export: the change is undone everywhere.
    p.ok("/iscsi-targets", "create", "iqn.2003-01.com.example:second")
    assert "Targets: 2" in p.ok("ls", "/iscsi-targets", "1")
    refused = p.gwcli("/", "import", f"file={dump}")
    assert refused.returncode != 0 and "confirm=true" in refused.stderr
    p.ok("/", "import", f"file={dump}", "confirm=true")
    assert "Targets: 1" in p.ok("ls", "/iscsi-targets", "1")
    assert "Targets: 1" in p.ok("ls", "/iscsi-targets", "1", via=p.gw2)  # applied by gw2 too
    again = tmp_path / "again.json"
    p.ok("/", "export", f"file={again}")
    strip = ("epoch", "updated")
    assert {k: v for k, v in json.loads(again.read_text()).items() if k not in strip} == {
        k: v for k, v in exported.items() if k not in strip
    }
    # A broken document is refused with the reason and changes nothing.
    bad = tmp_path / "bad.json"
    exported["targets"][T]["portals"]["gw1"]["portal_ip_addresses"] = ["300.1.1.1"]
    bad.write_text(json.dumps(exported))
    res = p.gwcli("/", "import", f"file={bad}", "confirm=true")
    assert res.returncode != 0 and "nothing was changed" in res.stderr, res.stderr
    assert "Targets: 1" in p.ok("ls", "/iscsi-targets", "1")
