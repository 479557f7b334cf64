"""Start real ``iscsigw serve`` processes and drive real client tools against them.

Used by the integration, fuzz and conformance tests (fixtures live in ``tests/conftest.py``).
Everything runs on loopback with ports picked at run time; the only processes this module ever
signals are the gateways it started itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from integration.rawclient import Session

REPO_ROOT = Path(__file__).resolve().parents[2]

START_TIMEOUT = 20.0  # seconds until the "iSCSI URL:" line must appear
STOP_TIMEOUT = 10.0  # seconds a gateway has to exit after SIGTERM
TOOL_TIMEOUT = 120.0  # default timeout for one client tool invocation

URL_LINE = re.compile(r"^iSCSI URL: (iscsi://\S+)\s*$")
# iscsi://USER%PASSWORD@IP:PORT/IQN/LUN (the demo credentials never hold '@' or '/')
URL_RE = re.compile(
    r"^iscsi://(?:(?P<user>[^%@/]*)(?:%(?P<password>[^@/]*))?@)?"
    r"(?P<host>[^/:]+|\[[^\]]+\]):(?P<port>\d+)/(?P<iqn>[^/]+)/(?P<lun>\d+)$"
)

DEMO_DISK = "demo/disk0"
DEMO_SIZE = 1 << 30


# -- small utilities ----------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host`` (bind to port 0 and release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def require_tool(name: str) -> str:
    """Path of a client binary; skip the test (only) when it is not installed.

    Under CI (``CI=true``; ``make test`` installed the tools) a missing tool fails instead, so
    a broken setup cannot turn the integration suite into a row of skips.
    """
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (run scripts/install-test-deps)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(msg + " [CI=true: missing tools fail]")
        pytest.skip(msg)
    return path


@dataclass
class ToolResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit {self.returncode}\n"
            f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}"
        )


def run_tool(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float = TOOL_TIMEOUT,
    env: dict[str, str] | None = None,
    check: bool = False,
) -> ToolResult:
    """Run a client tool without stdin; a hang is a test failure, not a skip."""
    args = [str(a) for a in argv]
    require_tool(args[0])
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        cp = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=full_env,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        pytest.fail(
            f"timed out after {timeout:.0f}s: {' '.join(args)}\n"
            f"--- stdout ---\n{(out or '')[-4000:]}\n--- stderr ---\n{(err or '')[-4000:]}"
        )
    res = ToolResult(args, cp.returncode, cp.stdout, cp.stderr)
    if check and res.returncode != 0:
        pytest.fail("command failed:\n" + res.describe())
    return res


def gateway_command() -> list[str]:
    """How to start the gateway: $ISCSIGW_CMD, else the ``iscsigw`` console script next to
    this interpreter (the venv's), else ``python -m iscsigw.cli.main``."""
    override = os.environ.get("ISCSIGW_CMD")
    if override:
        return override.split()
    script = Path(sys.executable).parent / "iscsigw"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "iscsigw.cli.main"]


# -- gateway.conf edits (keep every edit the tests make in this one place) ----------------------


def load_config(data_dir: Path) -> dict[str, Any]:
    cfg: dict[str, Any] = json.loads((data_dir / "gateway.conf").read_text())
    return cfg


def save_config(data_dir: Path, cfg: dict[str, Any]) -> None:
    path = data_dir / "gateway.conf"
    tmp = path.with_suffix(".conf.tmp")
    tmp.write_text(json.dumps(cfg, indent=4, sort_keys=True) + "\n")
    tmp.replace(path)


def config_open_access(cfg: dict[str, Any]) -> None:
    """Every target admits any initiator without CHAP."""
    for target in cfg["targets"].values():
        target["acl_enabled"] = False
        target["auth_required"] = False
        auth = target.setdefault("auth", {})
        auth["username"] = ""
        auth["password"] = ""


def config_acl(allowed_iqn: str) -> Callable[[dict[str, Any]], None]:
    """ACL on: only ``allowed_iqn`` may log in, with the target's (demo) CHAP credentials as
    its client credentials (ceph-iscsi keeps CHAP per client when the ACL is enabled)."""

    def edit(cfg: dict[str, Any]) -> None:
        for target in cfg["targets"].values():
            auth = dict(target.get("auth") or {})
            target["acl_enabled"] = True
            target["clients"] = {
                allowed_iqn: {
                    "auth": {
                        "username": auth.get("username", ""),
                        "password": auth.get("password", ""),
                        "password_encryption_enabled": False,
                        "mutual_username": "",
                        "mutual_password": "",
                        "mutual_password_encryption_enabled": False,
                    },
                    "luns": dict(target.get("disks") or {}),
                    "group_name": "",
                }
            }
            target["auth"] = {
                **auth,
                "username": "",
                "password": "",
            }

    return edit


