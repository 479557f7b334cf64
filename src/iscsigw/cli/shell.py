"""``gwcli`` (also ``iscsigw shell``): manage the gateways through their REST API.

Usage::

    gwcli [--api URL | --config FILE] [-d] [COMMAND …]

``--api http://USER:PASSWORD@IP:PORT`` names the API; without it the address and credentials
come from ``iscsi-gateway.cfg`` (``/etc/ceph/iscsi-gateway.cfg`` unless ``--config FILE``) the
way ceph-iscsi's gwcli reads them. With a COMMAND (e.g. ``gwcli /disks create pool=rbd
image=disk_1 size=100G``) it runs that one command and exits; without one it opens the
interactive shell (or, when standard input is not a terminal, runs one command per input line
and stops at the first failure). Preferences, bookmarks, history and the log live in
``~/.gwcli/``.

Exit status: 0 success; 1 a command failed (the API's message is on stderr; ceph-iscsi's gwcli
exits 0 here); 2 bad usage, an unusable ``iscsi-gateway.cfg``, or an API that cannot be reached
or refuses our credentials; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import __version__
from .gwcli.args import ArgError
from .gwcli.client import (
    DEFAULT_CFG,
    APIClient,
    APIError,
    GatewayCfg,
    GwcliConfigError,
    parse_api_url,
    read_gateway_cfg,
)
from .gwcli.context import Context

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
PREFS_DIR = "~/.gwcli"
REFRESH_AFTER = 5.0  # seconds; an interactive session re-reads an older config before a command


def build_parser(prog: str = "gwcli") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Manage iscsigw gateways through their REST API (ceph-iscsi's gwcli tree).",
        epilog="Without a command the interactive shell opens; 'help' inside it lists commands.",
    )
    parser.add_argument(
        "--api",
        metavar="URL",
        help="the API, http[s]://USER:PASSWORD@IP:PORT (default: from iscsi-gateway.cfg)",
    )
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        type=Path,
        help=f"iscsi-gateway.cfg to read the API settings from (default {DEFAULT_CFG})",
    )
    parser.add_argument(
        "--debug", "-d", action="store_true", help="print every API request on stderr"
    )
    parser.add_argument(
        "--version", "-v", action="version", version=f"gwcli (iscsigw) {__version__}"
    )
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="one shell command to run, e.g. /disks create pool=rbd image=disk_1 size=100G",
    )
    return parser


def make_shell(context: Context, prefs_dir: str | None = PREFS_DIR) -> Any:
    """A configshell ``ConfigShell`` with the gwcli tree loaded from ``context``."""
    from configshell import ConfigShell, Console, ExecutionError, Prefs
    from pyparsing import ParseException

    from .gwcli.nodes import Root

    # configshell-fb uses pyparsing names that pyparsing 3 deprecates; not our users' business.
    warnings.filterwarnings("ignore", module=r"configshell(_fb)?(\..*)?$")
    warnings.filterwarnings("ignore", message=r".*deprecated - use", category=DeprecationWarning)

    class GwShell(ConfigShell):  # type: ignore[misc]
        """Keeps the current node valid across tree rebuilds and records the last failure."""

        _current_node: Any
        _root_node: Any

        def __init__(self, preferences_dir: str | None) -> None:
            super().__init__(preferences_dir)
            self.failed: str | None = None
            # interactive sessions re-read a config older than this before a command, so
            # changes made elsewhere (another shell, the dashboard) show up
            self.refresh_after: float | None = None

        def _refresh_if_stale(self) -> None:
            root = self._root_node
            if self.refresh_after is None or root.context.age() < self.refresh_after:
                return
            path = self._current_node.path
            try:
                root.reload()
            except ExecutionError as exc:
                self.log.warning(f"showing the configuration read earlier: {exc}")
                return
            self._current_node = root.node_at(path)

        def _execute_command(
            self, path: str, command: str, pparams: list[str], kparams: dict[str, str]
        ) -> None:
            before = self._current_node.path
            try:
                super()._execute_command(path, command, pparams, kparams)
            finally:
                if not _attached(self._current_node, self._root_node):
                    self._current_node = self._root_node.node_at(
                        self._current_node.path if self._current_node else before
                    )

        def run_cmdline(self, cmdline: str) -> None:
            self.failed = None
            try:
                if cmdline.strip():
                    self._refresh_if_stale()
                super().run_cmdline(cmdline)
            except (ExecutionError, APIError, ArgError) as exc:
                self.fail(str(exc))
            except ParseException as exc:
                self.fail(f"cannot parse {cmdline!r}: {exc}")

        def fail(self, message: str) -> None:
            self.failed = message or "failed"
            self.log.error(self.failed)

    # configshell's Prefs is a Borg: start from an empty state so one process can run several
    # shells (tests) without a shell seeing the previous one's bookmarks or log file.
    stale = Prefs()
    stale._prefs = {}
    stale.filename = None
    stale.autosave = False
    shell = GwShell(prefs_dir)
    # configshell binds sys.stdout/stderr when it is imported; use the streams of now.
    shell.con = Console(stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr)
    shell.log.con = shell.con
    # Log.debug walks inspect.stack() on every call (~15 ms each, a dozen per command), even
    # when nothing is written; log the message without the caller's frame instead.
    shell.log.debug = lambda msg: shell.log._log("debug", msg)
    root = Root(shell, context)
    root.rebuild()
    return shell


def _attached(node: Any, root: Any) -> bool:
    while node is not None and node is not root:
        parent = node.parent
        if parent is None or node not in parent.children:
            return False
        node = parent
    return node is root


def _endpoint_and_cfg(args: argparse.Namespace) -> tuple[APIClient, GatewayCfg | None]:
    cfg: GatewayCfg | None = None
    if args.api:
        endpoint = parse_api_url(args.api)
        if args.config is not None:
            cfg = read_gateway_cfg(args.config)
    else:
        cfg = read_gateway_cfg(args.config or DEFAULT_CFG)
        if not cfg.found and args.config is not None:
            raise GwcliConfigError(f"{args.config}: no such file")
        endpoint = cfg.endpoint()
    return APIClient(endpoint), cfg


class _TracingClient(APIClient):
    """``--debug``: every request and its status on stderr (never the password)."""

    def raw_request(self, method: str, path: str, *a: Any, **kw: Any) -> tuple[int, Any]:
        try:
            status, reply = super().raw_request(method, path, *a, **kw)
        except APIError as exc:
            print(f"gwcli: {method} {self.url(path)} -> {exc}", file=sys.stderr)
            raise
        print(f"gwcli: {method} {self.url(path)} -> {status}", file=sys.stderr)
        return status, reply

    def for_host(self, host: str, port: int | None = None) -> APIClient:
        return _TracingClient(self.endpoint.with_host(host, port), self.timeout)


def _run_lines(shell: Any, lines: Iterable[str]) -> int:
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        shell.run_cmdline(line)
        if shell.failed is not None:
            return EXIT_FAILED
        if shell._exit:
            break
    return EXIT_OK


def run_interactive(shell: Any) -> int:
    """The prompt loop; failures are shown and the loop goes on, as in targetcli."""
    while not shell._exit:
        try:
            shell.run_interactive()
        except Exception as exc:  # a bug must not take the session down
            shell.log.error(f"internal error: {exc!r}")
    return EXIT_OK


def main(argv: list[str] | None = None, prog: str = "gwcli") -> int:
    try:
        return _main(argv, prog)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None, prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        client, cfg = _endpoint_and_cfg(args)
    except GwcliConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.debug:
        client = _TracingClient(client.endpoint, client.timeout)
    context = Context(client, cfg)
    try:
        context.load()
    except APIError as exc:
        print(
            f"{prog}: error: unable to read the configuration from the API at "
            f"{client.endpoint.describe()} (settings from {client.endpoint.source}): {exc}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    shell = make_shell(context, PREFS_DIR)
    if args.command:
        shell.run_cmdline(" ".join(args.command))
        return EXIT_FAILED if shell.failed is not None else EXIT_OK
    if not sys.stdin.isatty():
        return _run_lines(shell, sys.stdin)
    shell.refresh_after = REFRESH_AFTER
    return run_interactive(shell)


if __name__ == "__main__":
    sys.exit(main())
