"""The ``iscsigw`` command line, with the gateway runtime replaced by a recording stub."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iscsigw import __version__
from iscsigw.cli import main as cli
from iscsigw.cli import shell
from iscsigw.config.file_store import FileConfigStore
from iscsigw.errors import ConfigError

URL_LINE = re.compile(
    r"^iSCSI URL: iscsi://demo-[0-9a-f]{8}%[A-Za-z0-9]{16}@127\.0\.0\.1:3260/iqn\.2026-11\.io\.iscsigw:demo/0$"
)


class FakeServer:
    """Stands in for ``iscsigw.gateway.server``: records the call, returns or raises."""

    def __init__(self, result: int | BaseException = 0) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.result = result

    async def run_gateway(
        self,
        store: FileConfigStore,
        data_dir: Path,
        name: str,
        portals: list[tuple[str, int]],
        **options: Any,
    ) -> int:
        self.calls.append((store, data_dir, name, portals))
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeServer]:
    def install(result: int | BaseException = 0) -> FakeServer:
        fake = FakeServer(result)
        module = types.ModuleType("iscsigw.gateway.server")
        module.run_gateway = fake.run_gateway  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "iscsigw.gateway.server", module)
        return fake

    return install


@pytest.fixture(autouse=True)
def _restore_logging() -> Any:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    ("text", "portal"),
    [
        ("127.0.0.1:3260", ("127.0.0.1", 3260)),
        ("0.0.0.0:13260", ("0.0.0.0", 13260)),
        ("[::1]:3261", ("::1", 3261)),
        ("[fd00::1]", ("fd00::1", 3260)),
        ("fd00::1", ("fd00::1", 3260)),
        ("10.1.2.3", ("10.1.2.3", 3260)),
    ],
)
def test_parse_portal(text: str, portal: tuple[str, int]) -> None:
    assert cli.parse_portal(text) == portal


@pytest.mark.parametrize(
    "text", ["", "host:3260", "1.2.3.4:0", "1.2.3.4:x", "[::1]x", "1.2.3.4:99999"]
)
def test_parse_portal_rejects(text: str) -> None:
    with pytest.raises(Exception, match="IP:PORT"):
        cli.parse_portal(text)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out == f"iscsigw {__version__}\n"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv in ([], ["serve", "--data-dir", str(tmp_path)], ["serve", "--portal", "1.2.3.4:1"],
                 ["serve", "--data-dir", str(tmp_path), "--portal", "bogus"],
                 ["serve", "--data-dir", str(tmp_path), "--portal", "127.0.0.1:3260", "--log-level", "LOUD"]):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
    assert "usage: iscsigw" in capsys.readouterr().err


def test_serve_demo_prints_one_url_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_server: Callable[..., FakeServer]
) -> None:
    fake = fake_server(0)
    data = tmp_path / "data"
    rc = cli.main(["serve", "--data-dir", str(data), "--portal", "127.0.0.1:3260", "--name", "gw1",
                   "--demo", "--log-level", "debug"])  # fmt: skip
    assert rc == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1 and URL_LINE.match(lines[0]), out
    # logging goes to stderr with time, level and logger name
    assert re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO iscsigw\.cli: configuration", err, re.M
    )
    ((store, data_dir, name, portals),) = fake.calls
    assert isinstance(store, FileConfigStore) and store.path == data / "gateway.conf"
    assert (data_dir, name, portals) == (data, "gw1", [("127.0.0.1", 3260)])
    assert (data / "demo" / "disk0").exists()

    # a restart prints the same URL (same credentials)
    assert cli.main(["serve", "--data-dir", str(data), "--portal", "127.0.0.1:3260", "--name", "gw1", "--demo"]) == 0  # fmt: skip
    assert capsys.readouterr().out == out


def test_serve_without_config_starts_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_server: Callable[..., FakeServer]
) -> None:
    fake = fake_server(0)
    rc = cli.main(["serve", "--data-dir", str(tmp_path), "--portal", "[::1]:3261", "--portal", "127.0.0.1:3262"])  # fmt: skip
    assert rc == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "no target is configured" in err
    doc = json.loads((tmp_path / "gateway.conf").read_text())
    assert doc["version"] == 11 and doc["targets"] == {} and doc["epoch"] == 1
    ((_, _, name, portals),) = fake.calls
    assert name == cli.default_name() and "." not in name
    assert portals == [("::1", 3261), ("127.0.0.1", 3262)]


def test_config_error_from_runtime_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_server: Callable[..., FakeServer]
) -> None:
    fake_server(ConfigError("cannot listen on 127.0.0.1:3260: address already in use"))
    rc = cli.main(["serve", "--data-dir", str(tmp_path), "--portal", "127.0.0.1:3260"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.endswith("iscsigw: error: cannot listen on 127.0.0.1:3260: address already in use\n")


def test_broken_config_is_refused_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_server: Callable[..., FakeServer]
) -> None:
    fake = fake_server(0)
    (tmp_path / "gateway.conf").write_text('{"version": 11, "targets": {"nope": {}}}')
    rc = cli.main(["serve", "--data-dir", str(tmp_path), "--portal", "127.0.0.1:3260"])
    assert rc == 2 and fake.calls == []
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("iscsigw: error: ") and "targets['nope']" in err[-1]


def test_bad_name_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_server: Callable[..., FakeServer]
) -> None:
    fake_server(0)
    rc = cli.main(
        ["serve", "--data-dir", str(tmp_path), "--portal", "127.0.0.1:3260", "--name", "a b"]
    )
    assert rc == 2
    assert "iscsigw: error: --name: gateway name 'a b'" in capsys.readouterr().err


def test_exit_code_of_runtime_is_passed_through(
    tmp_path: Path, fake_server: Callable[..., FakeServer]
) -> None:
    fake_server(0)
    assert cli.main(["serve", "--data-dir", str(tmp_path), "--portal", "127.0.0.1:3260"]) == 0
    fake_server(KeyboardInterrupt())
    assert cli.main(["serve", "--data-dir", str(tmp_path), "--portal", "127.0.0.1:3260"]) == 0


def test_gwcli_without_an_api_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert shell.main(["--api", "http://admin:pw@127.0.0.1:1", "ls"]) == 2
    assert "Unable to connect to api endpoint" in capsys.readouterr().err


def test_console_scripts_run() -> None:
    bindir = Path(sys.executable).parent
    if not (bindir / "iscsigw").exists():
        pytest.skip("console scripts are not installed next to this interpreter")
    res = subprocess.run(
        [str(bindir / "iscsigw"), "version"], capture_output=True, text=True, timeout=60
    )
    assert (res.returncode, res.stdout) == (0, f"iscsigw {__version__}\n")
    res = subprocess.run(
        [str(bindir / "gwcli"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert (res.returncode, res.stdout) == (0, f"gwcli (iscsigw) {__version__}\n")