# -- the gateway process ------------------------------------------------------------------------


class Gateway:
    """One ``iscsigw serve --demo`` subprocess on loopback.

    ``start()`` waits for the ``iSCSI URL:`` line; ``stop()`` sends SIGTERM and asserts exit
    code 0 within STOP_TIMEOUT.  stderr goes to ``log_path`` (attached to failing test reports
    by tests/conftest.py).
    """

    def __init__(
        self,
        data_dir: Path,
        log_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        name: str = "gw1",
        extra_portals: Sequence[str] = (),
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.name = name
        self.extra_portals = list(extra_portals)
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url: str = ""
        self.user: str = ""
        self.password: str = ""
        self.iqn: str = ""
        self.lun: int = 0
        self.stdout_lines: list[str] = []
        self.starts = 0
        self.stopped_by_test = False  # set once stop() has checked the exit status
        self._url_event = threading.Event()
        self._reader: threading.Thread | None = None
        self._log_file: Any = None
        self.log_path = self.log_dir / f"{self.name}.stderr.log"
        self.stdout_path = self.log_dir / f"{self.name}.stdout.log"

    # -- properties derived from the URL ---------------------------------------------------------
    @property
    def portal(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def lun_url(
        self, *, user: str | None = None, password: str | None = None, lun: int | None = None
    ) -> str:
        """iscsi:// URL of a LUN (default: the demo LUN); ``user=""`` omits the credentials."""
        lun = self.lun if lun is None else lun
        return f"{self._portal_url(user, password)}/{self.iqn}/{lun}"

    def portal_url(self, *, user: str | None = None, password: str | None = None) -> str:
        return self._portal_url(user, password)

    def _portal_url(self, user: str | None, password: str | None) -> str:
        u = self.user if user is None else user
        p = self.password if password is None else password
        cred = ""
        if u:
            cred = f"{u}%{p}@" if p else f"{u}@"
        return f"iscsi://{cred}{self.portal}"

    def qemu_opts(self, *, header_digest: str | None = None, size: int | None = None) -> str:
        """``--image-opts`` / ``--target-image-opts`` string for QEMU's iscsi driver.

        QEMU 7.2 segfaults on libiscsi's ``?header_digest=`` URL argument, so digests are only
        ever requested this way.
        """
        opts = ["driver=raw"]
        if size is not None:
            opts.append(f"size={size}")
        opts += [
            "file.driver=iscsi",
            "file.transport=tcp",
            f"file.portal={self.portal}",
            f"file.target={self.iqn}",
            f"file.lun={self.lun}",
        ]
        if self.user:
            opts += [f"file.user={self.user}", f"file.password={self.password}"]
        if header_digest:
            opts.append(f"file.header-digest={header_digest}")
        return ",".join(opts)

    def session(self, timeout: float = 10.0) -> Session:
        """A ``rawclient.Session`` connected (not yet logged in) to this gateway's demo LUN."""
        return Session(self.host, self.port, timeout=timeout, lun=self.lun)

    def login(self, **kwargs: Any) -> Session:
        """A ``rawclient.Session`` logged in with the demo credentials."""
        s = self.session()
        try:
            s.login(self.iqn, user=self.user, password=self.password, **kwargs)
        except BaseException:
            s.close()
            raise
        return s

    @property
    def disk_path(self) -> Path:
        return self.data_dir / DEMO_DISK

    # -- lifecycle ---------------------------------------------------------------------------
    def argv(self) -> list[str]:
        argv = [*gateway_command(), "serve", "--data-dir", str(self.data_dir)]
        for portal in [self.portal, *self.extra_portals]:
            argv += ["--portal", portal]
        argv += ["--name", self.name, "--demo", *self.extra_args]
        return argv

    def start(self, timeout: float = START_TIMEOUT) -> Gateway:
        assert not self.alive(), "gateway already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.stopped_by_test = False
        self._url_event.clear()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap
        self._log_file.write(f"==== start #{self.starts}: {' '.join(self.argv())}\n".encode())
        self._log_file.flush()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("PYTHONFAULTHANDLER", "1")
        self.proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,  # a Ctrl-C of pytest does not hit the gateway first
        )
        self._reader = threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True)
        self._reader.start()
        restart = self.starts > 1 and bool(self.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._url_event.wait(0.1):
                break
            if self.proc.poll() is not None:
                self._reap()
                raise AssertionError(
                    f"gateway exited with {self.proc.returncode} before printing its URL\n"
                    + self.log_tail()
                )
            # A restarted gateway (existing data dir) may not print the demo URL again: then
            # accept a listening port, after giving the URL line a moment to appear.
            if restart and self._port_open():
                self._url_event.wait(2.0)
                break
        else:
            self._kill()
            raise AssertionError(
                f"gateway did not print 'iSCSI URL:' within {timeout:.0f}s\n" + self.log_tail()
            )
        if not self.url:
            raise AssertionError("no iSCSI URL")
        # The URL line may come before the listening socket is up: wait for both.
        self._wait_port(deadline)
        return self

    def _port_open(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _wait_port(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self._port_open():
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"gateway is not listening on {self.portal}\n" + self.log_tail())

    def _read_stdout(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with open(self.stdout_path, "ab") as out:
            for raw in proc.stdout:
                out.write(raw)
                out.flush()
                line = raw.decode(errors="replace").rstrip("\r\n")
                self.stdout_lines.append(line)
                m = URL_LINE.match(line)
                if m and not self._url_event.is_set():
                    self._set_url(m.group(1))
                    self._url_event.set()

    def _set_url(self, url: str) -> None:
        m = URL_RE.match(url)
        if not m:
            raise AssertionError(f"unparsable iSCSI URL line: {url!r}")
        first = not self.url
        self.url = url
        if first:
            # The first (seeding) run defines the demo credentials; a restart after a config
            # edit (e.g. ACL mode, which moves CHAP to the client) keeps using them.
            self.user = m.group("user") or ""
            self.password = m.group("password") or ""
            self.iqn = m.group("iqn")
            self.lun = int(m.group("lun"))
        host, port = m.group("host"), int(m.group("port"))
        if (host, port) != (self.host, self.port):
            raise AssertionError(f"URL {url} does not name the portal {self.portal}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self) -> None:
        assert self.proc is not None, "gateway was never started"
        rc = self.proc.poll()
        assert rc is None, f"gateway died with exit code {rc}\n" + self.log_tail()

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Signal the gateway, wait, and assert it exited 0 (after it was alive until now)."""
        assert self.proc is not None, "gateway was never started"
        rc = self.proc.poll()
        if rc is not None:
            self._reap()
            raise AssertionError(f"gateway had already exited with {rc}\n" + self.log_tail())
        self.proc.send_signal(sig)
        self.stopped_by_test = True
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise AssertionError(
                f"gateway did not exit within {timeout:.0f}s of {signal.Signals(sig).name}\n"
                + self.log_tail()
            )
        self._reap()
        assert rc == 0, (
            f"gateway exited with {rc} on {signal.Signals(sig).name}, expected 0\n"
            + self.log_tail()
        )
        return rc

    def restart(self, edit: Callable[[dict[str, Any]], None] | None = None) -> Gateway:
        """Stop (asserting a clean exit), optionally edit gateway.conf, start again."""
        self.stop()
        if edit is not None:
            cfg = load_config(self.data_dir)
            edit(cfg)
            save_config(self.data_dir, cfg)
        return self.start()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        self._reap()

    def _reap(self) -> None:
        """Release the pipes and log file of a gateway that has exited."""
        proc = self.proc
        if proc is not None and proc.poll() is not None:
            if self._reader is not None:
                self._reader.join(2)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def cleanup(self) -> None:
        """Last-resort teardown: kill a gateway a failed test left running (no assertion)."""
        self._kill()

    # -- logs -------------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        text = self.log_text().splitlines()[-lines:]
        return f"--- gateway stderr ({self.log_path}), last {len(text)} lines ---\n" + "\n".join(
            text
        )

    def assert_no_tracebacks(self) -> None:
        """Malformed input must be handled, not escape as an unhandled exception."""
        text = self.log_text()
        assert "Traceback (most recent call last)" not in text, (
            "the gateway logged a Python traceback\n" + self.log_tail(200)
        )


def make_gateway(
    base: Path,
    *,
    name: str = "gw1",
    host: str = "127.0.0.1",
    configure: Callable[[dict[str, Any]], None] | None = None,
    **kwargs: Any,
) -> Gateway:
    """Seed a demo data dir and start a gateway on it; with ``configure``, the demo config is
    seeded by a first run, edited, and the gateway restarted."""
    gw = Gateway(base / f"{name}-data", base / "logs", host=host, name=name, **kwargs)
    gw.start()
    if configure is not None:
        gw.restart(configure)
    return gw


GatewayFactory = Callable[..., Gateway]
