"""``iscsigw``: run a gateway (``serve``) or print the version.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 2 for a configuration the gateway refuses
(one line ``iscsigw: error: …`` on stderr, the same shape argparse uses for usage errors), and
whatever ``run_gateway`` returns otherwise. ``--demo`` prints exactly one line on stdout,
``iSCSI URL: iscsi://…``, so scripts can pick it up, and, once the REST API listens,
``API URL: http://USER:PASSWORD@IP:PORT``; everything else goes to the log on stderr.
``iscsigw config import FILE`` / ``export`` move the whole configuration in and out.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..config.demo import CONFIG_NAME, seed_demo
from ..config.file_store import FileConfigStore
from ..config.names import parse_endpoint, validate_gateway_name
from ..config.settings import CephConnection, GatewaySettings
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config.rados_store import RadosConfigStore

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
        "--config",
        type=Path,
        metavar="FILE",
        help="ceph-iscsi settings file (default: /etc/ceph/iscsi-gateway.cfg if it exists)",
    )
    serve.add_argument(
        "--api",
        type=_api_address,
        metavar="IP:PORT",
        help="serve the REST API here (overrides api_host/api_port of the settings file)",
    )
    serve.add_argument(
        "--log-level", type=_log_level, default="INFO", metavar="LEVEL", help="default INFO"
    )

    config = sub.add_parser("config", help="import or export the configuration (gateway.conf)")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    for action, text in (
        ("import", "replace the configuration with a gateway.conf v11 JSON file"),
        ("export", "print the configuration as gateway.conf v11 JSON"),
    ):
        p = config_sub.add_parser(action, help=text)
        p.add_argument(
            "--data-dir", required=True, type=Path, help=f"state directory holding {CONFIG_NAME}"
        )
        if action == "import":
            p.add_argument("file", type=Path, metavar="FILE", help="JSON file, or - for stdin")
        else:
            p.add_argument("-o", "--output", type=Path, metavar="FILE", help="default: stdout")
        p.add_argument(
            "--log-level",
            type=_log_level,
            default="WARNING",
            metavar="LEVEL",
            help=argparse.SUPPRESS,
        )

    sub.add_parser("version", help="print the version")
    sub.add_parser("shell", help="the gwcli management shell (same options as gwcli)")
    return parser


def _api_address(text: str) -> tuple[str, int]:
    try:
        return parse_endpoint(text, 5000)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (expected IP:PORT or [IPv6]:PORT)")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT, force=True)


def serve(
    data_dir: Path,
    portals: list[tuple[str, int]],
    name: str,
    demo: bool,
    config_path: Path | None = None,
    api: tuple[str, int] | None = None,
) -> int:
    """Prepare the config (seed the demo or create an empty one) and run the gateway."""
    from .api_setup import api_options, read_settings

    validate_gateway_name(name, "--name")
    settings = read_settings(config_path)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--data-dir {data_dir}: {exc.strerror}")
    store, ceph = open_store(settings, data_dir)
    if demo:
        rados = settings is not None and settings.uses_rados_store
        rbd_pool = settings.pool if rados and settings is not None else None
        info = seed_demo(data_dir, name, portals, store=store, rbd_pool=rbd_pool)
        print(f"iSCSI URL: {info.url}", flush=True)
    elif not store.exists():
        store.commit(lambda doc: None)
        log.info("created an empty configuration in %s", store_location(store))
    _settings, options = api_options(settings, api, demo, data_dir, portals)
    if options is not None and settings is not None and settings.uses_rados_store:
        options = replace(options, default_backstore="rbd")  # ceph-iscsi's default: user:rbd
    config, epoch = store.load()
    log.info("configuration %s at epoch %d", store_location(store), epoch)
    if not config.targets:
        log.warning("no target is configured; initiators will find nothing (try --demo)")
    elif not config.targets_on(name):
        log.warning("no target has a portal on gateway %r; check --name", name)

    from ..gateway.loop import run  # the asyncio runtime; imported only to serve
    from ..gateway.server import run_gateway

    try:
        return run(run_gateway(store, data_dir, name, portals, api=options, ceph=ceph))
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()


def open_store(
    settings: GatewaySettings | None, data_dir: Path | None
) -> tuple[FileConfigStore | RadosConfigStore, CephConnection | None]:
    """``DATA_DIR/gateway.conf``, or the RADOS object when iscsi-gateway.cfg selects it
    (``config_store``; see docs/ceph.md); the Ceph connection when the cfg names a cluster."""
    if settings is None or not settings.uses_rados_store:
        if data_dir is None:
            raise ConfigError("--data-dir is required unless iscsi-gateway.cfg selects RADOS")
        conn = None
        if settings is not None and settings.path is not None:
            from ..gateway.images import register_rbd_admin

            conn = settings.ceph_connection()  # rbd disks on the cfg's cluster
            register_rbd_admin(conn)
        return FileConfigStore(data_dir / CONFIG_NAME), conn
    from ..config.rados_store import RadosConfigStore
    from ..gateway.images import register_rbd_admin

    conn = settings.ceph_connection()
    store = RadosConfigStore.for_connection(conn, settings.pool, settings.gateway_conf)
    store.load()  # connect now: a wrong cluster setting is a clear error at start
    register_rbd_admin(conn)
    log.info(
        "configuration in RADOS: %s (%s as %s)", store.where, conn.conf or "$CEPH_CONF", conn.client
    )
    return store, conn


def store_location(store: object) -> str:
    where = getattr(store, "where", None) or getattr(store, "path", None)
    return str(where if where is not None else store)


def config_command(args: argparse.Namespace) -> int:
    from .config_cmd import export_document, import_document, read_document

    store = FileConfigStore(args.data_dir / CONFIG_NAME)
    if args.config_command == "export":
        text = export_document(store)
        if args.output is None:
            sys.stdout.write(text)
        else:
            args.output.write_text(text, encoding="utf-8")
        return 0
    doc = read_document(args.file)
    epoch, warnings = import_document(store, doc)
    for warning in warnings:
        print(f"iscsigw: warning: {warning}", file=sys.stderr)
    print(f"imported {args.file} into {store.path} (epoch {epoch})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["shell"]:  # everything after "shell" is gwcli's command line
        from .shell import main as shell_main

        return shell_main(argv[1:], prog="iscsigw shell")
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"iscsigw {__version__}")
        return 0
    configure_logging(args.log_level)
    try:
        if args.command == "config":
            return config_command(args)
        return serve(
            args.data_dir,
            args.portals,
            args.name or default_name(),
            args.demo,
            args.config,
            args.api,
        )
    except ConfigError as exc:
        print(f"iscsigw: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    except KeyboardInterrupt:  # a SIGINT before run_gateway installed its handlers
        return 0


if __name__ == "__main__":
    sys.exit(main())
