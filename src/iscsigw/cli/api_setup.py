"""Decide how ``iscsigw serve`` runs the REST API from --config, --api and --demo.

* ``--config FILE`` (else ``/etc/ceph/iscsi-gateway.cfg`` when it exists) is read as
  ceph-iscsi's iscsi-gateway.cfg; unknown keys are reported in one warning.
* The API listens on ``--api IP:PORT``, else on ``api_host:api_port`` of the cfg file. Without
  either, ``--demo`` puts it on the first portal's IP with a free port (so several demo
  gateways on one host never clash) and prints ``API URL: http://USER:PASSWORD@IP:PORT``;
  without ``--demo`` the API is off.
* Without a cfg file the lab defaults apply: plain HTTP and ``minimum_gateways = 1``.
* ``--demo`` generates API credentials once per data directory (``demo-api.json``, 0600) so
  demo gateways sharing a data dir can call each other; a cfg file with its own
  ``api_password`` wins.
* Outside ``--demo`` the gateway refuses to serve the API with ceph-iscsi's default password.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import string
from dataclasses import replace
from pathlib import Path

from ..config.names import parse_endpoint
from ..config.settings import (
    CERT_NAME,
    DEFAULT_CFG_PATH,
    KEY_NAME,
    GatewaySettings,
    load_settings,
)
from ..errors import ConfigError
from ..gateway.options import ApiOptions

log = logging.getLogger("iscsigw.cli")

DEMO_CREDENTIALS = "demo-api.json"
DEFAULT_API_PORT = 5000
_ALPHABET = string.ascii_letters + string.digits


def read_settings(config_path: Path | None) -> GatewaySettings | None:
    """The cfg file named by --config, else the default one if present, else None."""
    path = config_path
    if path is None:
        if not DEFAULT_CFG_PATH.is_file():
            return None
        path = DEFAULT_CFG_PATH
    settings = load_settings(path)
    if settings.unknown:
        log.warning(
            "%s: unknown settings ignored (not ceph-iscsi 3.5 settings): %s",
            path,
            ", ".join(settings.unknown),
        )
    log.info("settings from %s", path)
    return settings


def demo_credentials(data_dir: Path) -> tuple[str, str]:
    """Read or create (race-free across processes) the demo API user and password."""
    path = data_dir / DEMO_CREDENTIALS
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return str(doc["user"]), str(doc["password"])
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable demo credentials ({exc}); delete the file")
    user = "demo"
    password = "".join(secrets.choice(_ALPHABET) for _ in range(20))
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"user": user, "password": password}, f)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # fails if another gateway created it first: then use theirs
    except FileExistsError:
        return demo_credentials(data_dir)
    finally:
        tmp.unlink(missing_ok=True)
    return user, password


def api_options(
    settings: GatewaySettings | None,
    api: tuple[str, int] | None,
    demo: bool,
    data_dir: Path,
    portals: list[tuple[str, int]],
) -> tuple[GatewaySettings, ApiOptions | None]:
    """The effective settings and how to serve the API (None: no API)."""
    if settings is None:
        settings = GatewaySettings(api_secure=False, minimum_gateways=1)
        log.info("no iscsi-gateway.cfg: plain HTTP API, minimum_gateways = 1")
    if api is not None:
        host, port = api
    elif settings.path is not None:
        host, port = settings.api_host, settings.api_port
    elif demo:
        host, port = (portals[0][0] if portals else "127.0.0.1"), 0
    else:
        log.info("REST API off: no iscsi-gateway.cfg (--config) and no --api")
        return settings, None
    if demo and "api_password" not in settings.explicit:
        user, password = demo_credentials(data_dir)
        settings = replace(settings, api_user=user, api_password=password)
    elif settings.api_password == "admin":
        raise ConfigError(
            "api_password is ceph-iscsi's default 'admin'; set api_user and api_password in "
            "iscsi-gateway.cfg (--config) before serving the API, or use --demo"
        )
    certfile = keyfile = None
    if settings.api_secure:
        certfile = settings.config_dir / CERT_NAME
        keyfile = settings.config_dir / KEY_NAME
    options = ApiOptions(
        settings=settings,
        host=host,
        port=port,
        certfile=certfile,
        keyfile=keyfile,
        print_url=demo,
    )
    return settings, options


def parse_api(text: str) -> tuple[str, int]:
    return parse_endpoint(text, DEFAULT_API_PORT, "--api")


__all__ = ["api_options", "demo_credentials", "parse_api", "read_settings"]
