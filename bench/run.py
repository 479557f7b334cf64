#!/usr/bin/env python3
"""Benchmark iscsigw against Linux tgt (tgtd) on loopback, with the same backing and parameters.

    python3 bench/run.py [--quick] [--runs N] [--seconds S] [--out bench/RESULTS.md]

What it does (see bench/README.md for the reasoning and the caveats):

* creates one 1 GiB file per target on /dev/shm, filled with non-zero data (so no target can
  answer reads of "unmapped" blocks without touching data);
* starts ``iscsigw serve --demo`` (data dir on /dev/shm) and a foreground ``tgtd`` (rdwr backing
  store, CHAP on, the same session parameters as iscsigw), each on a free loopback port and,
  for tgtd, a free control port; checks that the listening socket really belongs to the process
  it started (tgtd silently falls back to 0.0.0.0:3260 when its portal cannot be bound);
* measures the physical limits of the box: one loopback TCP stream and memory copy bandwidth;
* runs the workloads against both targets, alternating which target goes first, and reports
  medians, gateway CPU seconds per GiB and per 100k IOs (from /proc/PID/stat), and peak RSS;
* writes a markdown report to ``--out`` and stops only the processes it started.

Python 3.11 standard library only; needs root only to install missing Debian packages.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as _dt
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
GIB = 1 << 30
MIB = 1 << 20
LUN_SIZE = GIB
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOOPBACK = "127.0.0.1"

# The session parameters the comparison is run at when iscsigw's own cannot be read (the
# project's performance issue asks for these). When iscsigw starts, its effective target
# controls (gateway.conf + its defaults) replace them, so that tgt is tuned like iscsigw.
SPEC_PARAMS: dict[str, int | bool] = {
    "max_recv_data_segment_length": 262144,
    "max_xmit_data_segment_length": 262144,
    "first_burst_length": 262144,
    "max_burst_length": 1048576,
    "initial_r2t": False,
    "immediate_data": True,
}
# iscsigw (ceph-iscsi) control name -> tgt iSCSI parameter name
TGT_PARAM_NAMES = {
    "max_recv_data_segment_length": "MaxRecvDataSegmentLength",
    "max_xmit_data_segment_length": "MaxXmitDataSegmentLength",
    "first_burst_length": "FirstBurstLength",
    "max_burst_length": "MaxBurstLength",
    "initial_r2t": "InitialR2T",
    "immediate_data": "ImmediateData",
    "max_outstanding_r2t": "MaxOutstandingR2T",
    "cmdsn_depth": "MaxQueueCmd",
}

# Debian package for each external tool; "required" tools abort the run when missing.
TOOLS: dict[str, tuple[str, bool]] = {
    "tgtd": ("tgt", True),
    "tgtadm": ("tgt", True),
    "iscsi-perf": ("libiscsi-bin", True),
    "iscsi-readcapacity16": ("libiscsi-bin", True),
    "qemu-img": ("qemu-utils", True),
    "qemu-nbd": ("qemu-utils", False),
    "iperf3": ("iperf3", False),
    "fio": ("fio", False),
}
VERSION_PACKAGES = ["tgt", "libiscsi-bin", "qemu-utils", "qemu-block-extra", "iperf3", "fio"]


class BenchError(Exception):
    """A failure the user should read (not a traceback)."""


_SECRETS = [
    (re.compile(r"(iscsi://[^%@/\s]+%)[^@/\s]+@"), r"\1***@"),
    (re.compile(r"(password=)[^,\s]+"), r"\1***"),
]


def redact(text: str) -> str:
    """Hide CHAP secrets (URLs, QEMU options) in messages and the report."""
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return text


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {redact(msg)}", flush=True)


def run(
    cmd: list[str], timeout: float, check: bool = True, **kw: object
) -> subprocess.CompletedProcess[str]:
    """subprocess.run with a mandatory timeout and captured text output."""
    try:
        cp: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
            cmd, capture_output=True, text=True, timeout=timeout, errors="replace", **kw
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"timed out after {timeout:.0f}s: {' '.join(cmd)}") from exc
    except FileNotFoundError as exc:
        raise BenchError(f"not found: {cmd[0]}") from exc
    if check and cp.returncode != 0:
        tail = (cp.stdout + cp.stderr).strip().splitlines()[-8:]
        raise BenchError(f"exit {cp.returncode}: {' '.join(cmd)}\n    " + "\n    ".join(tail))
    return cp


# -- tools and machine ---------------------------------------------------------------------


def qemu_iscsi_driver_present() -> bool:
    return any(Path("/usr/lib").glob("*/qemu/block-iscsi.so")) or any(
        Path("/usr/lib").glob("qemu/block-iscsi.so")
    )


def check_tools(install: bool) -> dict[str, bool]:
    """Which tools exist; installs missing Debian packages when root and allowed."""

    def scan() -> tuple[dict[str, bool], set[str]]:
        have = {t: shutil.which(t) is not None for t in TOOLS}
        pkgs = {TOOLS[t][0] for t, ok in have.items() if not ok}
        if have["qemu-img"] and not qemu_iscsi_driver_present():
            pkgs.add("qemu-block-extra")
        return have, pkgs

    have, missing = scan()
    if missing and install and os.geteuid() == 0:
        pkgs = sorted(missing)
        log(f"installing missing packages: {' '.join(pkgs)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-q", *pkgs]
        try:
            cp = run(cmd, timeout=600, check=False, env=env)
            if cp.returncode != 0:
                run(["apt-get", "update", "-q"], timeout=600, check=False, env=env)
                run(cmd, timeout=600, check=False, env=env)
        except BenchError as exc:
            log(f"install failed: {exc}")
        have, missing = scan()
    if missing:
        log(
            "missing: "
            + ", ".join(sorted(missing))
            + "; install with:  apt-get install -y "
            + " ".join(sorted(missing))
        )
    need = sorted(t for t, (_, req) in TOOLS.items() if req and not have[t])
    if need or not qemu_iscsi_driver_present():
        raise BenchError(
            "required tools missing: "
            + ", ".join(need or ["qemu iscsi block driver"])
            + "\n  apt-get install -y tgt libiscsi-bin qemu-utils qemu-block-extra"
        )
    return have


def machine_info() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    info = {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }
    with contextlib.suppress(BenchError, OSError):
        rev = run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], 10).stdout.strip()
        dirty = run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], 10
        ).stdout.strip()
        info["iscsigw"] = rev + (" + uncommitted changes in src/" if dirty else "")
    return info


def tool_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(BenchError):
        cp = run(
            ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *VERSION_PACKAGES],
            20,
            check=False,
        )
        for line in cp.stdout.splitlines():
            name, _, ver = line.partition(" ")
            if ver:
                out[name] = ver
    return out


# -- process accounting --------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()  # fields from #3 (state) on


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int(_stat_fields(int(d))[1])
                children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cpu_seconds(pid: int) -> float:
    """utime+stime of the process (all threads), its reaped children and live descendants."""
    total = 0
    f = _stat_fields(pid)
    total += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
    for child in _descendants(pid):
        with contextlib.suppress(OSError):
            total += sum(int(x) for x in _stat_fields(child)[11:13])
    return total / CLK_TCK


def peak_rss_kib(pid: int) -> int:
    """VmHWM of the process and its live descendants, in KiB."""
    total = 0
    for p in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total


def machine_busy_seconds() -> float:
    """user+nice+system CPU seconds of the whole machine, from /proc/stat."""
    f = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(f[1]) + int(f[2]) + int(f[3])) / CLK_TCK


def own_cpu_seconds(extra_pids: list[int]) -> float:
    """CPU of this script, its reaped children (the tools) and the live processes we started."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    for pid in extra_pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += cpu_seconds(pid)
    return total


def listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    return inodes


def owns_listener(pid: int, port: int) -> bool:
    """Is a socket listening on ``port`` held open by ``pid`` (or a descendant)?"""
    inodes = listening_inodes(port)
    if not inodes:
        return False
    for p in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{p}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{p}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def stop_process(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None,
    name: str,
    first: int = signal.SIGTERM,
    grace: float = 10.0,
) -> None:
    """Stop one process we started: ``first`` signal, then SIGKILL after ``grace`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((first, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
    log(f"warning: {name} (pid {proc.pid}) did not exit")


class OutputReader:
    """Collects a child's merged stdout/stderr lines in a thread (so pipes never fill)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._proc = proc
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = pattern.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self._proc.poll() is not None and not self._t.is_alive()):
                    return None
                self._cond.wait(min(left, 0.2))

    def tail(self, n: int = 15) -> str:
        return "\n    ".join(self.lines[-n:]) or "(no output)"


