"""``iscsigw``: run a gateway (``serve``) or print the version.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 2 for a configuration the gateway refuses
(one line ``iscsigw: error: …`` on stderr, the same shape argparse uses for usage errors), and
whatever ``run_gateway`` returns otherwise. ``--demo`` prints exactly one line on stdout,
``iSCSI URL: iscsi://…``, so scripts can pick it up; everything else goes to the log on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from pathlib import Path

from .. import __version__
from ..config.demo import CONFIG_NAME, seed_demo
from ..config.file_store import FileConfigStore
from ..config.names import parse_endpoint, validate_gateway_name
from ..errors import ConfigError

log = logging.getLogger("iscsigw.cli")

DEFAULT_PORT = 3260
EXIT_CONFIG = 2
EXIT_FAILURE = 1
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_portal(text: str) -> tuple[str, int]:
    """``IP:PORT``, ``[IPv6]:PORT`` or a bare IP (port 3260) for ``--portal``."""
    try:
        return parse_endpoint(text, DEFAULT_PORT)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (expected IP:PORT or [IPv6]:PORT)")


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(LOG_LEVELS)}")
    return level


def default_name() -> str:
    """The short host name (``gw1`` for ``gw1.example.com``)."""
    return socket.gethostname().split(".")[0] or "localhost"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iscsigw", description="A userspace iSCSI gateway.")
    parser.add_argument("--version", action="version", version=f"iscsigw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway until SIGTERM/SIGINT")
    serve.add_argument(
        "--data-dir",
        required=True,
        type=Path,
        help=f"state directory: {CONFIG_NAME} and file-backed disks (pool/image)",
    )
    serve.add_argument(
        "--portal",
        dest="portals",
        action="append",
        required=True,
        type=parse_portal,
        metavar="IP:PORT",
        help="address to listen on; repeat for several portals",
    )
    serve.add_argument("--name", help="gateway name in the config (default: short host name)")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="create (once) a CHAP-protected demo target with a 1 GiB disk and print its URL",
    )
    serve.add_argument(
        "--log-level", type=_log_level, default="INFO", metavar="LEVEL", help="default INFO"
    )

    sub.add_parser("version", help="print the version")
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT, force=True)


def serve(data_dir: Path, portals: list[tuple[str, int]], name: str, demo: bool) -> int:
    """Prepare the config (seed the demo or create an empty one) and run the gateway."""
    validate_gateway_name(name, "--name")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--data-dir {data_dir}: {exc.strerror}")
    store = FileConfigStore(data_dir / CONFIG_NAME)
    if demo:
        info = seed_demo(data_dir, name, portals)
        print(f"iSCSI URL: {info.url}", flush=True)
    elif not store.exists():
        store.commit(lambda doc: None)
        log.info("created an empty configuration in %s", store.path)
    config, epoch = store.load()
    log.info("configuration %s at epoch %d", store.path, epoch)
    if not config.targets:
        log.warning("no target is configured; initiators will find nothing (try --demo)")
    elif not config.targets_on(name):
        log.warning("no target has a portal on gateway %r; check --name", name)

    from ..gateway.server import run_gateway  # the asyncio runtime; imported only to serve

    return asyncio.run(run_gateway(store, data_dir, name, portals))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"iscsigw {__version__}")
        return 0
    configure_logging(args.log_level)
    try:
        return serve(args.data_dir, args.portals, args.name or default_name(), args.demo)
    except ConfigError as exc:
        print(f"iscsigw: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    except KeyboardInterrupt:  # a SIGINT before run_gateway installed its handlers
        return 0


if __name__ == "__main__":
    sys.exit(main())
