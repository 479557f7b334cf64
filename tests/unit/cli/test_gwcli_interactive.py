"""The interactive shell on a real pseudo-terminal (pexpect), against the fake API.

Covers what only a terminal shows: the prompt and ``cd``, tab completion through readline,
bookmarks and ``goto``, errors that do not end the session, and ``exit``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gwcli_fake_api import FakeAPI

pexpect = pytest.importorskip("pexpect")

T = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
I = "iqn.1994-05.com.redhat:75c3d5efde0"  # noqa: E741
PW = "admin@a_12a-bb"
TIMEOUT = 20


def gwcli_argv() -> list[str]:
    script = Path(sys.executable).parent / "gwcli"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "iscsigw.cli.shell"]


class Session:
    """One ``gwcli`` on a pty; ``cmd()`` sends a line and waits for the next prompt."""

    PROMPT = re.compile(r"(/[^\r\n]*)> $")

    def __init__(self, api_url: str, home: Path) -> None:
        argv = gwcli_argv()
        env = dict(os.environ, HOME=str(home), TERM="xterm")
        self.child = pexpect.spawn(
            argv[0],
            [*argv[1:], "--api", api_url],
            env=env,
            encoding="utf-8",
            timeout=TIMEOUT,
            dimensions=(50, 160),
        )
        self.child.expect(self.PROMPT)
        # plain output and the full path in the prompt make the transcript easy to match
        self.cmd("set global color_mode=false prompt_length=0")

    @property
    def path(self) -> str:
        return str(self.child.match.group(1))

    def cmd(self, line: str) -> str:
        self.child.sendline(line)
        self.child.expect(self.PROMPT)
        out = str(self.child.before).replace("\r\n", "\n")
        return out.split("\n", 1)[1] if "\n" in out else ""  # drop the echoed line

    def close(self) -> int:
        self.child.sendline("exit")
        self.child.expect(pexpect.EOF)
        self.child.close()
        return int(self.child.exitstatus or 0)


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    monkeypatch.setenv("HOME", str(tmp_path))
    fake = FakeAPI()
    yield fake
    fake.close()


@pytest.fixture
def session(api: FakeAPI, tmp_path: Path) -> Iterator[Session]:
    s = Session(api.url, tmp_path)
    yield s
    if s.child.isalive():
        s.child.terminate(force=True)


def test_seed_walkthrough_interactively(session: Session, api: FakeAPI, tmp_path: Path) -> None:
    s = session
    assert s.path == "/"
    s.cmd("cd iscsi-target")  # the seed's spelling
    assert s.path == "/iscsi-targets"
    assert "ok" in s.cmd(f"create {T}")
    s.cmd(f"cd {T}/")
    s.cmd("cd gateways")
    assert s.path == f"/iscsi-targets/{T}/gateways"
    out = s.cmd("create gw1 127.0.0.2 skipchecks=true")
    assert "OS version/package checks have been bypassed" in out and "ok" in out
    assert "ok" in s.cmd("create gw2 127.0.0.3 skipchecks=true")
    listing = s.cmd("ls")
    assert re.search(r"o- gateways \.+ \[Up: 2/2, Portals: 2\]", listing)
    assert re.search(r"o- gw1 \.+ \[127\.0\.0\.2 \(UP\)\]", listing)
    s.cmd("cd /disks")
    assert "ok" in s.cmd("create pool=rbd image=disk_1 size=100G")
    s.cmd(f"cd /iscsi-target/{T}/hosts")
    assert "ok" in s.cmd(f"create {I}")
    assert s.path == f"/iscsi-targets/{T}/hosts/{I}"  # create goes into the new host
    assert "ok" in s.cmd(f"auth chap={I}/{PW}")
    help_text = s.cmd("help auth")
    assert "SYNTAX" in help_text and "nochap" in help_text
    assert "ok" in s.cmd("disk add rbd.disk_1")
    assert re.search(r"\[Auth: CHAP, Disks: 1\(100G\)\]", s.cmd("ls"))
    assert s.close() == 0
    assert ("PUT", f"/api/clientlun/{T}/{I}", {"disk": "rbd/disk_1"}) in api.calls()
    assert (tmp_path / ".gwcli" / "prefs.bin").exists()


def test_errors_keep_the_session(session: Session, api: FakeAPI) -> None:
    s = session
    out = s.cmd("cd /nowhere")
    assert "No such path /nowhere" in out
    assert s.path == "/"
    out = s.cmd("/disks create pool=rbd image=disk_1")
    assert "size is required" in out
    api.overrides[("PUT", f"/api/target/{T}")] = (400, {"message": "target refused for a test"})
    assert "target refused for a test" in s.cmd(f"/iscsi-targets create {T}")
    assert s.path == "/"
    assert "ok" in s.cmd("/disks create rbd/disk_1 1G")  # still alive
    assert s.close() == 0


def test_tab_completion(session: Session, api: FakeAPI) -> None:
    s = session
    s.cmd("/iscsi-targets create " + T)
    s.cmd("/disks create rbd/disk_1 1G")
    # a path
    s.child.send("cd /isc\t")
    s.child.expect("iscsi-targets/")
    s.child.send("\n")
    s.child.expect(Session.PROMPT)
    assert s.path == "/iscsi-targets"
    # a command
    s.child.send("disc\t")
    s.child.expect("discovery_auth ")
    s.child.send("nochap\n")
    s.child.expect(Session.PROMPT)
    assert ("PUT", "/api/discoveryauth") in [(m, p) for m, p, _ in api.calls()]
    # a parameter value: the disk names of /disks
    s.cmd(f"cd {T}/disks")
    s.child.send("add rbd/di\t")
    s.child.expect("rbd/disk_1 ")
    s.child.send("\n")
    s.child.expect(Session.PROMPT)
    assert ("PUT", f"/api/targetlun/{T}", {"disk": "rbd/disk_1"}) in api.calls()
    assert s.close() == 0


def test_bookmarks_and_goto(session: Session) -> None:
    s = session
    s.cmd(f"/iscsi-targets create {T}")
    s.cmd("goto hosts")  # gwcli keeps gateways/hosts/host-groups bookmarks for the last target
    assert s.path == f"/iscsi-targets/{T}/hosts"
    s.cmd("cd ../gateways")
    s.cmd("bookmarks add gws")
    s.cmd("cd /")
    s.cmd("cd @gws")
    assert s.path == f"/iscsi-targets/{T}/gateways"
    s.cmd("goto")
    assert s.path == "/"
    assert "not a bookmark" in s.cmd("goto nowhere")
    assert s.close() == 0


def test_script_on_stdin_stops_at_the_first_failure(api: FakeAPI, tmp_path: Path) -> None:
    import subprocess

    script = f"/iscsi-targets create {T}\n# a comment\n/disks create rbd/disk_1\n/disks ls\n"
    res = subprocess.run(
        [*gwcli_argv(), "--api", api.url],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, HOME=str(tmp_path)),
    )
    assert res.returncode == 1, res
    assert "size is required" in res.stderr
    assert res.stdout.count("ok") == 1


def test_stale_tree_is_reread_before_a_command(
    api: FakeAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from iscsigw.cli.gwcli.client import APIClient, parse_api_url
    from iscsigw.cli.gwcli.context import Context
    from iscsigw.cli.shell import make_shell

    now = [100.0]
    ctx = Context(APIClient(parse_api_url(api.url)), clock=lambda: now[0])
    ctx.load()
    sh = make_shell(ctx, str(tmp_path / "prefs"))
    sh.refresh_after = 5.0
    sh.run_cmdline("cd /iscsi-targets")
    api.config["targets"][T] = {"portals": {}, "clients": {}, "disks": {}, "groups": {}}
    now[0] += 1
    assert sh.failed is None
    capsys.readouterr()
    sh.run_cmdline("ls")  # fresh enough: the new target is not shown yet
    assert "Targets: 0" in capsys.readouterr().out
    now[0] += 10
    sh.run_cmdline("ls")
    out = capsys.readouterr().out
    assert "Targets: 1" in out and T in out
    assert sh._current_node.path == "/iscsi-targets"
    sh.run_cmdline(f"cd {T}/hosts")  # the new nodes are addressable
    assert sh.failed is None and sh._current_node.path == f"/iscsi-targets/{T}/hosts"
    api.config["targets"].clear()  # someone deleted the target: back to the nearest node
    now[0] += 10
    sh.run_cmdline("pwd")
    assert sh._current_node.path == "/iscsi-targets"