def fill_file(path: Path, size: int) -> None:
    """Create ``path`` with ``size`` bytes of non-zero, non-repeating-per-MiB data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = bytearray(os.urandom(MIB))
    with open(path, "wb") as f:
        for i in range(size // MIB):
            block[:8] = i.to_bytes(8, "little")  # no two MiB are identical
            f.write(block)


# -- targets -------------------------------------------------------------------------------


@dataclass
class Endpoint:
    host: str
    port: int
    iqn: str
    lun: int
    user: str
    password: str
    block_size: int = 512
    lbpme: bool = (
        False  # advertises logical block provisioning (thin): QEMU then asks GET LBA STATUS
    )

    def url(self, digest: str) -> str:
        """libiscsi URL (iscsi-perf); QEMU gets image_opts() instead (it crashes on '?...')."""
        return (
            f"iscsi://{self.user}%{self.password}@{self.host}:{self.port}/{self.iqn}/{self.lun}"
            f"?header_digest={digest}"
        )

    def image_opts(self, digest: str) -> str:
        return ",".join(
            [
                "driver=raw",
                "file.driver=iscsi",
                "file.transport=tcp",
                f"file.portal={self.host}:{self.port}",
                f"file.target={self.iqn}",
                f"file.lun={self.lun}",
                f"file.user={self.user}",
                f"file.password={self.password}",
                f"file.header-digest={digest}",
            ]
        )


class Target:
    """A running iSCSI target: ``start()``, ``endpoint``, ``pid``, ``stop()``."""

    kind = "?"

    def __init__(self, label: str, workdir: Path) -> None:
        self.label = label
        self.workdir = workdir
        self.proc: subprocess.Popen[str] | None = None
        self.endpoint: Endpoint | None = None
        self.error: str | None = None
        self.hwm_kib = 0
        self.nbd: subprocess.Popen[str] | None = None  # qemu-nbd bridge for fio (lazy)
        self.nbd_socket: Path | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sample_rss(self) -> None:
        if self.alive():
            with contextlib.suppress(OSError):
                self.hwm_kib = max(self.hwm_kib, peak_rss_kib(self.pid))

    def start(self, params: dict[str, int | bool], creds: tuple[str, str]) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        stop_process(self.nbd, f"qemu-nbd for {self.label}")
        self.sample_rss()
        self._stop()

    def _stop(self) -> None:
        stop_process(self.proc, self.label)

    def session_params(self) -> dict[str, int | bool] | None:
        return None


class TgtTarget(Target):
    kind = "tgt"
    IQN = "iqn.2026-11.io.iscsigw.bench:tgt"

    def __init__(self, label: str, workdir: Path) -> None:
        super().__init__(label, workdir)
        self.ctl: int | None = None
        self._log_file: Path = workdir / f"{label}.log"

    def adm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["tgtadm", "-C", str(self.ctl), "--lld", "iscsi", *args], 20, check=check)

    @staticmethod
    def _free_control_port() -> int:
        for _ in range(100):
            n = random.randint(20000, 32767)  # tgtd accepts at most 32767
            if (
                not Path(f"/var/run/tgtd/socket.{n}").exists()
                and not Path(f"/var/run/tgtd/socket.{n}.lock").exists()
            ):
                return n
        raise BenchError("no free tgtd control port found")

    def start(self, params: dict[str, int | bool], creds: tuple[str, str]) -> None:
        backing = Path(f"/dev/shm/iscsigw-bench-{os.getpid()}-{self.label}.img")
        self.backing = backing
        fill_file(backing, LUN_SIZE)
        last = ""
        for attempt in range(3):
            port, self.ctl = free_port(), self._free_control_port()
            logf = open(self._log_file, "w")  # noqa: SIM115 - closed below
            try:
                self.proc = subprocess.Popen(
                    ["tgtd", "-f", "-C", str(self.ctl), "--iscsi", f"portal={LOOPBACK}:{port}"],
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                )
            finally:
                logf.close()
            ok = self._wait_ready(port)
            if ok:
                break
            last = self._log_file.read_text(errors="replace")[-1500:]
            self._stop()
            log(
                f"{self.label}: tgtd not ready on {LOOPBACK}:{port} (attempt {attempt + 1}); retrying"
            )
        else:
            raise BenchError(
                f"tgtd did not come up on a free port in 3 attempts:\n    {last.strip()}"
            )
        user, password = creds
        self.adm("--op", "new", "--mode", "target", "--tid", "1", "-T", self.IQN)
        self.adm(
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "1",
            "-b",
            str(backing),
            "--bstype",
            "rdwr",
        )
        self.adm("--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")
        self.adm("--op", "new", "--mode", "account", "--user", user, "--password", password)
        self.adm("--op", "bind", "--mode", "account", "--tid", "1", "--user", user)
        for key, value in params.items():
            name = TGT_PARAM_NAMES.get(key)
            if name is None:
                continue
            v = ("Yes" if value else "No") if isinstance(value, bool) else str(value)
            self.adm(
                "--mode", "target", "--op", "update", "--tid", "1", "--name", name, "--value", v
            )
        self.endpoint = Endpoint(LOOPBACK, port, self.IQN, 1, user, password)
        self._applied = self.session_params()

    def _wait_ready(self, port: int) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            cp = run(
                [
                    "tgtadm",
                    "-C",
                    str(self.ctl),
                    "--lld",
                    "iscsi",
                    "--mode",
                    "portal",
                    "--op",
                    "show",
                ],
                10,
                check=False,
            )
            if cp.returncode == 0:
                portals = re.findall(r"Portal: (\S+),", cp.stdout)
                # tgtd falls back to 0.0.0.0:3260 when our portal is taken: never accept that
                if portals and portals != [f"{LOOPBACK}:{port}"]:
                    return False
                if portals and owns_listener(self.pid, port):
                    return True
            time.sleep(0.1)
        return False

    def session_params(self) -> dict[str, int | bool] | None:
        cp = self.adm("--mode", "target", "--op", "show", "--tid", "1", check=False)
        out: dict[str, int | bool] = {}
        for key, name in TGT_PARAM_NAMES.items():
            m = re.search(rf"^{name}=(\S+)$", cp.stdout, re.M)
            if m:
                v = m.group(1)
                out[key] = v == "Yes" if v in ("Yes", "No") else int(v)
        return out

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(OSError, AttributeError):
            self.backing.unlink()

    def _stop(self) -> None:
        if self.alive() and self.ctl is not None:
            # tgtd ignores SIGTERM while it has targets: remove them, then ask it to exit
            with contextlib.suppress(BenchError):
                self.adm("--op", "delete", "--mode", "target", "--tid", "1", "--force", check=False)
                run(
                    ["tgtadm", "-C", str(self.ctl), "--op", "delete", "--mode", "system"],
                    10,
                    check=False,
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                assert self.proc is not None
                self.proc.wait(timeout=5)
        stop_process(self.proc, self.label)
        if self.ctl is not None and self.proc is not None and self.proc.poll() is not None:
            for suffix in ("", ".lock"):  # the control socket files our tgtd created
                with contextlib.suppress(OSError):
                    Path(f"/var/run/tgtd/socket.{self.ctl}{suffix}").unlink()


class IscsigwTarget(Target):
    kind = "iscsigw"
    exe: Path = VENV_BIN / "iscsigw"
    tune = True  # set the session parameters given to start() (--params spec)
    URL_RE = re.compile(
        r"iSCSI URL: iscsi://([^%@/\s]+)%([^@/\s]+)@([\d.]+):(\d+)/(\S+?)/(\d+)\s*$"
    )

    def start(self, params: dict[str, int | bool], creds: tuple[str, str]) -> None:
        exe = self.exe
        if not exe.exists():
            raise BenchError(
                f"{exe} not found; create the venv: python3 -m venv .venv && "
                ".venv/bin/pip install -e '.[dev]'"
            )
        self.data_dir = Path(
            tempfile.mkdtemp(prefix=f"iscsigw-bench-{self.label}-", dir="/dev/shm")
        )
        # --demo never truncates an existing disk file: pre-fill it like tgt's backing file.
        fill_file(self.data_dir / "demo" / "disk0", LUN_SIZE)
        last = ""
        for attempt in range(3):
            port = free_port()
            cmd = [
                str(exe),
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--portal",
                f"{LOOPBACK}:{port}",
                "--name",
                "bench",
                "--demo",
            ]
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
                cwd=str(REPO),
            )
            self.reader = OutputReader(self.proc)
            m = self.reader.wait_for(self.URL_RE, 30)
            if m and self._wait_listening(port):
                user, password, host, p, iqn, lun = m.groups()
                self.endpoint = Endpoint(host, int(p), iqn, int(lun), user, password)
                if self.tune:
                    self._reconfigure(iqn, params)
                return
            last = self.reader.tail()
            why = (
                (f"exited with code {self.proc.poll()}")
                if not self.alive()
                else (
                    "printed no 'iSCSI URL:' line in 30 s"
                    if not m
                    else f"is not listening on {port}"
                )
            )
            self._stop()
            if "Address already in use" not in last:
                raise BenchError(f"{self.exe} {why}:\n    {last}")
            log(f"{self.label}: port {port} taken (attempt {attempt + 1}); retrying")
        raise BenchError(f"{self.exe}: no free port in 3 attempts:\n    {last}")

    def _reconfigure(self, iqn: str, params: dict[str, int | bool]) -> None:
        """Set the target's session parameters the way an operator would: through the REST
        API (ceph-iscsi's PUT /api/target/<iqn> mode=reconfigure), before any client logs in."""
        assert self.reader is not None
        m = self.reader.wait_for(re.compile(r"API URL: (http://([^:]+):([^@]+)@(\S+))"), 10)
        if not m:
            raise BenchError("iscsigw printed no 'API URL:' line")
        _, user, password, hostport = m.groups()
        controls = {
            k: ("Yes" if v else "No") if isinstance(v, bool) else v for k, v in params.items()
        }
        body = urllib.parse.urlencode({"mode": "reconfigure", "controls": json.dumps(controls)})
        req = urllib.request.Request(
            f"http://{hostport}/api/target/{iqn}", data=body.encode(), method="PUT"
        )
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(req, timeout=30) as rsp:
                rsp.read()
        except (OSError, urllib.error.HTTPError) as exc:
            detail = (
                exc.read().decode(errors="replace")
                if isinstance(exc, urllib.error.HTTPError)
                else ""
            )
            raise BenchError(f"reconfiguring {iqn} through the API failed: {exc} {detail}") from exc

    def _wait_listening(self, port: int) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.alive():
            if owns_listener(self.pid, port):
                return True
            time.sleep(0.1)
        return False

    def session_params(self) -> dict[str, int | bool] | None:
        """iscsigw's effective target controls: gateway.conf values over its own defaults."""
        conf = self.data_dir / "gateway.conf"
        try:
            doc = json.loads(conf.read_text())
        except (OSError, ValueError):
            return None
        target = (doc.get("targets") or {}).get(self.endpoint.iqn if self.endpoint else "", {})
        controls = dict(target.get("controls") or {})
        code = (
            "import json\nfrom iscsigw.config.model import TARGET_CONTROLS as T\n"
            "print(json.dumps({k: c.default for k, c in T.items()}))"
        )
        try:
            py = self.exe.parent / "python"
            cp = run([str(py if py.exists() else VENV_BIN / "python"), "-c", code], 30)
            defaults = json.loads(cp.stdout)
        except (BenchError, ValueError):
            return None
        out = {k: v for k, v in defaults.items() if k in TGT_PARAM_NAMES}
        for k, v in controls.items():
            if k in TGT_PARAM_NAMES:
                out[k] = (
                    v
                    if isinstance(v, bool | int)
                    else (
                        str(v).lower() in ("yes", "true", "1")
                        if k in ("initial_r2t", "immediate_data")
                        else int(v)
                    )
                )
        return out

    def _stop(self) -> None:
        stop_process(self.proc, self.label, first=signal.SIGINT, grace=10)

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(OSError, AttributeError):
            shutil.rmtree(self.data_dir)


def read_capacity(ep: Endpoint, digest: str) -> None:
    """Fill in the LUN's block size and LBPME from READ CAPACITY(16)."""
    cp = run(["iscsi-readcapacity16", ep.url(digest)], 30)
    m = re.search(r"LOGICAL BLOCK LENGTH IN BYTES:(\d+)", cp.stdout)
    if not m:
        raise BenchError(f"iscsi-readcapacity16 printed no block length:\n{cp.stdout[-500:]}")
    size = re.search(r"Total size:(\d+)", cp.stdout)
    if size and int(size.group(1)) < LUN_SIZE:
        log(f"note: LUN is {int(size.group(1)) / MIB:.0f} MiB, smaller than {LUN_SIZE // MIB} MiB")
    ep.block_size = int(m.group(1))
    ep.lbpme = bool(re.search(r"LBPME:1", cp.stdout))


# -- workloads -----------------------------------------------------------------------------


@dataclass
class Sample:
    ios: int
    nbytes: int
    seconds: float  # the tool's own measured time (login excluded where the tool allows)
    cpu: float = 0.0  # target CPU seconds during the whole tool run (login included)
    wall: float = 0.0  # wall seconds of the whole tool run
    foreign: float = 0.0  # cores kept busy meanwhile by processes that are not part of the bench

    @property
    def iops(self) -> float:
        return self.ios / self.seconds

    @property
    def mibs(self) -> float:
        return self.nbytes / MIB / self.seconds


@dataclass
class Workload:
    key: str
    title: str
    tool: str
    io_size: int
    unit: str  # "IOPS" or "MiB/s": the headline figure
    fn: Callable[[Target, Workload, Bench], Sample]
    depth: int = 1
    write: bool = False
    na: str | None = None  # set when the workload cannot run, with the reason
    cal_bytes: int = 0  # qemu-img bench: bytes moved by the (unrecorded) calibration run
    digest: str | None = None  # HeaderDigest for this workload (None: --digest)
    fio_rw: str = "randrw"  # fio nbd workloads: --rw (randrw mixes 70 % reads)


def _iscsi_perf(t: Target, w: Workload, b: Bench) -> Sample:
    ep = t.endpoint
    assert ep is not None
    blocks = max(1, w.io_size // ep.block_size)
    secs = b.seconds
    cp = run(
        [
            "iscsi-perf",
            "-r",
            "-m",
            str(w.depth),
            "-b",
            str(blocks),
            "-t",
            str(secs),
            ep.url(w.digest or b.digest),
        ],
        timeout=secs + 60,
        check=False,
    )
    text = cp.stdout.replace("\r", "\n")
    found = re.findall(r"iops average (\d+) \(", text)
    if cp.returncode != 0 or not found:
        tail = "\n    ".join((text + cp.stderr).strip().splitlines()[-6:])
        raise BenchError(f"iscsi-perf failed (exit {cp.returncode}):\n    {tail}")
    iops = int(found[-1])
    ios = iops * secs
    return Sample(ios, ios * w.io_size, float(secs))


def _qemu_bench(t: Target, w: Workload, b: Bench) -> Sample:
    ep = t.endpoint
    assert ep is not None
    key = (t.label, w.key)
    rate = b.rates.get(key)
    # calibration: a short first run sizes the real ones to ~--seconds
    count = max(16, w.cal_bytes // w.io_size if rate is None else int(rate * b.seconds))
    cmd = [
        "qemu-img",
        "bench",
        "--image-opts",
        "-c",
        str(count),
        "-d",
        str(w.depth),
        "-s",
        str(w.io_size),
    ]
    if w.write:
        cmd += ["-w", "--pattern=165"]
    cmd.append(ep.image_opts(w.digest or b.digest))
    limit = 60 + (count / rate * 4 if rate else 60)
    cp = run(cmd, timeout=limit, check=False)
    m = re.search(r"Run completed in ([\d.]+) seconds", cp.stdout)
    if cp.returncode != 0 or not m:
        tail = "\n    ".join((cp.stdout + cp.stderr).strip().splitlines()[-6:])
        raise BenchError(f"qemu-img bench failed (exit {cp.returncode}):\n    {tail}")
    secs = max(float(m.group(1)), 1e-3)
    b.rates[key] = count / secs
    return Sample(count, count * w.io_size, secs)


def _fio_nbd(t: Target, w: Workload, b: Bench) -> Sample:
    """fio (no libiscsi engine in Debian) -> NBD -> qemu-nbd -> libiscsi -> target."""
    ep = t.endpoint
    assert ep is not None
    if t.nbd is None or t.nbd.poll() is not None:
        t.nbd_socket = b.workdir / f"{t.label}.nbd.sock"
        with contextlib.suppress(OSError):
            t.nbd_socket.unlink()
        t.nbd = subprocess.Popen(
            [
                "qemu-nbd",
                "--persistent",
                "--cache=none",
                "-k",
                str(t.nbd_socket),
                "--image-opts",
                ep.image_opts(w.digest or b.digest),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while not t.nbd_socket.exists():
            if t.nbd.poll() is not None or time.monotonic() > deadline:
                err = t.nbd.stderr.read() if t.nbd.stderr and t.nbd.poll() is not None else ""
                stop_process(t.nbd, "qemu-nbd")
                raise BenchError(f"qemu-nbd did not come up: {err.strip()[-500:]}")
            time.sleep(0.05)
    out = b.workdir / f"fio-{t.label}-{w.key}.json"
    cmd = [
        "fio",
        "--name=bench",
        "--ioengine=nbd",
        f"--uri=nbd+unix:///?socket={t.nbd_socket}",
        f"--rw={w.fio_rw}",
        "--rwmixread=70",
        f"--bs={w.io_size}",
        f"--iodepth={w.depth}",
        "--time_based",
        f"--runtime={b.seconds}",
        f"--size={LUN_SIZE}",
        "--randrepeat=0",
        "--output-format=json",
        f"--output={out}",
    ]
    cp = run(cmd, timeout=b.seconds + 60, check=False)
    try:
        job = json.loads(out.read_text())["jobs"][0]
    except (OSError, ValueError, KeyError, IndexError):
        raise BenchError(
            f"fio failed (exit {cp.returncode}): {(cp.stdout + cp.stderr).strip()[-500:]}"
        )
    if job.get("error"):
        raise BenchError(f"fio job error {job['error']}")
    ios = int(job["read"]["total_ios"]) + int(job["write"]["total_ios"])
    nbytes = int(job["read"]["io_bytes"]) + int(job["write"]["io_bytes"])
    secs = max(int(job["read"]["runtime"]), int(job["write"]["runtime"])) / 1000
    return Sample(ios, nbytes, secs)


def run_fio_rbd(pool: str, image: str, *, rw: str, bs: int, iodepth: int, seconds: int,
                size: int = LUN_SIZE, rwmixread: int = 70, workdir: Path | None = None,
                conf: str | None = None) -> Sample:  # fmt: skip
    """Direct librbd, the ceiling of a gateway on RBD: ``fio --ioengine=rbd`` on ``pool/image``
    (client.admin; the cluster from ``conf``, else ``$CEPH_CONF``). ``rw`` is fio's (write,
    read, randread, randrw...); time based, ``seconds`` long; JSON output parsed into a Sample.
    Give it a ``conf`` with ``rbd cache = false`` to compare with iscsigw (which runs librbd
    without its cache, so that an acknowledged write is on the OSDs)."""
    out = (workdir or Path(tempfile.gettempdir())) / f"fio-rbd-{rw}-{bs}-{iodepth}.json"
    cmd = [
        "fio",
        "--name=rbd",
        "--ioengine=rbd",
        "--clientname=admin",
        f"--pool={pool}",
        f"--rbdname={image}",
        f"--rw={rw}",
        f"--bs={bs}",
        f"--iodepth={iodepth}",
        f"--size={size}",
        "--time_based",
        f"--runtime={seconds}",
        "--randrepeat=0",
        "--output-format=json",
        f"--output={out}",
    ]
    if rw in ("randrw", "rw", "readwrite"):
        cmd.append(f"--rwmixread={rwmixread}")
    env = dict(os.environ, CEPH_CONF=conf) if conf else None
    cp = run(cmd, timeout=seconds + 120, check=False, env=env)
    try:
        text = out.read_text()
        job = json.loads(text[text.index("{") :])["jobs"][0]
    except (OSError, ValueError, KeyError, IndexError):
        raise BenchError(
            f"fio --ioengine=rbd failed (exit {cp.returncode}): {out.read_text()[:300]!r} "
            f"{(cp.stdout + cp.stderr).strip()[-500:]}"
        )
    if job.get("error"):
        raise BenchError(f"fio --ioengine=rbd job error {job['error']}")
    ios = int(job["read"]["total_ios"]) + int(job["write"]["total_ios"])
    nbytes = int(job["read"]["io_bytes"]) + int(job["write"]["io_bytes"])
    secs = max(int(job["read"]["runtime"]), int(job["write"]["runtime"])) / 1000
    return Sample(ios, nbytes, max(secs, 1e-3))


# workload key -> fio --rw for the librbd baseline (the same pattern as the iSCSI tool's)
FIO_RBD_RW = {
    "seqw1m": "write",
    "w4k32": "write",
    "w4k1": "write",
    "seqr1m": "read",
    "rr4k32": "randread",
    "rr4k1": "randread",
    "rw4k32": "randwrite",
    "mix4k32": "randrw",
}
CEPH_SCRIPT = REPO / "scripts" / "ceph-dev-cluster"
# Run by the venv's Python: seed a demo target whose LUN 0 is the RBD image (file store).
SEED_RBD = r"""
import sys
from iscsigw.config.demo import seed_demo, DEMO_DISK
from iscsigw.config.file_store import FileConfigStore
data, port, pool, image = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
info = seed_demo(data, "bench", [("127.0.0.1", port)])
key = f"{pool}/{image}"
def edit(doc):
    old = doc["disks"].pop(DEMO_DISK)
    doc["disks"][key] = {**old, "pool": pool, "image": image, "backstore": "rbd", "size": 0}
    for t in doc["targets"].values():
        t["disks"] = {key: {"lun_id": 0}}
FileConfigStore(data + "/gateway.conf").commit(edit)
print(info.url)
"""


class IscsigwRbdTarget(IscsigwTarget):
    """``iscsigw serve`` whose LUN 0 is an RBD image (exclusive lock, librbd aio)."""

    kind = "iscsigw"
    SEEDED_RE = re.compile(r"iscsi://([^%@/\s]+)%([^@/\s]+)@([\d.]+):(\d+)/(\S+?)/(\d+)\s*$")

    def __init__(self, label: str, workdir: Path, pool: str, image: str) -> None:
        super().__init__(label, workdir)
        self.pool, self.image = pool, image

    def start(self, params: dict[str, int | bool], creds: tuple[str, str]) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"iscsigw-bench-{self.label}-"))
        py = self.exe.parent / "python"
        port = free_port()
        cp = run(
            [str(py), "-c", SEED_RBD, str(self.data_dir), str(port), self.pool, self.image], 60
        )
        m = self.SEEDED_RE.search(cp.stdout.strip())
        if not m:
            raise BenchError(f"seeding the RBD target printed no URL: {cp.stdout[-300:]}")
        (self.data_dir / "demo" / "disk0").unlink(missing_ok=True)  # the demo's unused file
        cmd = [str(self.exe), "serve", "--data-dir", str(self.data_dir), "--portal",
               f"{LOOPBACK}:{port}", "--name", "bench"]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
            cwd=str(REPO),
        )
        self.reader = OutputReader(self.proc)
        deadline = time.monotonic() + 60  # opening the image: connect + lock
        while self.alive() and not owns_listener(self.pid, port) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not (self.alive() and owns_listener(self.pid, port)):
            raise BenchError(f"{self.exe} on RBD is not listening:\n    {self.reader.tail()}")
        user, password, host, p, iqn, lun = m.groups()
        self.endpoint = Endpoint(host, int(p), iqn, int(lun), user, password)


def _ceph_cluster(args: argparse.Namespace, workdir: Path) -> tuple[str, Path | None]:
    """(ceph.conf, the dev cluster directory we started or None)."""
    if args.ceph_conf:
        return args.ceph_conf, None
    if os.environ.get("CEPH_CONF") and not args.ceph_new:
        return os.environ["CEPH_CONF"], None
    directory = workdir / "ceph"
    log("starting a dev Ceph cluster (scripts/ceph-dev-cluster) ...")
    run([sys.executable, str(CEPH_SCRIPT), "start", str(directory), "--quiet"], 240)
    return str(directory / "ceph.conf"), directory


def ceph_report(b: Bench, ws: list[Workload], gw: Target, info: dict[str, str],
                versions: dict[str, str], conf: str, image: str, quick: bool,
                elapsed: float) -> str:  # fmt: skip
    L = [
        "# Benchmark: iscsigw on RBD vs direct librbd",
        "",
        f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, {info['nproc']} x {info['cpu']}, "
        f"kernel {info['kernel']}, load before {info['load']}; {b.runs} run(s) x {b.seconds} s "
        f"per workload{' (--quick)' if quick else ''}, {elapsed:.0f} s in all.",
        "",
        f"Image `{image}` (1 GiB, pre-filled by fio), cluster `{conf}`. **iscsigw on RBD**: the "
        "same client tools as the tgt comparison (qemu-img bench, iscsi-perf, fio nbd) through "
        "iscsigw's rbd backstore (librbd aio, exclusive lock, cache off). **librbd direct**: "
        "`fio --ioengine=rbd` on the same image with the same pattern, block size and depth, "
        "`rbd cache = false` like the gateway (with the cache, fio's sequential 4K writes are "
        "acknowledged from client memory: ~10x). The gateway is stopped while fio runs (it "
        "holds the exclusive lock). "
        "Medians; ratio = iscsigw / librbd (the target is >= 80 %).",
        "",
        "| workload | iscsigw on RBD | librbd direct (fio rbd) | ratio | iscsigw CPU s / GiB |",
        "|---|---|---|---|---|",
    ]
    for w in ws:
        if w.na:
            L.append(f"| {w.title} | n/a | n/a | | {w.na} |")
            continue
        g = b.samples.get((gw.label, w.key), [])
        f = b.samples.get(("librbd", w.key), [])
        if not g or not f:
            err = b.errors.get((gw.label, w.key)) or b.errors.get(("librbd", w.key)) or "-"
            L.append(f"| {w.title} | | | | failed: {cell(err)} |")
            continue
        iops = w.unit == "IOPS"
        gv = median([s.iops if iops else s.mibs for s in g])
        fv = median([s.iops if iops else s.mibs for s in f])
        unit = "IOPS" if w.unit == "IOPS" else "MiB/s"
        cpu = median([s.cpu / (s.nbytes / GIB) for s in g if s.nbytes])
        L.append(
            f"| {w.title} | {gv:,.0f} {unit} | {fv:,.0f} {unit} | {gv / fv * 100:.0f} % "
            f"| {cpu:.2f} |"
        )
    L += [
        "",
        "Notes:",
        "- Everything shares the machine's cores: the OSD (memstore), the monitor, the gateway "
        "and the client tool. fio rbd has no gateway and no iSCSI client to feed, so on 2 cores "
        "it also has more CPU for the OSD; the ratio is a lower bound of what a gateway on its "
        "own host gets.",
        "- 4K writes are sequential on both sides (qemu-img bench has no random mode); reads are "
        "random (iscsi-perf -r / fio randread).",
        f"- fio {versions.get('fio', '?')}; Debian's fio has the rbd engine (`fio --enghelp`).",
    ]
    for (lbl, key), err in sorted(b.errors.items()):
        L.append(f"- error: {lbl} / {key}: {err}")
    return "\n".join(L) + "\n"


def ceph_main(args: argparse.Namespace) -> int:
    """``--ceph``: the same workloads through iscsigw on RBD and with fio rbd on the image."""
    t_start = time.monotonic()
    try:
        have = check_tools(install=not args.no_install)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not have.get("fio") or "rbd" not in run(["fio", "--enghelp"], 30, check=False).stdout:
        print(
            "error: --ceph needs fio with the rbd engine (apt-get install -y fio)", file=sys.stderr
        )
        return 2
    info, versions = machine_info(), tool_versions()
    ws = [
        w
        for w in workloads(have)
        if w.key in FIO_RBD_RW and (not args.only or w.key in args.only.split(","))
    ]
    IscsigwTarget.exe = Path(args.iscsigw)
    IscsigwTarget.tune = args.params == "spec"
    workdir = Path(tempfile.mkdtemp(prefix="iscsigw-bench-ceph-"))
    cluster_dir: Path | None = None
    gw: IscsigwRbdTarget | None = None
    rc = 0
    try:
        conf, cluster_dir = _ceph_cluster(args, workdir)
        os.environ["CEPH_CONF"] = conf
        # fio's librbd with the cache off, as iscsigw runs it (writes acknowledged by the OSDs)
        fio_conf = workdir / "fio-ceph.conf"
        fio_conf.write_text(Path(conf).read_text() + "\n[client]\nrbd cache = false\n")
        image = f"iscsigw-bench-{os.urandom(3).hex()}"
        run(["rbd", "create", "--size", f"{LUN_SIZE // MIB}M", f"{args.ceph_pool}/{image}"], 60)
        log(f"pre-filling {args.ceph_pool}/{image} ...")
        run(["fio", "--name=fill", "--ioengine=rbd", "--clientname=admin",
             f"--pool={args.ceph_pool}", f"--rbdname={image}", "--rw=write", "--bs=4M",
             "--iodepth=8", f"--size={LUN_SIZE}", "--output-format=terse"], 300)  # fmt: skip
        # librbd hands writes only to the exclusive lock's holder: the gateway (which holds it
        # while it serves the image) is stopped while fio runs on the same image.
        gw = IscsigwRbdTarget("iscsigw", workdir, args.ceph_pool, image)
        b = Bench(args.seconds, args.runs, args.digest, workdir, targets=[gw])
        calibrated = False
        for r in range(args.runs):
            log(f"run {r + 1}/{args.runs}")
            for side in ("gw", "fio") if r % 2 == 0 else ("fio", "gw"):
                if side == "gw":
                    log("starting iscsigw on RBD ...")
                    gw.start({}, ("", ""))
                    assert gw.endpoint is not None
                    read_capacity(gw.endpoint, args.digest)
                    if not calibrated:
                        for w in ws:
                            if w.fn is _qemu_bench and not w.na:
                                b.measure(gw, w, record=False)
                        calibrated = True
                    for w in ws:
                        if not w.na:
                            b.measure(gw, w)
                    gw.stop()
                    continue
                for w in ws:
                    if w.na:
                        continue
                    try:
                        s = run_fio_rbd(args.ceph_pool, image, rw=FIO_RBD_RW[w.key],
                                        bs=w.io_size, iodepth=w.depth, seconds=b.seconds,
                                        workdir=workdir, conf=str(fio_conf))  # fmt: skip
                    except BenchError as exc:
                        b.errors[("librbd", w.key)] = str(exc).splitlines()[0][:200]
                        log(f"  librbd {w.title}: FAILED: {exc}")
                        continue
                    b.samples.setdefault(("librbd", w.key), []).append(s)
                    log(f"  librbd   {w.title:28} {s.iops:10.0f} IOPS {s.mibs:8.1f} MiB/s")
        if b.errors or gw.error:
            rc = 1
        text = ceph_report(b, ws, gw, info, versions, conf, f"{args.ceph_pool}/{image}",
                           args.quick, time.monotonic() - t_start)  # fmt: skip
        out = Path(args.out or REPO / "bench" / "RESULTS-ceph.md")
        out.write_text(text)
        print()
        print(text)
        log(f"wrote {out}")
    except KeyboardInterrupt:
        rc = 130
    except BenchError as exc:
        log(f"error: {exc}")
        rc = 2
    finally:
        if gw is not None:
            gw.stop()
        if cluster_dir is not None:
            run([sys.executable, str(CEPH_SCRIPT), "stop", str(cluster_dir)], 60, check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    return rc


def workloads(have: dict[str, bool]) -> list[Workload]:
    ws = [
        # writes before reads: nothing may read a block no one wrote (see bench/README.md)
        Workload(
            "seqw1m", "1M seq write QD8", "qemu-img bench -w", MIB, "MiB/s", _qemu_bench, 8, True
        ),
        Workload(
            "w4k32",
            "4K write QD32 (sequential)",
            "qemu-img bench -w",
            4096,
            "IOPS",
            _qemu_bench,
            32,
            True,
        ),
        Workload(
            "w4k1",
            "4K write QD1 (sequential)",
            "qemu-img bench -w",
            4096,
            "IOPS",
            _qemu_bench,
            1,
            True,
        ),
        Workload("seqr1m", "1M seq read QD8", "qemu-img bench", MIB, "MiB/s", _qemu_bench, 8),
        Workload("rr4k32", "4K random read QD32", "iscsi-perf -r", 4096, "IOPS", _iscsi_perf, 32),
        Workload("rr4k1", "4K random read QD1", "iscsi-perf -r", 4096, "IOPS", _iscsi_perf, 1),
        Workload(
            "rw4k32",
            "4K random write QD32",
            "fio nbd -> qemu-nbd",
            4096,
            "IOPS",
            _fio_nbd,
            32,
            True,
            fio_rw="randwrite",
        ),
        Workload(
            "mix4k32",
            "4K random 70/30 r/w QD32",
            "fio nbd -> qemu-nbd",
            4096,
            "IOPS",
            _fio_nbd,
            32,
            True,
        ),
    ]
    # The same 1M transfers with HeaderDigest=CRC32C (QEMU/libiscsi never offer DataDigest):
    # the digest target compares these with the rows above, within one target.
    for base in list(ws[:1]) + [w for w in ws if w.key == "seqr1m"]:
        ws.append(
            Workload(
                base.key + "-hd",
                base.title + ", HeaderDigest=CRC32C",
                base.tool,
                base.io_size,
                base.unit,
                base.fn,
                base.depth,
                base.write,
                digest="crc32c",
            )
        )
    cal = {
        "seqw1m": 256 * MIB,
        "seqr1m": 256 * MIB,
        "seqw1m-hd": 256 * MIB,
        "seqr1m-hd": 256 * MIB,
        "w4k32": 40 * MIB,
        "w4k1": 8 * MIB,
    }
    for w in ws:
        w.cal_bytes = cal.get(w.key, 4 * MIB)
    if not (have.get("fio") and have.get("qemu-nbd")):
        for w in ws:
            if w.fn is _fio_nbd:
                w.na = (
                    "needs fio + qemu-nbd (apt-get install -y fio qemu-utils): iscsi-perf is "
                    "read-only and qemu-img bench does one direction, sequentially"
                )
    return ws


# -- physical limits -----------------------------------------------------------------------


def tcp_stream_mibs(seconds: float, have_iperf: bool) -> tuple[float, str]:
    if have_iperf:
        port = free_port()
        srv = subprocess.Popen(
            ["iperf3", "-s", "-1", "-B", LOOPBACK, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 5
            while not owns_listener(srv.pid, port) and time.monotonic() < deadline:
                time.sleep(0.05)
            cp = run(
                [
                    "iperf3",
                    "-c",
                    LOOPBACK,
                    "-p",
                    str(port),
                    "-t",
                    str(max(1, round(seconds))),
                    "-J",
                ],
                timeout=seconds + 30,
                check=False,
            )
            with contextlib.suppress(ValueError, KeyError):
                bps = json.loads(cp.stdout)["end"]["sum_received"]["bits_per_second"]
                return bps / 8 / MIB, "iperf3, 1 stream"
            log(f"iperf3 failed ({cp.returncode}); using the Python socket pump")
        finally:
            stop_process(srv, "iperf3 server", grace=3)
    return _python_pump(seconds), "Python socket pump, 1 stream, 1 MiB sends"


def _python_pump(seconds: float) -> float:
    lsock = socket.socket()
    lsock.bind((LOOPBACK, 0))
    lsock.listen(1)
    got = [0]

    def sink() -> None:
        conn, _ = lsock.accept()
        buf = bytearray(4 * MIB)
        with conn:
            while n := conn.recv_into(buf):
                got[0] += n

    th = threading.Thread(target=sink, daemon=True)
    th.start()
    chunk = b"\xa5" * MIB
    with socket.create_connection(lsock.getsockname()) as c:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            c.sendall(chunk)
    th.join(10)
    dt = time.perf_counter() - t0
    lsock.close()
    return got[0] / MIB / dt


def memcpy_mibs(seconds: float) -> float:
    """One core's large-buffer copy bandwidth (64 MiB buffers, beyond the caches)."""
    n = 64 * MIB
    src = bytes(bytearray(os.urandom(4096)) * (n // 4096))
    dst = memoryview(bytearray(n))
    dst[:] = src  # fault the pages in
    copies, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        dst[:] = src
        copies += 1
    return copies * n / MIB / (time.perf_counter() - t0)


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Bench:
    seconds: int
    runs: int
    digest: str
    workdir: Path
    rates: dict[tuple[str, str], float] = field(default_factory=dict)
    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    def _ours(self) -> list[int]:
        pids = []
        for t in self.targets:
            for p in (t.proc, t.nbd):
                if p is not None and p.poll() is None:
                    pids.append(p.pid)
        return pids

    def measure(self, t: Target, w: Workload, record: bool = True) -> None:
        key = (t.label, w.key)
        if key in self.errors or t.error:
            return
        if not t.alive():
            t.error = f"exited before {w.title} ({exit_text(t.proc)})"
            log(f"{t.label} {t.error}")
            return
        try:
            before = cpu_seconds(t.pid)
            busy0, ours0, wall0 = (
                machine_busy_seconds(),
                own_cpu_seconds(self._ours()),
                time.monotonic(),
            )
            s = w.fn(t, w, self)
            s.cpu = cpu_seconds(t.pid) - before
            s.wall = time.monotonic() - wall0
            foreign = (machine_busy_seconds() - busy0) - (own_cpu_seconds(self._ours()) - ours0)
            s.foreign = max(0.0, foreign / s.wall)
        except BenchError as exc:
            self.errors[key] = redact(str(exc).splitlines()[0])[:200]
            log(f"{t.label} {w.title}: FAILED: {exc}")
            if not t.alive():
                t.error = f"died during {w.title} ({exit_text(t.proc)})"
            return
        except OSError as exc:  # /proc/PID gone: the target died
            self.errors[key] = f"target process gone: {exc}"
            t.error = f"died during {w.title} ({exit_text(t.proc)})"
            return
        t.sample_rss()
        if record:
            self.samples.setdefault(key, []).append(s)
            log(
                f"  {t.label:8} {w.title:28} {s.iops:10.0f} IOPS {s.mibs:8.1f} MiB/s "
                f"cpu {s.cpu:5.2f}s ({s.seconds:.1f}s), other load {s.foreign:.2f} cores"
            )


def cell(text: str, width: int = 70) -> str:
    """One line of text, safe inside a markdown table cell."""
    line = " ".join(text.split())
    line = line if len(line) <= width else line[: width - 1] + "…"
    return line.replace("|", "\\|")


def exit_text(proc: subprocess.Popen[str] | None) -> str:
    code = proc.poll() if proc is not None else None
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by signal {-code}, not by this script"
    return f"exit code {code}"


def targets_section(b: Bench, ws: list[Workload], a: Target, c: Target, tcp: float) -> list[str]:
    """The performance issue's targets, each with the figure measured in this run."""
    by_key = {w.key: w for w in ws if not w.na}

    def fig(t: Target, key: str) -> float | None:
        w = by_key.get(key)
        ss = b.samples.get((t.label, key), []) if w else []
        if not w or not ss:
            return None
        return median([s.iops if w.unit == "IOPS" else s.mibs for s in ss])

    def ratio(key: str, den: Target | None = None, den_key: str | None = None) -> float | None:
        x = fig(a, key)
        y = fig(den or c, den_key or key)
        return x / y if x is not None and y else None

    rows: list[tuple[str, str, float | None, float, str]] = []
    for key, what in (
        ("rr4k32", "4K random read QD32"),
        ("rw4k32", "4K random write QD32"),
        ("w4k32", "4K sequential write QD32"),
    ):
        rows.append((what, f"{a.label}/{c.label} IOPS", ratio(key), 1.0, ">="))
    for key, what in (("rr4k1", "4K random read QD1"), ("w4k1", "4K write QD1")):
        r = ratio(key)
        # QD1: latency is 1/IOPS, so latency ratio = IOPS(c)/IOPS(a)
        rows.append((what, f"latency {a.label}/{c.label}", 1 / r if r else None, 1.2, "<="))
    for key, what in (("seqr1m", "1M seq read QD8"), ("seqw1m", "1M seq write QD8")):
        rows.append((what, f"{a.label}/{c.label} MiB/s", ratio(key), 1.2, ">="))
        m = fig(a, key)
        rows.append(
            (
                what,
                f"{a.label} / half the TCP stream",
                m / (tcp / 2) if m and tcp else None,
                1.0,
                ">=",
            )
        )
    for key, what in (("seqr1m", "1M seq read"), ("seqw1m", "1M seq write")):
        rows.append(
            (
                what + ", HeaderDigest=CRC32C",
                f"{a.label} with/without digest",
                ratio(key + "-hd", a, key),
                0.85,
                ">=",
            )
        )
    L = ["## Targets (issue: performance)", ""]
    L.append("| target | measure | value | goal | met |")
    L.append("|---|---|---:|---:|---|")
    for what, measure, v, goal, op in rows:
        if v is None:
            L.append(f"| {what} | {measure} | n/a | {op} {goal:.2f} | not measured |")
            continue
        ok = v >= goal if op == ">=" else v <= goal
        L.append(
            f"| {what} | {measure} | {v:.2f} | {op} {goal:.2f} | {'yes' if ok else '**no**'} |"
        )
    L.append("")
    L.append(
        "The RBD target (>= 0.8x direct librbd) is in bench/RESULTS-ceph.md (`--ceph`). "
        "Header digests only: QEMU and libiscsi never offer DataDigest=CRC32C."
    )
    L.append("")
    return L


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt_fig(samples: list[Sample], w: Workload) -> tuple[str, float | None]:
    if not samples:
        return "", None
    iops = median([s.iops for s in samples])
    mibs = median([s.mibs for s in samples])
    if w.unit == "IOPS":
        return f"{iops:,.0f} IOPS ({mibs:,.0f} MiB/s)", iops
    return f"{mibs:,.0f} MiB/s ({iops:,.0f} IOPS)", mibs


def spread(samples: list[Sample], w: Workload) -> str:
    if len(samples) < 2:
        return ""
    vals = [s.iops if w.unit == "IOPS" else s.mibs for s in samples]
    return f"{min(vals):,.0f} to {max(vals):,.0f}"


def cpu_cells(samples: list[Sample]) -> tuple[str, str]:
    if not samples:
        return "", ""
    per_gib = median([s.cpu / (s.nbytes / GIB) for s in samples])
    per_100k = median([s.cpu / (s.ios / 1e5) for s in samples])
    return f"{per_gib:.2f}", f"{per_100k:.2f}"


def report(
    b: Bench,
    targets: list[Target],
    ws: list[Workload],
    info: dict[str, str],
    versions: dict[str, str],
    params: dict[str, int | bool],
    params_src: str,
    applied: dict[str, int | bool] | None,
    limits: dict[str, tuple[float, str]],
    quick: bool,
    elapsed: float,
) -> str:
    a, c = targets[0], targets[1]
    L: list[str] = []
    L.append(f"# iscsigw benchmark — {a.label} vs {c.label}")
    L.append("")
    L.append(
        f"Generated by `python3 bench/run.py{' --quick' if quick else ''}` on {info['date']} "
        f"in {elapsed / 60:.1f} min. Each figure is the median of {b.runs} run(s) of "
        f"{b.seconds} s (tool time); the targets alternate which goes first in each run."
    )
    L.append("")
    L.append("## Machine and tools")
    L.append("")
    for k in ("host", "nproc", "cpu", "memory", "kernel", "python", "load", "iscsigw"):
        if k in info:
            label = {"load": "load average at start", "iscsigw": "iscsigw commit"}.get(k, k)
            L.append(f"- {label}: {info[k]}")
    L.append("- tools: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    L.append(
        f"- backing: a 1 GiB file on /dev/shm (tmpfs) per target, pre-filled with non-zero data; "
        f"tgt uses the rdwr backing store; both have CHAP on; header/data digest {b.digest}"
    )
    L.append(
        f"- session parameters ({params_src}): "
        + ", ".join(
            f"{TGT_PARAM_NAMES[k]}={'Yes' if v is True else 'No' if v is False else v}"
            for k, v in params.items()
        )
    )
    spec_diff = {
        TGT_PARAM_NAMES[k]: v for k, v in params.items() if k in SPEC_PARAMS and SPEC_PARAMS[k] != v
    }
    if spec_diff:
        L.append(
            f"- note: these differ from the project's spec values (InitialR2T=No, MaxBurstLength="
            f"1048576, ...): {spec_diff}; both targets ran with the values above"
        )
    lb = [f"{t.label} {'yes' if t.endpoint.lbpme else 'no'}" for t in targets if t.endpoint]
    if lb:
        L.append(
            "- thin provisioning advertised (LBPME, makes QEMU send GET LBA STATUS): "
            + ", ".join(lb)
        )
    if applied is not None and any(applied.get(k) != v for k, v in params.items()):
        L.append(f"- WARNING: tgt reports different values: {applied}")
    L.append("")
    for t in targets:
        if t.error:
            L.append(f"**{t.label} {redact(t.error.splitlines()[0])}**")
            L.append("")
            details = "\n".join(t.error.splitlines()[1:]).strip()
            if details:
                L.extend(["```", redact(details), "```", ""])
    L.append("## Results")
    L.append("")
    L.append(
        f"| workload | tool | {a.label} | {c.label} | ratio {a.label}/{c.label} "
        f"| {a.label} CPU s/GiB | {a.label} CPU s/100k IO | {c.label} CPU s/GiB | {c.label} CPU s/100k IO |"
    )
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for w in ws:
        if w.na:
            L.append(f"| {w.title} | {w.tool} | n/a | n/a | n/a | | | | |")
            continue
        cells: list[str] = []
        vals: list[float | None] = []
        cpus: list[str] = []
        for t in (a, c):
            ss = b.samples.get((t.label, w.key), [])
            text, v = fmt_fig(ss, w)
            if ss and len(ss) < b.runs:
                text += f" [{len(ss)} of {b.runs} runs]"
            if not ss:
                err = b.errors.get((t.label, w.key)) or t.error
                text = (
                    "did not start (see above)"
                    if t.error and "start" in t.error
                    else f"failed: {cell(err)}"
                    if err
                    else "not run"
                )
            cells.append(text)
            vals.append(v)
            cpus.extend(cpu_cells(ss))
        ratio = f"{vals[0] / vals[1]:.2f}" if vals[0] and vals[1] else ""
        L.append(
            f"| {w.title} | {w.tool} | {cells[0]} | {cells[1]} | {ratio} | "
            + " | ".join(cpus)
            + " |"
        )
    L.append("")
    L.append(
        "CPU = utime+stime of the target process (all threads, plus any children) from /proc/PID/stat "
        "over the whole tool run (login included), divided by the data moved or by the IOs done."
    )
    L.append("")
    L.append("| target | peak RSS (VmHWM) |")
    L.append("|---|---:|")
    for t in targets:
        L.append(
            f"| {t.label} | {t.hwm_kib / 1024:.1f} MiB |" if t.hwm_kib else f"| {t.label} | n/a |"
        )
    L.append("")
    L.extend(targets_section(b, ws, a, c, limits["tcp"][0]))
    L.append("## Distance from the physical limits")
    L.append("")
    tcp, tcp_how = limits["tcp"]
    mem, mem_how = limits["memcpy"]
    L.append(f"- one loopback TCP stream: **{tcp:,.0f} MiB/s** ({tcp_how})")
    L.append(f"- memory copy: **{mem:,.0f} MiB/s** ({mem_how})")
    L.append("")
    L.append(
        f"| workload | {a.label} MiB/s | % of TCP | % of memcpy | {c.label} MiB/s | % of TCP | % of memcpy |"
    )
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    for w in ws:
        if w.na:
            continue
        row = [w.title]
        for t in (a, c):
            ss = b.samples.get((t.label, w.key), [])
            if ss:
                m = median([s.mibs for s in ss])
                row += [f"{m:,.1f}", f"{100 * m / tcp:.1f}%", f"{100 * m / mem:.1f}%"]
            else:
                row += ["", "", ""]
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append("## Every run")
    L.append("")
    L.append(
        "Other load = CPU used meanwhile by processes that are not part of the bench "
        "(/proc/stat minus ours), in cores; anything above ~0.1 on a 2-core box skews a run."
    )
    L.append("")
    L.append(
        "| workload | target | spread (min to max) | runs: IOPS / MiB/s / target CPU s / other load |"
    )
    L.append("|---|---|---:|---|")
    for w in ws:
        for t in (a, c):
            ss = b.samples.get((t.label, w.key), [])
            if ss:
                runs = "; ".join(
                    f"{s.iops:,.0f} / {s.mibs:,.1f} / {s.cpu:.2f} / {s.foreign:.2f}" for s in ss
                )
                L.append(f"| {w.title} | {t.label} | {spread(ss, w)} | {runs} |")
    L.append("")
    L.append("## Notes")
    L.append("")
    all_s = [s for ss in b.samples.values() for s in ss]
    noisy = sum(1 for s in all_s if s.foreign > 0.25)
    if noisy:
        L.append(
            f"- {noisy} of {len(all_s)} measurements ran while other processes used more than 0.25 "
            "cores (see 'Every run'); their spread is wider."
        )
    if all_s and median([s.foreign for s in all_s]) > 0.1:
        L.append(
            f"- **WARNING: other processes kept {median([s.foreign for s in all_s]):.2f} cores "
            "busy (median over the runs): the figures are depressed and noisy; rerun on an idle "
            "machine.**"
        )
    for w in ws:
        if w.na:
            L.append(f"- {w.title}: n/a — {w.na}.")
    L.append(
        "- 4K writes use `qemu-img bench -w`, which is sequential only (no random-write tool in "
        "Debian's libiscsi-bin/qemu-utils); 4K reads use `iscsi-perf -r` (random, read-only). "
        "iscsi-perf's IOPS is its own average; its MB/s is MiB/s."
    )
    if not any(w.na for w in ws if w.key == "mix4k32"):
        L.append(
            "- The 70/30 mix goes fio → NBD → qemu-nbd → libiscsi → target (Debian's fio has no "
            "libiscsi engine): the extra hop caps absolute numbers. qemu-nbd serves NBD structured "
            "reads as sparse reads, asking block status first: against a LUN with LBPME=1 that is "
            "one GET LBA STATUS per read (QEMU's iSCSI driver does the same for uncached reads of "
            "32 KiB or more, e.g. the 1M reads). These rows therefore also measure GET LBA STATUS."
        )
    L.append(
        "- Client tools, the target and the limits share the same cores; on 2 cores the client "
        "(libiscsi/QEMU) is a large part of the cost. Other load on the machine skews everything: "
        "compare the load average above."
    )
    L.append(
        "- Ceph/RBD: `bench/run.py --ceph` runs these workloads through iscsigw on an RBD image "
        "next to `fio --ioengine=rbd` on the same image (bench/RESULTS-ceph.md)."
    )
    for (lbl, key), err in sorted(b.errors.items()):
        L.append(f"- error: {lbl} / {key}: {err}")
    L.append("")
    return "\n".join(L)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="1 run of 2 s per workload (~1-2 min)")
    p.add_argument("--runs", type=int, help="runs per workload and target (default 3; --quick 1)")
    p.add_argument("--seconds", type=int, help="seconds per measurement (default 5; --quick 2)")
    p.add_argument(
        "--out", help="markdown report path (default bench/RESULTS.md; --ceph: RESULTS-ceph.md)"
    )
    p.add_argument(
        "--targets",
        default="iscsigw,tgt",
        help="two of iscsigw, tgt, tgt2 (a second tgtd: 'tgt2,tgt' is a dry run)",
    )
    p.add_argument(
        "--only",
        help="comma-separated workload keys (seqw1m,w4k32,w4k1,seqr1m,rr4k32,rr4k1,rw4k32,"
        "mix4k32,seqw1m-hd,seqr1m-hd)",
    )
    p.add_argument(
        "--params",
        choices=("gateway", "spec"),
        default="spec",
        help="session parameters: 'spec' (default) sets the performance issue's values on both "
        "targets (on iscsigw through its REST API); 'gateway' leaves iscsigw at its own "
        "controls (ceph-iscsi's defaults) and tunes tgt like it",
    )
    p.add_argument(
        "--digest",
        choices=("none", "crc32c"),
        default="none",
        help="HeaderDigest (and DataDigest as the initiator offers) for every client",
    )
    p.add_argument(
        "--iscsigw",
        default=str(VENV_BIN / "iscsigw"),
        metavar="PATH",
        help="the iscsigw executable (default: the repo's .venv/bin/iscsigw)",
    )
    p.add_argument("--no-install", action="store_true", help="never apt-get install missing tools")
    ceph = p.add_argument_group("Ceph (optional): iscsigw on RBD next to fio --ioengine=rbd")
    ceph.add_argument(
        "--ceph",
        action="store_true",
        help="run the RBD comparison instead of the tgt one (a dev cluster is started "
        "unless --ceph-conf or $CEPH_CONF names one)",
    )
    ceph.add_argument("--ceph-conf", metavar="FILE", help="use this cluster (client.admin)")
    ceph.add_argument("--ceph-pool", default="rbd", help="pool for the bench image (default rbd)")
    ceph.add_argument(
        "--ceph-new", action="store_true", help="start a dev cluster even if $CEPH_CONF is set"
    )
    a = p.parse_args(argv)
    a.runs = a.runs or (1 if a.quick else 3)
    a.seconds = a.seconds or (2 if a.quick else 5)
    if a.runs < 1 or a.seconds < 1:
        p.error("--runs and --seconds must be at least 1")
    a.targets = [x.strip() for x in a.targets.split(",")]
    if (
        len(a.targets) != 2
        or len(set(a.targets)) != 2
        or not set(a.targets) <= {"iscsigw", "tgt", "tgt2"}
    ):
        p.error("--targets takes two different names out of iscsigw, tgt, tgt2")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ceph:
        return ceph_main(args)
    args.out = args.out or str(REPO / "bench" / "RESULTS.md")
    t_start = time.monotonic()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    try:
        have = check_tools(install=not args.no_install)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info, versions = machine_info(), tool_versions()
    log(f"machine: {info['nproc']} x {info['cpu']}, kernel {info['kernel']}, load {info['load']}")
    ws = workloads(have)
    if args.only:
        keep = set(args.only.split(","))
        ws = [w for w in ws if w.key in keep]
        if not ws:
            print("error: --only matched no workload", file=sys.stderr)
            return 2

    IscsigwTarget.exe = Path(args.iscsigw)
    IscsigwTarget.tune = args.params == "spec"
    workdir = Path(tempfile.mkdtemp(prefix="iscsigw-bench-"))
    targets: list[Target] = []
    for label in args.targets:
        cls = IscsigwTarget if label == "iscsigw" else TgtTarget
        targets.append(cls(label, workdir))
    b = Bench(args.seconds, args.runs, args.digest, workdir, targets=targets)
    rc = 0
    try:
        # CHAP for tgt: the same length and alphabet as iscsigw's generated demo secrets
        creds = (
            "bench-" + os.urandom(4).hex(),
            "".join(
                random.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789")
                for _ in range(16)
            ),
        )
        params, params_src = dict(SPEC_PARAMS), "the project's spec values"
        ordered = sorted(targets, key=lambda t: t.kind != "iscsigw")  # iscsigw first: its params
        for t in ordered:
            log(f"starting {t.label} ...")
            try:
                t.start(params, creds)
                assert t.endpoint is not None
                read_capacity(t.endpoint, args.digest)
                log(
                    f"{t.label}: pid {t.pid}, {t.endpoint.host}:{t.endpoint.port} "
                    f"{t.endpoint.iqn} LUN {t.endpoint.lun}, block size {t.endpoint.block_size}, "
                    f"LBPME {int(t.endpoint.lbpme)}"
                )
            except BenchError as exc:
                t.error = f"failed to start: {exc}"
                log(f"ERROR: {t.label} {t.error}")
                rc = 1
                continue
            if t.kind == "iscsigw" and args.params == "spec":
                stored = t.session_params() or {}
                off = {k: stored.get(k) for k, v in params.items() if stored.get(k) != v}
                if off:
                    log(f"WARNING: iscsigw's stored controls differ from the spec values: {off}")
            if t.kind == "iscsigw" and args.params == "gateway":
                gp = t.session_params()
                if gp:
                    params, params_src = gp, "iscsigw's effective target controls"
                    diff = {k: v for k, v in gp.items() if k in SPEC_PARAMS and SPEC_PARAMS[k] != v}
                    if diff:
                        log(f"note: iscsigw's controls differ from the spec values: {diff}")
                else:
                    log("note: could not read iscsigw's controls; tgt gets the spec values")
        applied = None
        for t in targets:
            if t.kind == "tgt" and t.alive():
                applied = t.session_params()
        log(
            "session parameters: "
            + ", ".join(f"{TGT_PARAM_NAMES[k]}={v}" for k, v in params.items())
        )
        live = [t for t in targets if not t.error]
        if not live:
            raise BenchError("no target started; nothing to measure")

        log("physical limits ...")
        lim_secs = 1.0 if args.quick else 3.0
        limits = {
            "tcp": tcp_stream_mibs(lim_secs, have.get("iperf3", False)),
            "memcpy": (memcpy_mibs(lim_secs), "Python memoryview copy, 64 MiB buffers, 1 core"),
        }
        log(
            f"  loopback TCP {limits['tcp'][0]:,.0f} MiB/s ({limits['tcp'][1]}); "
            f"memcpy {limits['memcpy'][0]:,.0f} MiB/s"
        )

        log("calibrating (short warm-up runs, not recorded) ...")
        for w in ws:
            if w.fn is _qemu_bench and not w.na:
                for t in live:
                    b.measure(t, w, record=False)
        for r in range(args.runs):
            log(f"run {r + 1}/{args.runs}")
            for w in ws:
                if w.na:
                    continue
                order = targets if r % 2 == 0 else targets[::-1]
                for t in order:
                    b.measure(t, w)
        if any(t.error for t in targets) or b.errors:
            rc = 1
        text = report(
            b,
            targets,
            ws,
            info,
            versions,
            params,
            params_src,
            applied,
            limits,
            args.quick,
            time.monotonic() - t_start,
        )
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print()
        print(text)
        log(f"wrote {out}")
    except KeyboardInterrupt:
        log("interrupted; stopping the targets")
        rc = 130
    except BenchError as exc:
        log(f"error: {exc}")
        rc = 2
    finally:
        for t in targets:
            try:
                t.stop()
            except Exception as exc:  # teardown must go on for the others
                log(f"warning: stopping {t.label}: {exc}")
        shutil.rmtree(workdir, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
